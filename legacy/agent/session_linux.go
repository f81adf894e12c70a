//go:build linux

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// openPTY allocates a pseudo-terminal pair the way posix_openpt, grantpt
// and unlockpt do (devpts needs no grantpt: the slave already belongs to the
// caller). The master is pollable (deadlines work, Close unblocks readers);
// the slave is meant for a child's fds 0-2 and is closed by the caller after
// the fork.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	err = ptyControl(master, func(fd uintptr) error {
		var unlock int32
		if err := ioctl(fd, syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); err != nil {
			return fmt.Errorf("unlockpt: %w", err)
		}
		if err := ioctl(fd, syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); err != nil {
			return fmt.Errorf("ptsname: %w", err)
		}
		return nil
	})
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

type winsize struct {
	rows, cols, xpixel, ypixel uint16
}

// setWindowSize is TIOCSWINSZ on the master: the kernel sends SIGWINCH to
// the terminal's foreground process group.
func setWindowSize(master *os.File, rows, cols uint32) error {
	ws := winsize{rows: clampU16(rows), cols: clampU16(cols)}
	return ptyControl(master, func(fd uintptr) error {
		return ioctl(fd, syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
	})
}

func clampU16(v uint32) uint16 {
	if v > 0xffff {
		return 0xffff
	}
	return uint16(v)
}

// ptyControl runs f on the raw descriptor without taking the file out of
// non-blocking mode (os.File.Fd would).
func ptyControl(f *os.File, fn func(fd uintptr) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}

func ioctl(fd, req, arg uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg); e != 0 {
		return e
	}
	return nil
}

// spawnSession starts a session's process: with a terminal it leads a new
// session whose controlling terminal is fd 0 (the pty slave); without, it
// leads its own process group, as a container does.
func spawnSession(path string, argv, env []string, dir string, files []uintptr, tty bool) (int, error) {
	// Pdeathsig: a session is tied to the agent process that streams its
	// I/O; if that process is SIGKILLed the session must not live on
	// unmanaged (sessions are not recovered, as in Mesos).
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if tty {
		sys = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	}
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: sys})
}

// processEnv reads the environment pid was started with (its last execve).
// While the process is inside an execve (a shell exec-ing its last command
// just after the launch) the file reads empty for a moment: try a few times.
func processEnv(pid int) ([]string, bool) {
	var b []byte
	for try := 0; try < 20; try++ {
		var err error
		if b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); err == nil && len(b) > 0 {
			break
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, false
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(b) == 0 {
		return nil, false
	}
	var env []string
	for _, kv := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	return env, len(env) > 0
}

// processCwd is pid's current working directory.
func processCwd(pid int) (string, bool) {
	p, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil || !filepath.IsAbs(p) {
		return "", false
	}
	return p, true
}
