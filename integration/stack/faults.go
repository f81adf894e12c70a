package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// AgentWorkDir is agent-N's work directory (its sandboxes and launch log).
func (e *Env) AgentWorkDir(i int) string {
	return filepath.Join(e.StackRoot, "agents", fmt.Sprintf("agent-%d", i))
}

// StartWithArgs starts a stopped component with extra arguments appended
// to the command line `up` recorded (for example agent-0 with
// "--recover=cleanup"), then puts the recorded command line back, so a
// later Start runs the component as `up` configured it. The stack script
// has no such option (yet): this rewrites .local/cmd/NAME for the moment
// of the start, under the stack lock.
func (e *Env) StartWithArgs(name string, extra ...string) error {
	path := filepath.Join(e.StackRoot, "cmd", name)
	orig, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("stack: recorded command line of %s: %w", name, err)
	}
	var b strings.Builder
	b.Write(orig)
	if len(orig) > 0 && orig[len(orig)-1] != '\n' {
		b.WriteByte('\n')
	}
	for _, a := range extra {
		// stack.sh reads each line through eval "printf '%s\n' LINE":
		// single-quote the argument.
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'\n")
	}
	unlock, err := e.lock()
	if err != nil {
		return err
	}
	err = os.WriteFile(path, []byte(b.String()), 0o644)
	unlock()
	if err != nil {
		return err
	}
	startErr := e.Start(name)
	unlock, err = e.lock()
	if err != nil {
		return errors.Join(startErr, err)
	}
	defer unlock()
	return errors.Join(startErr, os.WriteFile(path, orig, 0o644))
}

// lock takes the stack lock stack.sh takes (flock on .local/.lock).
func (e *Env) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(e.StackRoot, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Freeze stops a running component with SIGSTOP (it keeps its sockets but
// answers nothing: an unreachable peer); Thaw resumes it with SIGCONT.
func (e *Env) Freeze(name string) error { return e.signal(name, syscall.SIGSTOP) }

// Thaw resumes a component Freeze stopped.
func (e *Env) Thaw(name string) error { return e.signal(name, syscall.SIGCONT) }

func (e *Env) signal(name string, sig syscall.Signal) error {
	pid, err := e.Pid(name)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// ProcStatus reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func ProcStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var n int64
			_, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
