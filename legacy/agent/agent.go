package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// Version is reported by GET_VERSION.
const Version = "1.11.0-vk-titus-reference"

// Agent is a Mesos-style agent whose standalone containers are host process
// groups. It is safe for concurrent use. Create it with New.
type Agent struct {
	cfg         Config
	log         logrus.FieldLogger
	info        mesos.AgentInfo
	catalog     *Catalog
	workDir     string   // absolute, symlinks resolved
	sandboxRoot string   // workDir/sandboxes
	trashRoot   string   // workDir/.trash: sandboxes being deleted
	devNull     *os.File // the process's shared /dev/null
	reaper      *procReaper
	auth        *mesosauth.Authenticator // nil: the operator API is open
	selfUser    string
	selfUID     string
	started     time.Time

	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*container
	closed     bool

	spawnSl chan struct{}

	stop      chan struct{}
	closeOnce sync.Once

	// Recovery (Config.Recover set; recover_linux.go). sup is fixed after
	// New; watchConn is guarded by mu. llog is set in both modes.
	sup       *supClient
	agentLock *os.File
	watchConn *watchStream
	llog      *launchLog
}

type cstate int

const (
	stateLaunching cstate = iota
	stateRunning
	stateTerminated
)

func (s cstate) String() string {
	switch s {
	case stateLaunching:
		return "launching"
	case stateRunning:
		return "running"
	default:
		return "terminated"
	}
}

type container struct {
	id        string
	sandbox   string
	state     cstate
	pid       int
	startedAt time.Time

	// killSignal is the last signal KILL_CONTAINER delivered (0: none).
	killSignal syscall.Signal
	// pendingSignal is a KILL that arrived while launching.
	pendingSignal syscall.Signal
	shutdownKill  bool

	cpusLimit *float64
	memLimit  *uint64

	// early is an exit the supervisor reported before the launch reply
	// registered the pid (supervised mode); guarded by Agent.mu.
	early *ckpt

	// term is written once, before done is closed; readers that received
	// from done may read it without the lock.
	term *termination
	done chan struct{}
}

type termination struct {
	status  *int32
	state   mesos.TaskState
	reason  *mesos.TaskStatus_Reason
	message string
}

// New validates cfg, prepares the work directory and starts the reaper.
// With cfg.Recover empty, containers are children of this process and an
// earlier agent run's are not recovered: their sandboxes stay on disk
// (readable via READ_FILE by absolute path) until a LAUNCH with the same id
// replaces them. With cfg.Recover set, containers run under the work dir's
// supervisor process and are recovered (or, with "cleanup", killed) here.
func New(cfg Config) (*Agent, error) {
	if !supported {
		return nil, errors.New("agent: the reference agent needs Linux (waitid, /proc)")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res, err := ParseResources(cfg.Resources)
	if err != nil {
		return nil, fmt.Errorf("agent: --resources: %w", err)
	}
	attrs, err := ParseAttributes(cfg.Attributes)
	if err != nil {
		return nil, fmt.Errorf("agent: --attributes: %w", err)
	}
	cat, err := LoadCatalog(cfg.ImageCatalog)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	auth, err := mesosauth.NewAuthenticator(cfg.HTTPAuth)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: work dir: %w", err)
	}
	workDir, err := filepath.EvalSymlinks(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("agent: work dir: %w", err)
	}
	a := &Agent{
		cfg:         cfg,
		log:         cfg.Logger,
		catalog:     cat,
		workDir:     workDir,
		sandboxRoot: filepath.Join(workDir, "sandboxes"),
		trashRoot:   filepath.Join(workDir, ".trash"),
		auth:        auth,
		started:     time.Now(),
		containers:  map[string]*container{},
		byPid:       map[int]*container{},
		spawnSl:     make(chan struct{}, cfg.MaxConcurrentSpawns),
		stop:        make(chan struct{}),
	}
	for _, d := range []string{a.sandboxRoot, a.trashRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	// Leftovers of an interrupted REMOVE.
	if ents, err := os.ReadDir(a.trashRoot); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(a.trashRoot, e.Name()))
		}
	}
	if u, err := user.Current(); err == nil {
		a.selfUser, a.selfUID = u.Username, u.Uid
	}
	cur, max, err := raiseNofileLimit()
	if err != nil {
		a.log.WithError(err).Warn("could not raise RLIMIT_NOFILE")
	} else {
		a.log.WithFields(logrus.Fields{"soft": cur, "hard": max}).Debug("RLIMIT_NOFILE")
	}
	// One shared /dev/null for every container's stdin.
	if a.devNull, err = sharedDevNull(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	id := mesos.AgentID{Value: cfg.AgentID}
	port := cfg.Port
	a.info = mesos.AgentInfo{
		Hostname:   cfg.Hostname,
		Port:       &port,
		Resources:  res,
		Attributes: attrs,
		ID:         &id,
	}
	if a.llog, err = openLaunchLog(workDir); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.reaper = theReaper() // in supervised mode it reaps exec sessions only
	if cfg.Recover != RecoverNone {
		if err := a.startSupervised(); err != nil {
			close(a.stop)
			a.llog.close()
			return nil, err
		}
	}
	a.log.WithFields(logrus.Fields{
		"agent_id": cfg.AgentID, "work_dir": workDir, "hostname": cfg.Hostname, "port": port,
		"http_auth": cfg.HTTPAuth.String(),
	}).Info("reference agent ready")
	return a, nil
}

// Handler serves the operator API at /api/v1 (and GET /health).
func (a *Agent) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

// AgentInfo returns what GET_AGENT reports.
func (a *Agent) AgentInfo() mesos.AgentInfo { return a.info }

// Close stops the agent. Without recovery it kills every container's
// process group with SIGKILL and waits briefly for the exits to be reaped:
// a restarted agent starts empty, as a Mesos agent without
// recovery. With recovery (Config.Recover) the containers keep running
// under their supervisor, as a Mesos agent leaves them on a graceful stop,
// for the next agent on this work dir to recover; exec sessions end.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		watch := a.watchConn
		var waits []chan struct{}
		for _, c := range a.containers {
			if a.sup != nil {
				continue
			}
			if c.state == stateRunning {
				c.shutdownKill = true
				_ = killGroup(c.pid, syscall.SIGKILL)
			}
			if c.state != stateTerminated {
				waits = append(waits, c.done)
			}
		}
		a.mu.Unlock()
		deadline := time.After(10 * time.Second)
	wait:
		for _, d := range waits {
			select {
			case <-d:
			case <-deadline:
				a.log.Warn("close: some containers did not exit in time")
				break wait
			}
		}
		close(a.stop)
		if watch != nil {
			watch.Close()
		}
		if a.agentLock != nil {
			a.agentLock.Close() // releases the work dir for the next agent
		}
		// llog stays open: a late reap of an in-process child may still log.
	})
	return nil
}

func (a *Agent) wake() { a.reaper.wake() }

// reapOurs records the exit of pid if it is a container leader that has
// exited (known: waitid already said so). Everything happens under a.mu so
// KILL_CONTAINER never signals a reaped (and possibly reused) pid.
func (a *Agent) reapOurs(pid int, known bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.byPid[pid]
	if c == nil {
		return false
	}
	if !known && !hasExited(pid) {
		return false
	}
	// Like Mesos destroying the container's cgroup once its init process is
	// gone: kill what is left of the group while the zombie leader still
	// reserves the group id.
	_ = killGroup(pid, syscall.SIGKILL)
	ws, ok := reapPid(pid)
	if !ok {
		return false
	}
	delete(a.byPid, pid)
	a.reaper.disown(pid)
	if a.containers[c.id] == c { // a container, not an exec session
		raw := int32(ws)
		a.llog.exit(c.id, pid, &raw)
	}
	t := a.terminationFor(c, ws)
	c.state = stateTerminated
	c.term = t
	close(c.done)
	a.log.WithFields(logrus.Fields{
		"container": c.id, "pid": pid, "state": t.state.String(), "exit_status": int32(ws),
	}).Info(t.message)
	return true
}

func (a *Agent) terminationFor(c *container, ws syscall.WaitStatus) *termination {
	raw := int32(ws)
	t := &termination{status: &raw}
	what := describeWait(ws)
	switch {
	case c.shutdownKill:
		t.state = mesos.TASK_KILLED
		r := mesos.REASON_EXECUTOR_TERMINATED
		t.reason = &r
		t.message = what + " (killed because the agent is shutting down)"
	case c.killSignal != 0:
		t.state = mesos.TASK_KILLED
		t.message = fmt.Sprintf("%s (after KILL_CONTAINER with %s)", what, signalName(c.killSignal))
	case ws.Exited() && ws.ExitStatus() == 0:
		t.state = mesos.TASK_FINISHED
		t.message = what
	default:
		t.state = mesos.TASK_FAILED
		r := mesos.REASON_COMMAND_EXECUTOR_FAILED
		t.reason = &r
		t.message = what
	}
	return t
}

// describeWait words a wait status as Mesos' command executor does.
func describeWait(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("Command exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return "Command terminated with signal " + signalName(ws.Signal())
	default:
		return fmt.Sprintf("Command ended with wait status %#x", uint32(ws))
	}
}

// signalName mirrors strsignal(3), which Mesos uses in its messages.
func signalName(s syscall.Signal) string {
	n := s.String()
	if n == "" {
		return fmt.Sprintf("signal %d", int(s))
	}
	return strings.ToUpper(n[:1]) + n[1:]
}
