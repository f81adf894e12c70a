//go:build linux

package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Environment and argv marker of the re-executed supervisor. The marker
// argument makes a binary that forgot to call MaybeSupervise (a test binary
// of another package) fail on an unknown flag instead of running its tests
// a second time.
const (
	supervisorEnv      = "LEGACY_AGENT_SUPERVISOR_DIR"
	supervisorAgentEnv = "LEGACY_AGENT_SUPERVISOR_AGENT"
	supervisorLevelEnv = "LEGACY_AGENT_SUPERVISOR_LOG_LEVEL"
	supervisorArg      = "-legacy-agent-supervisor"
)

// supervisorIdle is how long a supervisor with no live container and no
// connected agent waits before exiting: checkpoints keep the ended
// containers' statuses for the next one.
var supervisorIdle = 10 * time.Second

var superviseHooked bool

// MaybeSupervise must be called first thing in main (and TestMain) of any
// binary that runs an agent with Config.Recover set: when the process is the
// agent's re-executed supervisor it runs the supervisor and exits; otherwise
// it returns at once.
func MaybeSupervise() {
	superviseHooked = true
	dir := os.Getenv(supervisorEnv)
	if dir == "" || len(os.Args) < 2 || os.Args[1] != supervisorArg {
		return
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if lvl, err := logrus.ParseLevel(os.Getenv(supervisorLevelEnv)); err == nil {
		log.SetLevel(lvl)
	}
	entry := log.WithField("component", "supervisor")
	if id := os.Getenv(supervisorAgentEnv); id != "" {
		entry = entry.WithField("agent", id)
	}
	for _, k := range []string{supervisorEnv, supervisorAgentEnv, supervisorLevelEnv} {
		os.Unsetenv(k)
	}
	if err := runSupervisor(dir, entry); err != nil {
		entry.WithError(err).Error("supervisor failed")
		os.Exit(1)
	}
	os.Exit(0)
}

// supervisor is the parent of every container of the agents of one API
// process: one agent, whose work dir is the supervisor's root, or the
// agents of --count N, whose work dirs are tenants inside the root
// (<root>/agent-<i>). It lives in its own session (setsid) so that killing
// the agent's process group leaves it and the containers running; it reaps
// its children with one waitid loop and checkpoints each container in its
// tenant's work dir. Lock order: s.mu, then a watcher's mu.
type supervisor struct {
	root    string
	log     logrus.FieldLogger
	devNull *os.File

	// forkMu: launches hold it for reading from fork until the pid is in
	// byPid; the reaper takes it for writing before deciding a pid is not
	// ours (same barrier as procReaper.forkMu).
	forkMu sync.RWMutex
	kick   chan struct{}

	mu       sync.Mutex
	tenants  map[string]*tenant // by work dir relative to root; "" is the root
	byPid    map[int]livePid    // live containers of every tenant
	watchers int                // watch streams of every tenant
	idleFrom time.Time          // zero while busy
}

// tenant is one agent's work dir under the supervisor: its checkpoints
// (<dir>/meta/containers), launch log and watch streams. A tenant is
// adopted on the first request that names it: its checkpoints are loaded
// and the live containers they name, which a dead predecessor started,
// are killed (killOrphan). Requests wait for that (ready).
type tenant struct {
	name  string // relative to the root; "" for the root itself
	dir   string
	ready chan struct{} // closed once adopted; err says whether it failed
	err   error

	// lock is <dir>/supervisor.lock, held for the supervisor's life: one
	// supervisor per agent work dir, whether the dir is a root or a tenant
	// (nil for the root, whose lock runSupervisor holds).
	lock *os.File
	llog *launchLog

	byID     map[string]*ckpt         // guarded by supervisor.mu
	watchers map[*supWatcher]struct{} // guarded by supervisor.mu
}

type livePid struct {
	t *tenant
	c *ckpt
}

// maxTenants bounds the tenant table: one per agent of the process.
const maxTenants = MaxCount + 1

// lockWithin takes the flock of path, retrying for about two seconds: an
// agent probing for a supervisor holds it for an instant.
func lockWithin(path string) (*os.File, error) {
	for try := 0; ; try++ {
		f, err := lockFile(path)
		if err == nil || try == 100 {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runSupervisor(root string, log logrus.FieldLogger) error {
	// Held for the process's life: exactly one supervisor per work dir.
	lock, err := lockWithin(filepath.Join(root, supervisorLock))
	if err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			log.Info("another supervisor owns this work dir; exiting")
			return nil
		}
		return fmt.Errorf("supervisor lock: %w", err)
	}
	defer lock.Close()
	_ = os.WriteFile(filepath.Join(root, supervisorPidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	s := &supervisor{
		root:     root,
		log:      log,
		kick:     make(chan struct{}, 1),
		tenants:  map[string]*tenant{},
		byPid:    map[int]livePid{},
		idleFrom: time.Now(),
	}
	if s.devNull, err = os.Open(os.DevNull); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	// A single agent's checkpoints live in the root: adopt them at once, so
	// orphans of a dead predecessor die even if no agent comes back.
	// Tenants are adopted when their agent first asks.
	if _, err := os.Stat(filepath.Join(root, metaContainersDir)); err == nil {
		if _, err := s.tenant(""); err != nil {
			return err
		}
	}
	sock := filepath.Join(root, supervisorSock)
	_ = os.Remove(sock) // stale: we hold the lock, so nobody serves it
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("supervisor listen %s: %w", sock, err)
	}
	// Whoever can connect can start processes as this user: the agent
	// processes (same user) only, whatever the umask.
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("supervisor socket %s: %w", sock, err)
	}
	go s.reaper()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				s.log.WithError(err).Error("accept failed")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			go s.serve(conn)
		}
	}()
	s.log.WithFields(logrus.Fields{"pid": os.Getpid(), "work_dir": root}).Info("supervisor ready")
	for range time.Tick(time.Second) {
		s.mu.Lock()
		idle := !s.idleFrom.IsZero() && time.Since(s.idleFrom) > supervisorIdle
		if idle {
			// Stop accepting while holding s.mu: no launch can slip in.
			ln.Close()
			_ = os.Remove(sock)
			_ = os.Remove(filepath.Join(root, supervisorPidFile))
		}
		s.mu.Unlock()
		if idle {
			s.log.Info("no containers and no agent: supervisor exiting")
			return nil
		}
	}
	panic("unreachable")
}

// updateIdleLocked starts or stops the idle clock. Call with s.mu held.
func (s *supervisor) updateIdleLocked() {
	if len(s.byPid) == 0 && s.watchers == 0 {
		if s.idleFrom.IsZero() {
			s.idleFrom = time.Now()
		}
	} else {
		s.idleFrom = time.Time{}
	}
}

// tenant returns the adopted tenant name ("" for the root; else a
// directory inside it, as the agent's work dir relative to the root),
// adopting it first if no request named it yet.
func (s *supervisor) tenant(name string) (*tenant, error) {
	if name != "" && (!filepath.IsLocal(name) || filepath.Clean(name) != name) {
		return nil, fmt.Errorf("tenant %q is not a directory inside %s", name, s.root)
	}
	s.mu.Lock()
	t := s.tenants[name]
	if t != nil {
		s.mu.Unlock()
		<-t.ready
		return t, t.err
	}
	if len(s.tenants) >= maxTenants {
		s.mu.Unlock()
		return nil, fmt.Errorf("tenant %q: this supervisor already serves %d work dirs", name, maxTenants)
	}
	t = &tenant{
		name: name, dir: filepath.Join(s.root, name), ready: make(chan struct{}),
		byID: map[string]*ckpt{}, watchers: map[*supWatcher]struct{}{},
	}
	s.tenants[name] = t
	s.mu.Unlock()
	if t.err = s.adopt(t); t.err != nil {
		s.mu.Lock()
		delete(s.tenants, name) // the next request tries again
		s.mu.Unlock()
	}
	close(t.ready)
	return t, t.err
}

// adopt loads the checkpoints a previous supervisor left in t. Its live
// containers are not our children (they were reparented when it died),
// so they can be neither reaped nor reported faithfully: they are killed
// (after checking /proc that the pid still is the same process, so a
// recycled pid is never touched) and recorded as killed at recovery.
func (s *supervisor) adopt(t *tenant) error {
	if t.name != "" {
		lock, err := lockWithin(filepath.Join(t.dir, supervisorLock))
		if err != nil {
			return fmt.Errorf("work dir %s has a supervisor of its own (an agent ran on it alone?): %w", t.dir, err)
		}
		t.lock = lock
	}
	if err := os.MkdirAll(filepath.Join(t.dir, metaContainersDir), 0o755); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	llog, err := openLaunchLog(t.dir)
	if err != nil {
		return err
	}
	t.llog = llog
	log := s.log.WithField("tenant", t.name)
	cks, errs := readCkpts(t.dir)
	for _, err := range errs {
		log.WithError(err).Warn("skipping checkpoint")
	}
	for _, c := range cks {
		if !c.Ended {
			s.killOrphan(t, c)
		}
	}
	s.mu.Lock()
	for _, c := range cks {
		t.byID[c.ID] = c
	}
	s.mu.Unlock()
	log.WithFields(logrus.Fields{"work_dir": t.dir, "containers": len(cks)}).Info("agent work dir adopted")
	return nil
}

func (s *supervisor) killOrphan(t *tenant, c *ckpt) {
	log := s.log.WithFields(logrus.Fields{"task": c.ID, "pid": c.Pid, "tenant": t.name})
	now := time.Now()
	c.Ended, c.EndedAt = true, &now
	if st, ok := procStartTicks(c.Pid); ok && st == c.Start {
		_ = killGroup(c.Pid, syscall.SIGKILL)
		ws := int32(syscall.SIGKILL) // wait(2) status of a SIGKILLed process
		c.Status = &ws
		c.Recovery = "container killed during agent recovery: its supervisor was gone, so it could not be reattached"
		// Not our child: wait (briefly) until it is gone for real.
		for i := 0; i < 100; i++ {
			if st, ok := procStartTicks(c.Pid); !ok || st != c.Start || procIsZombie(c.Pid) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		log.Warn("killed orphaned container at recovery")
	} else {
		c.Status = nil
		c.Recovery = "container ended while the agent and its supervisor were down; exit status unknown"
		log.Warn("orphaned container ended unobserved")
	}
	if err := writeCkpt(t.dir, c); err != nil {
		log.WithError(err).Error("checkpoint failed")
	}
	t.llog.exit(c.ID, c.Pid, c.Status)
}

// supRequest is one call from the API process; one request per connection
// except "watch", which keeps its connection for the event stream.
type supRequest struct {
	Op string `json:"op"` // launch, kill, forget, watch
	// Tenant is the agent's work dir relative to the supervisor's root
	// ("" when it is the root).
	Tenant string `json:"tenant,omitempty"`

	ID     string   `json:"id"`
	Path   string   `json:"path,omitempty"`
	Argv   []string `json:"argv,omitempty"`
	Env    []string `json:"env,omitempty"`
	Dir    string   `json:"dir,omitempty"`
	Stdout string   `json:"stdout,omitempty"`
	Stderr string   `json:"stderr,omitempty"`
	CPUs   *float64 `json:"cpus,omitempty"`
	Mem    *uint64  `json:"mem,omitempty"`

	Signal   int    `json:"signal,omitempty"`
	Recovery string `json:"recovery,omitempty"`
}

type supReply struct {
	Error string `json:"error,omitempty"`
	Errno int    `json:"errno,omitempty"` // syscall.Errno of a failed fork/exec
	Pid   int    `json:"pid,omitempty"`
	Start uint64 `json:"start_ticks,omitempty"`
	Gone  bool   `json:"gone,omitempty"` // kill: the container already ended

	Kind     string  `json:"kind,omitempty"` // watch stream: "snapshot" then "exit"
	Snapshot []*ckpt `json:"snapshot,omitempty"`
	Exit     *ckpt   `json:"exit,omitempty"`
}

func (s *supervisor) serve(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req supRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	t, err := s.tenant(req.Tenant)
	if err == nil && req.Op == "watch" {
		s.watch(conn, t)
		return
	}
	defer conn.Close()
	var rep supReply
	switch {
	case err != nil:
		rep.Error = err.Error()
	case req.Op == "launch":
		rep = s.launch(t, &req)
	case req.Op == "kill":
		rep = s.signal(t, &req)
	case req.Op == "forget":
		rep = s.forget(t, req.ID)
	default:
		rep.Error = "unknown op " + strconv.Quote(req.Op)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_ = json.NewEncoder(conn).Encode(&rep)
}

func (s *supervisor) launch(t *tenant, req *supRequest) supReply {
	log := s.log.WithFields(logrus.Fields{"task": req.ID, "tenant": t.name})
	s.mu.Lock()
	if _, ok := t.byID[req.ID]; ok {
		s.mu.Unlock()
		return supReply{Error: "container " + req.ID + " already exists"}
	}
	// Reserve the id (no pid yet) so a concurrent launch is refused.
	c := &ckpt{ID: req.ID, CPUs: req.CPUs, Mem: req.Mem}
	t.byID[req.ID] = c
	s.idleFrom = time.Time{}
	s.mu.Unlock()

	unreserve := func() {
		s.mu.Lock()
		delete(t.byID, req.ID)
		s.updateIdleLocked()
		s.mu.Unlock()
	}
	var files [2]*os.File
	for i, p := range []string{req.Stdout, req.Stderr} {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			if files[0] != nil {
				files[0].Close()
			}
			unreserve()
			return supReply{Error: fmt.Sprintf("open %s: %v", p, err), Errno: errnoOf(err)}
		}
		files[i] = f
	}
	defer files[0].Close()
	defer files[1].Close()

	s.forkMu.RLock()
	pid, err := spawn(req.Path, req.Argv, req.Env, req.Dir, []uintptr{s.devNull.Fd(), files[0].Fd(), files[1].Fd()})
	if err != nil {
		s.forkMu.RUnlock()
		unreserve()
		return supReply{Error: err.Error(), Errno: errnoOf(err)}
	}
	start, _ := procStartTicks(pid) // the child cannot be reaped before it is in byPid
	s.mu.Lock()
	c.Pid, c.Start, c.StartedAt = pid, start, time.Now()
	s.byPid[pid] = livePid{t, c}
	snap := *c
	s.mu.Unlock()
	s.forkMu.RUnlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	// Checkpoint before answering: once the agent knows the pid, a restart
	// must find it. (The reaper may already have written the exit; a
	// launch checkpoint must not overwrite it, hence the copy check.)
	s.mu.Lock()
	if !c.Ended {
		if err := writeCkpt(t.dir, &snap); err != nil {
			log.WithError(err).Error("checkpoint failed")
		}
	}
	s.mu.Unlock()
	t.llog.launch(req.ID, pid)
	log.WithField("pid", pid).Info("container started")
	return supReply{Pid: pid, Start: start}
}

func errnoOf(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return 0
}

// signal delivers KILL_CONTAINER under s.mu, which the reaper also holds
// while it reaps, so a reaped (possibly recycled) pid is never signalled.
func (s *supervisor) signal(t *tenant, req *supRequest) supReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := t.byID[req.ID]
	if c == nil {
		return supReply{Error: "unknown container " + req.ID}
	}
	if c.Ended || c.Pid == 0 {
		return supReply{Gone: true}
	}
	if err := killGroup(c.Pid, syscall.Signal(req.Signal)); err != nil && err != syscall.ESRCH {
		return supReply{Error: fmt.Sprintf("signal container %s: %v", req.ID, err), Errno: errnoOf(err)}
	}
	if req.Signal != 0 {
		c.KillSignal = req.Signal
		if req.Recovery != "" {
			c.Recovery = req.Recovery
		}
		if err := writeCkpt(t.dir, c); err != nil {
			s.log.WithError(err).WithFields(logrus.Fields{"task": c.ID, "tenant": t.name}).Error("checkpoint failed")
		}
	}
	return supReply{}
}

func (s *supervisor) forget(t *tenant, id string) supReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := t.byID[id]
	if c == nil {
		return supReply{}
	}
	if !c.Ended {
		return supReply{Error: "container " + id + " has not terminated yet"}
	}
	delete(t.byID, id)
	if err := removeCkpt(t.dir, id); err != nil {
		return supReply{Error: err.Error()}
	}
	return supReply{}
}

// reaper is the supervisor's only waiter: one thread in waitid for all
// containers. Every child of the supervisor is a container.
func (s *supervisor) reaper() {
	for {
		pid, err := peekExited()
		if err == syscall.ECHILD {
			<-s.kick
			continue
		}
		if err != nil {
			s.log.WithError(err).Error("waitid failed")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if s.reap(pid) {
			continue
		}
		s.forkMu.Lock()
		s.forkMu.Unlock() //nolint:staticcheck // barrier: launches in flight register their pids
		if !s.reap(pid) {
			// Not a container (cannot happen): reap it so waitid moves on.
			_, _ = reapPid(pid)
			s.log.WithField("pid", pid).Warn("reaped a child that was not a container")
		}
	}
}

func (s *supervisor) reap(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	lp, ok := s.byPid[pid]
	if !ok {
		return false
	}
	t, c := lp.t, lp.c
	// Kill what is left of the group while the zombie leader still
	// reserves the group id (Mesos destroys the cgroup likewise).
	_ = killGroup(pid, syscall.SIGKILL)
	ws, ok := reapPid(pid)
	if !ok {
		return false
	}
	delete(s.byPid, pid)
	status := int32(ws)
	now := time.Now()
	c.Ended, c.Status, c.EndedAt = true, &status, &now
	if err := writeCkpt(t.dir, c); err != nil {
		s.log.WithError(err).WithFields(logrus.Fields{"task": c.ID, "tenant": t.name}).Error("checkpoint failed")
	}
	t.llog.exit(c.ID, pid, &status)
	ev := *c
	for w := range t.watchers {
		w.push(&supReply{Kind: "exit", Exit: &ev})
	}
	s.updateIdleLocked()
	s.log.WithFields(logrus.Fields{"task": c.ID, "pid": pid, "status": status, "tenant": t.name}).Info("container ended")
	return true
}

// supWatcher is one agent's event stream. Its queue is unbounded but holds
// at most one event per container exit, written out by one goroutine.
type supWatcher struct {
	mu     sync.Mutex
	q      []*supReply
	wake   chan struct{}
	closed bool
}

func (w *supWatcher) push(m *supReply) {
	w.mu.Lock()
	if !w.closed {
		w.q = append(w.q, m)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (s *supervisor) watch(conn net.Conn, t *tenant) {
	w := &supWatcher{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	snap := make([]*ckpt, 0, len(t.byID))
	for _, c := range t.byID {
		if c.Pid == 0 {
			continue // launch in flight: its reply carries the pid
		}
		cp := *c
		snap = append(snap, &cp)
	}
	// Registered under s.mu with the snapshot: no exit falls in between.
	t.watchers[w] = struct{}{}
	s.watchers++
	s.updateIdleLocked()
	s.mu.Unlock()
	w.push(&supReply{Kind: "snapshot", Snapshot: snap})

	gone := make(chan struct{})
	go func() {
		// The agent never writes after its request; a read returning means
		// it went away.
		var b [1]byte
		_, _ = conn.Read(b[:])
		close(gone)
	}()
	enc := json.NewEncoder(conn)
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(t.watchers, w)
		s.watchers--
		s.updateIdleLocked()
		s.mu.Unlock()
		w.mu.Lock()
		w.closed, w.q = true, nil
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		q := w.q
		w.q = nil
		w.mu.Unlock()
		for _, m := range q {
			_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if err := enc.Encode(m); err != nil {
				return
			}
		}
		select {
		case <-w.wake:
		case <-gone:
			return
		}
	}
}

// spawnSupervisor starts the supervisor rooted at dir: this executable
// again, in its own session (so the agent's process group signals miss
// it), working directory dir (so stack.sh's cwd sweep finds it), output
// appended to dir/supervisor.log. agentID labels its logs (empty when it
// serves the several agents of one process). A goroutine waits for it so
// it is reaped if it exits while this agent runs; if the agent dies first
// it is reparented.
func spawnSupervisor(dir, agentID string, level logrus.Level) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervisor: find own executable: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, supervisorLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("supervisor log: %w", err)
	}
	defer logf.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	defer devNull.Close()
	env := append(os.Environ(), supervisorEnv+"="+dir, supervisorAgentEnv+"="+agentID, supervisorLevelEnv+"="+level.String())
	p, err := os.StartProcess(exe, []string{exe, supervisorArg}, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{devNull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fmt.Errorf("supervisor: start %s: %w", exe, err)
	}
	go func() { _, _ = p.Wait() }()
	return nil
}

// procStartTicks is field 22 of /proc/<pid>/stat: when the process started,
// in clock ticks since boot. With the pid it identifies a process for good.
func procStartTicks(pid int) (uint64, bool) {
	f, ok := procStatFields(pid)
	if !ok || len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64) // f[0] is field 3
	return v, err == nil
}

func procIsZombie(pid int) bool {
	f, ok := procStatFields(pid)
	return ok && len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
