//go:build linux

package agent

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const supported = true

// spawn starts a process in its own process group with syscall.ForkExec
// rather than os.StartProcess: on Linux os.StartProcess keeps a pidfd open for
// every child until Wait, which at 10,000 containers would cost 10,000 file
// descriptors. ForkExec keeps nothing open in the parent once it returns.
func spawn(path string, argv, env []string, dir string, files []uintptr) (int, error) {
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
}

const (
	pALL    = 0
	wNOWAIT = 0x1000000
)

// siginfo's union starts after three ints, padded to pointer alignment.
var siPidOffset = func() int {
	if unsafe.Sizeof(uintptr(0)) == 8 {
		return 16
	}
	return 12
}()

// peekExited blocks until any child of this process has exited and returns
// its pid WITHOUT reaping it (WNOWAIT). Leaving the zombie in place keeps the
// pid (and its process group id) reserved while the agent records the exit
// and signals any leftover group members, and it leaves children that belong
// to other code in this process for their owners to reap.
func peekExited() (int, error) {
	var info [128]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pALL, 0,
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(int32(binary.NativeEndian.Uint32(info[siPidOffset:]))), nil
	}
}

// hasExited reports whether child pid is a zombie, without reaping it.
func hasExited(pid int) bool {
	const pPID = 1
	var info [128]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNOWAIT|syscall.WNOHANG, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		return e == 0 && binary.NativeEndian.Uint32(info[siPidOffset:]) == uint32(pid)
	}
}

// reapPid collects the exit status of one exited child. ok is false when pid
// has not exited (or is not our child).
func reapPid(pid int) (syscall.WaitStatus, bool) {
	var ws syscall.WaitStatus
	for {
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		return ws, err == nil && got == pid
	}
}

func killGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}

// raiseNofileLimit lifts the soft RLIMIT_NOFILE to the hard limit. The Go
// runtime already does this at start-up on Linux and then restores the
// original soft limit in children it forks; calling Setrlimit would disable
// that restoring, so only do it when the runtime did not.
func raiseNofileLimit() (cur, max uint64, err error) {
	var rl syscall.Rlimit
	if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, err
		}
	}
	return rl.Cur, rl.Max, nil
}

type procStat struct {
	pgrp      int
	utimeSecs float64
	stimeSecs float64
	threads   uint32
	rssBytes  uint64
}

// readProcStat reads /proc/<pid>/stat and statm.
func readProcStat(pid int) (procStat, bool) {
	var ps procStat
	f, ok := procStatFields(pid)
	if !ok {
		return ps, false
	}
	// f[0] is field 3 (state) of proc(5).
	field := func(n int) uint64 {
		if n-3 >= len(f) {
			return 0
		}
		v, _ := strconv.ParseUint(f[n-3], 10, 64)
		return v
	}
	tck := float64(clockTicks())
	ps.pgrp = int(field(5))
	ps.utimeSecs = float64(field(14)) / tck
	ps.stimeSecs = float64(field(15)) / tck
	ps.threads = uint32(field(20))
	if m, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm"); err == nil {
		if mf := strings.Fields(string(m)); len(mf) > 1 {
			pages, _ := strconv.ParseUint(mf[1], 10, 64)
			ps.rssBytes = pages * uint64(os.Getpagesize())
		}
	}
	return ps, true
}

// procStatFields returns the fields of /proc/<pid>/stat from field 3
// (state) on.
func procStatFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	// comm may contain spaces and parentheses; the fields resume after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

var clockTicks = sync.OnceValue(func() int64 {
	// sysconf(_SC_CLK_TCK) comes from the AT_CLKTCK auxv entry; reading it
	// avoids cgo.
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		w := int(unsafe.Sizeof(uintptr(0)))
		for i := 0; i+2*w <= len(b); i += 2 * w {
			var k, v uint64
			if w == 8 {
				k, v = binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+w:])
			} else {
				k, v = uint64(binary.NativeEndian.Uint32(b[i:])), uint64(binary.NativeEndian.Uint32(b[i+w:]))
			}
			if k == atClkTck && v > 0 {
				return int64(v)
			}
		}
	}
	return 100
})

// countOpenFDs is used by tests and the debug log to show the agent holds no
// per-container descriptors.
func countOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
