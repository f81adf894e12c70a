package stack

import (
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
// "--recover=cleanup"), for this start only (`stack.sh start NAME -- ARG...`):
// a later Start runs the component as `up` configured it.
func (e *Env) StartWithArgs(name string, extra ...string) error {
	return e.script(append([]string{"start", name, "--"}, extra...)...)
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
