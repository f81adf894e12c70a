//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"
)

// supClient is the API process's side of the supervisor protocol: one unix
// connection per request (nothing kept open per container), plus the one
// watch stream held by watchLoop. Every request names the agent's tenant.
type supClient struct {
	root   string // the supervisor's work dir
	sock   string
	tenant string // the agent's work dir relative to root ("" when equal)
}

const supCallTimeout = 30 * time.Second

func (s *supClient) dial() (net.Conn, error) {
	return net.DialTimeout("unix", s.sock, 5*time.Second)
}

func (s *supClient) call(req *supRequest) (*supReply, error) {
	req.Tenant = s.tenant
	conn, err := s.dial()
	if err != nil {
		return nil, fmt.Errorf("supervisor %s: %w", req.Op, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(supCallTimeout))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("supervisor %s: %w", req.Op, err)
	}
	var rep supReply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return nil, fmt.Errorf("supervisor %s: %w", req.Op, err)
	}
	return &rep, nil
}

// startSupervised takes the work dir for this API process, reaches (or
// starts) the supervisor, adopts what it reports and follows its events.
func (a *Agent) startSupervised() error {
	if !superviseHooked {
		return errors.New("agent: Config.Recover needs agent.MaybeSupervise() called at the start of main")
	}
	root, tenant := a.workDir, ""
	if a.cfg.supRoot != "" {
		r, err := filepath.EvalSymlinks(a.cfg.supRoot)
		if err != nil {
			return fmt.Errorf("agent: supervisor dir: %w", err)
		}
		if tenant, err = filepath.Rel(r, a.workDir); err != nil || !filepath.IsLocal(tenant) {
			return fmt.Errorf("agent: work dir %s is not inside the supervisor's %s", a.workDir, r)
		}
		root = r
	}
	if a.cfg.supStart == nil {
		a.cfg.supStart = &supStarter{}
	}
	sock := filepath.Join(root, supervisorSock)
	if len(sock) >= 108 {
		return fmt.Errorf("agent: work dir path too long for a unix socket (%s)", sock)
	}
	lock, err := lockFile(filepath.Join(a.workDir, agentLockFile))
	if err != nil {
		return fmt.Errorf("agent: work dir %s is in use by another agent process: %w", a.workDir, err)
	}
	a.agentLock = lock
	a.sup = &supClient{root: root, sock: sock, tenant: tenant}
	conn, snap, err := a.connectSupervisor(10 * time.Second)
	if err != nil {
		lock.Close()
		return fmt.Errorf("agent: recovery: %w", err)
	}
	a.mu.Lock()
	a.watchConn = conn
	a.mu.Unlock()
	a.adopt(snap, a.cfg.Recover == RecoverCleanup)
	a.collectOrphanSandboxes()
	go a.watchLoop(conn)
	return nil
}

// collectOrphanSandboxes removes, at start, the sandboxes no recovered
// container owns: a launch the agent died in before the supervisor started
// its process, or a REMOVE it died in after the checkpoint was dropped.
// Nothing could reach them any more (REMOVE of an unknown id answers 404),
// so they would stay for ever; a Mesos agent's recovery likewise schedules
// the directories of containers it does not know for garbage collection.
func (a *Agent) collectOrphanSandboxes() {
	ents, err := os.ReadDir(a.sandboxRoot)
	if err != nil {
		a.log.WithError(err).Warn("recovery: cannot list the sandboxes")
		return
	}
	var trash []string
	a.mu.Lock()
	for _, e := range ents {
		if !e.IsDir() || a.containers[e.Name()] != nil {
			continue
		}
		if dst := a.trashSandboxLocked(&container{id: e.Name(), sandbox: filepath.Join(a.sandboxRoot, e.Name())}); dst != "" {
			trash = append(trash, dst)
		}
	}
	a.mu.Unlock()
	for _, dst := range trash {
		if err := os.RemoveAll(dst); err != nil {
			a.log.WithError(err).Warn("recovery: orphan sandbox removal incomplete")
		}
	}
	if len(trash) > 0 {
		a.log.WithFields(logrus.Fields{"agent": a.cfg.AgentID, "sandboxes": len(trash)}).Info("recovery: removed the sandboxes of containers nobody knows")
	}
}

// connectSupervisor opens the watch stream, starting a supervisor when none
// holds supervisor.lock. It returns the snapshot the stream starts with.
func (a *Agent) connectSupervisor(timeout time.Duration) (*watchStream, []*ckpt, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		conn, snap, err := a.openWatch()
		if err == nil {
			a.cfg.supStart.answered()
			return conn, snap, nil
		}
		lastErr = err
		var refused *supRefusal
		if errors.As(err, &refused) {
			return nil, nil, err // a supervisor answered: starting another cannot help
		}
		if err := a.maybeStartSupervisor(); err != nil {
			return nil, nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("no supervisor answered on %s within %s: %w", a.sup.sock, timeout, lastErr)
}

// maybeStartSupervisor starts a supervisor when nobody holds the root's
// supervisor.lock: no supervisor (or one that just exited idle). It takes
// the lock and adopts the checkpoints. The probe itself holds the lock for
// a moment, which a starting supervisor must wait out, so the agents
// sharing the root probe only long after the last start, one at a time.
func (a *Agent) maybeStartSupervisor() error {
	st := a.cfg.supStart
	st.mu.Lock()
	defer st.mu.Unlock()
	if time.Since(st.lastSpawn) < 3*time.Second {
		return nil
	}
	l, err := lockFile(filepath.Join(a.sup.root, supervisorLock))
	if err != nil {
		return nil // a supervisor holds it: it is starting or about to answer
	}
	l.Close()
	st.lastSpawn = time.Now()
	lvl := logrus.InfoLevel
	if lg, ok := a.log.(*logrus.Logger); ok {
		lvl = lg.GetLevel()
	}
	label := a.cfg.AgentID
	if a.sup.tenant != "" {
		label = "" // it serves every agent of the process
	}
	if err := spawnSupervisor(a.sup.root, label, lvl); err != nil {
		return err
	}
	a.log.WithFields(logrus.Fields{"agent": a.cfg.AgentID, "work_dir": a.sup.root}).Info("started container supervisor")
	return nil
}

// answered says a supervisor answered: one started since is none of the
// last start's business, so a later loss may start one at once.
func (st *supStarter) answered() {
	st.mu.Lock()
	st.lastSpawn = time.Time{}
	st.mu.Unlock()
}

// supRefusal is a supervisor's refusal of a watch (it cannot adopt the
// agent's work dir).
type supRefusal struct{ msg string }

func (e *supRefusal) Error() string { return "supervisor refused: " + e.msg }

func (a *Agent) openWatch() (*watchStream, []*ckpt, error) {
	conn, err := a.sup.dial()
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(supCallTimeout))
	if err := json.NewEncoder(conn).Encode(&supRequest{Op: "watch", Tenant: a.sup.tenant}); err != nil {
		conn.Close()
		return nil, nil, err
	}
	var first supReply
	dec := json.NewDecoder(conn)
	if err := dec.Decode(&first); err != nil || first.Kind != "snapshot" {
		conn.Close()
		switch {
		case err != nil:
		case first.Error != "":
			err = &supRefusal{first.Error}
		default:
			err = fmt.Errorf("unexpected first message %q", first.Kind)
		}
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	// The decoder may already hold events that followed the snapshot, so
	// it goes along with the connection.
	return &watchStream{Conn: conn, dec: dec}, first.Snapshot, nil
}

// watchStream is the supervisor's event stream and its one decoder.
type watchStream struct {
	net.Conn
	dec *json.Decoder
}

// watchLoop applies exit events. If the stream breaks while the agent
// runs, the supervisor died: a new one is started, which kills the orphans
// it cannot reap, and its snapshot ends them here.
func (a *Agent) watchLoop(conn *watchStream) {
	for {
		err := a.followWatch(conn)
		if a.isClosed() {
			return
		}
		a.log.WithError(err).WithField("agent", a.cfg.AgentID).Error("lost the container supervisor; restarting it")
		for {
			var snap []*ckpt
			var cerr error
			conn, snap, cerr = a.connectSupervisor(10 * time.Second)
			if a.isClosed() {
				if conn != nil {
					conn.Close()
				}
				return
			}
			if cerr == nil {
				a.mu.Lock()
				a.watchConn = conn
				a.mu.Unlock()
				a.adopt(snap, false)
				break
			}
			a.log.WithError(cerr).Error("cannot reach a container supervisor")
			time.Sleep(time.Second)
		}
	}
}

func (a *Agent) followWatch(conn *watchStream) error {
	for {
		var m supReply
		if err := conn.dec.Decode(&m); err != nil {
			conn.Close()
			return fmt.Errorf("supervisor watch: %w", err)
		}
		if m.Exit != nil {
			a.mu.Lock()
			if c := a.containers[m.Exit.ID]; c != nil {
				a.endFromCkptLocked(c, m.Exit)
			}
			a.mu.Unlock()
		}
	}
}

func (a *Agent) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// adopt merges a supervisor snapshot: unknown ids become recovered
// containers, ended ones are terminated; with cleanup every live one is
// SIGKILLed (its exit event then terminates it, with the recovery note the
// supervisor checkpointed).
func (a *Agent) adopt(snap []*ckpt, cleanup bool) {
	var kill []string
	recovered, ended := 0, 0
	a.mu.Lock()
	for _, e := range snap {
		c := a.containers[e.ID]
		if c == nil {
			c = &container{
				id:        e.ID,
				sandbox:   filepath.Join(a.sandboxRoot, e.ID),
				state:     stateRunning,
				pid:       e.Pid,
				startedAt: e.StartedAt,
				cpusLimit: e.CPUs,
				memLimit:  e.Mem,
				done:      make(chan struct{}),
			}
			a.containers[e.ID] = c
			recovered++
		}
		if e.Ended {
			a.endFromCkptLocked(c, e)
			ended++
		} else if cleanup && c.state == stateRunning {
			kill = append(kill, e.ID)
		}
	}
	a.mu.Unlock()
	a.log.WithFields(logrus.Fields{
		"agent": a.cfg.AgentID, "recovered": recovered, "ended": ended, "mode": a.cfg.Recover,
	}).Info("recovered containers from the supervisor")
	for _, id := range kill {
		rep, err := a.sup.call(&supRequest{Op: "kill", ID: id, Signal: int(syscall.SIGKILL),
			Recovery: "container killed during agent recovery (--recover=cleanup)"})
		if err == nil && rep.Error != "" {
			err = errors.New(rep.Error)
		}
		if err != nil {
			a.log.WithError(err).WithFields(logrus.Fields{"task": id, "agent": a.cfg.AgentID}).Error("cleanup: kill failed")
		}
	}
}

// endFromCkptLocked terminates c from a checkpoint that says it ended.
// Call with a.mu held.
func (a *Agent) endFromCkptLocked(c *container, e *ckpt) {
	if !e.Ended || c.state == stateTerminated {
		return
	}
	if c.state == stateLaunching {
		// The exit overtook the launch reply: registerSupervised applies it.
		c.early = e
		return
	}
	if e.Pid != c.pid {
		return // a stale event of an earlier container with this id
	}
	t := a.termFromCkpt(c, e)
	c.state = stateTerminated
	c.term = t
	close(c.done)
	a.log.WithFields(logrus.Fields{"task": c.id, "agent": a.cfg.AgentID, "pid": c.pid, "state": t.state.String()}).Info(t.message)
}

func (a *Agent) termFromCkpt(c *container, e *ckpt) *termination {
	if e.KillSignal != 0 {
		c.killSignal = syscall.Signal(e.KillSignal)
	}
	r := mesos.REASON_AGENT_RESTARTED
	if e.Status == nil {
		return &termination{state: mesos.TASK_FAILED, reason: &r, message: "Container ended unobserved: " + e.Recovery}
	}
	ws := syscall.WaitStatus(*e.Status)
	if e.Recovery != "" {
		return &termination{status: e.Status, state: mesos.TASK_KILLED, reason: &r,
			message: describeWait(ws) + " (" + e.Recovery + ")"}
	}
	return a.terminationFor(c, ws)
}

// launchSupervised asks the supervisor to start the container. A transport
// failure is an unavailable agent (503); a fork/exec failure comes back as
// its errno so start() maps it as for an in-process spawn.
func (a *Agent) launchSupervised(c *container, prog string, argv, env []string, cwd string) (int, error) {
	rep, err := a.sup.call(&supRequest{
		Op: "launch", ID: c.id, Path: prog, Argv: argv, Env: env, Dir: cwd,
		Stdout: filepath.Join(c.sandbox, "stdout"), Stderr: filepath.Join(c.sandbox, "stderr"),
		CPUs: c.cpusLimit, Mem: c.memLimit,
	})
	if err != nil {
		return 0, unavailable("cannot start container %s: %v", c.id, err)
	}
	if rep.Error != "" {
		if rep.Errno != 0 {
			return 0, fmt.Errorf("%s: %w", rep.Error, syscall.Errno(rep.Errno))
		}
		return 0, unavailable("cannot start container %s: %s", c.id, rep.Error)
	}
	return rep.Pid, nil
}

func (a *Agent) registerSupervised(c *container, pid int, log logrus.FieldLogger) {
	a.mu.Lock()
	c.pid = pid
	c.state = stateRunning
	c.startedAt = time.Now()
	sig := c.pendingSignal
	if e := c.early; e != nil {
		c.early = nil
		a.endFromCkptLocked(c, e)
		sig = 0
	}
	a.mu.Unlock()
	if sig != 0 {
		if err := a.signalSupervised(c.id, sig); err != nil {
			log.WithError(err).Warn("could not deliver KILL received during launch")
		} else {
			log.WithFields(logrus.Fields{"pid": pid, "signal": sig}).Info("delivered KILL received during launch")
		}
	}
}

// signalSupervised has the supervisor signal the container's group: it
// does so under its own lock against its reaper, so a reaped (possibly
// recycled) pid is never signalled. The signal is checkpointed there and
// comes back with the exit event.
func (a *Agent) signalSupervised(id string, sig syscall.Signal) error {
	rep, err := a.sup.call(&supRequest{Op: "kill", ID: id, Signal: int(sig)})
	if err != nil {
		return unavailable("failed to signal container %s: %v", id, err)
	}
	if rep.Error != "" {
		return unavailable("failed to signal container %s: %s", id, rep.Error)
	}
	return nil
}

func (a *Agent) forgetSupervised(id string) error {
	rep, err := a.sup.call(&supRequest{Op: "forget", ID: id})
	if err != nil {
		return unavailable("cannot remove container %s: %v", id, err)
	}
	if rep.Error != "" {
		return unavailable("cannot remove container %s: %s", id, rep.Error)
	}
	return nil
}
