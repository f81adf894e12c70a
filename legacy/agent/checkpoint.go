package agent

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names inside the work dir used by recovery (see doc.go).
const (
	metaContainersDir = "meta/containers" // one checkpoint per container
	supervisorSock    = "supervisor.sock"
	supervisorLock    = "supervisor.lock" // flock held by the live supervisor
	supervisorPidFile = "supervisor.pid"
	supervisorLogFile = "supervisor.log"
	agentLockFile     = "agent.lock" // flock held by the live API process
	launchLogFile     = "launches.log"
)

// supStarter serializes starting a supervisor among the agents that share
// it (Config.Agents): agents that lose their supervisor together start
// one, not one each, and none probes its lock while the one just started
// is taking it. A single agent has one of its own.
type supStarter struct {
	mu        sync.Mutex
	lastSpawn time.Time
}

// Recovery modes (Config.Recover, --recover).
const (
	RecoverNone      = ""          // in-process children, nothing survives the agent (library default)
	RecoverReconnect = "reconnect" // re-attach to the running containers (Mesos default)
	RecoverCleanup   = "cleanup"   // kill every checkpointed container on start
)

// ckpt is one container's checkpoint, written by the supervisor to
// <work-dir>/meta/containers/<sha1(id)>.json (atomically: temp file and
// rename, so a crash leaves the old or the new version, never half of one)
// when the process starts, when it is signalled and when it ends. It is also
// what the supervisor sends the API process (snapshot and exit events).
type ckpt struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`
	Start     uint64    `json:"start_ticks"` // /proc/<pid>/stat starttime: tells a recycled pid apart
	StartedAt time.Time `json:"started_at"`
	CPUs      *float64  `json:"cpus,omitempty"`
	Mem       *uint64   `json:"mem,omitempty"`
	// KillSignal is the last signal KILL_CONTAINER delivered (0: none).
	KillSignal int `json:"kill_signal,omitempty"`
	// Recovery says why recovery killed the container ("" when it did not).
	Recovery string     `json:"recovery,omitempty"`
	Ended    bool       `json:"ended"`
	Status   *int32     `json:"status,omitempty"` // wait(2) status; nil when ended but unknown
	EndedAt  *time.Time `json:"ended_at,omitempty"`
}

func ckptPath(workDir, id string) string {
	// Hashed: an id may be 255 bytes long, which with a suffix would not fit
	// NAME_MAX; the id itself is inside the file.
	sum := sha1.Sum([]byte(id))
	return filepath.Join(workDir, metaContainersDir, hex.EncodeToString(sum[:])+".json")
}

func writeCkpt(workDir string, c *ckpt) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	p := ckptPath(workDir, c.ID)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	return nil
}

func removeCkpt(workDir, id string) error {
	if err := os.Remove(ckptPath(workDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	return nil
}

// readCkpts loads every checkpoint; unreadable ones are reported and skipped
// (a temp file left by a crash is simply ignored: the rename never happened).
func readCkpts(workDir string) ([]*ckpt, []error) {
	dir := filepath.Join(workDir, metaContainersDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{fmt.Errorf("read checkpoints: %w", err)}
	}
	var out []*ckpt
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			if strings.HasSuffix(e.Name(), ".tmp") {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("checkpoint %s: %w", e.Name(), err))
			continue
		}
		var c ckpt
		if err := json.Unmarshal(b, &c); err != nil || c.ID == "" {
			errs = append(errs, fmt.Errorf("checkpoint %s: corrupt: %v", e.Name(), err))
			continue
		}
		out = append(out, &c)
	}
	return out, errs
}

// launchLog appends one JSON line per container launch and exit to
// <work-dir>/launches.log for invariant checkers. Every line is one write(2)
// on an O_APPEND descriptor, so lines from the supervisor and from an API
// process recovering orphans never interleave, and the file survives
// restarts (it is never truncated).
type launchLog struct {
	mu sync.Mutex // serialises writes only; a line is one write anyway
	f  *os.File
}

type launchLine struct {
	T      string `json:"t"`
	Event  string `json:"event"`
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Code   *int   `json:"code,omitempty"`
	Signal *int   `json:"signal,omitempty"`
	// Unknown is set on an exit whose status nobody could observe (the
	// process ended while neither the agent nor its supervisor ran).
	Unknown bool `json:"unknown,omitempty"`
}

func openLaunchLog(workDir string) (*launchLog, error) {
	f, err := os.OpenFile(filepath.Join(workDir, launchLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("launch log: %w", err)
	}
	return &launchLog{f: f}, nil
}

func (l *launchLog) write(ln launchLine) {
	if l == nil {
		return
	}
	ln.T = time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(ln)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *launchLog) launch(id string, pid int) {
	l.write(launchLine{Event: "launch", ID: id, Pid: pid})
}

// exit logs an end; status nil means unknown. code is the exit status, or
// 128+signal with signal set, as WAIT_CONTAINER reports it.
func (l *launchLog) exit(id string, pid int, status *int32) {
	ln := launchLine{Event: "exit", ID: id, Pid: pid}
	if status == nil {
		code, sig := -1, 0
		ln.Code, ln.Signal, ln.Unknown = &code, &sig, true
	} else {
		code, sig := exitCode(syscall.WaitStatus(*status))
		ln.Code, ln.Signal = &code, &sig
	}
	l.write(ln)
}

func (l *launchLog) close() {
	if l != nil {
		l.f.Close()
	}
}

func exitCode(ws syscall.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
