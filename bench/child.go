package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// child is a process the bench runs itself (the baseline node, the nodes
// scenario's agents), beside the stack's own components.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been reaped
	log  string
}

// startChild starts argv with its output appended to .local/logs/<name>.log
// after a banner. The child never outlives the bench, whatever ends it.
func (b *Bench) startChild(name string, argv ...string) (*child, error) {
	logPath := filepath.Join(b.env.StackRoot, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s starting %s\n", time.Now().Format(time.RFC3339), name)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(c.done) }()
	logf("started %s (pid %d, log %s)", name, cmd.Process.Pid, logPath)
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited tells whether the child has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the child to exit: 15 s at most, then it
// kills it.
func (c *child) stop(sig syscall.Signal) {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
