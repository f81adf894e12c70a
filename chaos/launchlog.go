// Package chaos checks the invariants of the bridge from the agents' own
// view (their launch logs, their live processes, GET_CONTAINERS) and the
// Kubernetes API, and drives a seeded, replayable chaos run against the
// local stack (cmd/vk-chaos). The checks are plain functions returning
// violations, so the end-to-end fault tests (integration/faults_test.go)
// use the same ones.
package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vk-titus/vk-titus/translate"
)

// LaunchLogName is the reference agent's append-only launch log in its work
// directory: JSON lines
//
//	{"t":"RFC3339Nano","event":"launch","id":"<container id>","pid":N}
//	{"t":"RFC3339Nano","event":"exit","id":"<container id>","pid":N,"code":C,"signal":S}
const LaunchLogName = "launches.log"

// Event is one line of a launch log.
type Event struct {
	T      time.Time `json:"t"`
	Event  string    `json:"event"`
	ID     string    `json:"id"`
	Pid    int       `json:"pid"`
	Code   *int      `json:"code,omitempty"`
	Signal int       `json:"signal,omitempty"`
	// Unknown: an exit nobody could observe (the process ended while
	// neither the agent nor its supervisor ran); Code is then -1.
	Unknown bool `json:"unknown,omitempty"`
}

// Run is one process an agent launched for a container id: from its launch
// to its exit (End zero while no exit was logged).
type Run struct {
	Agent  string // the agent's work-dir base name (agent-N)
	ID     string // container id
	Pid    int
	Start  time.Time
	End    time.Time // zero: no exit logged
	Code   int       // exit status (valid when Exited)
	Signal int       // terminating signal, 0 when it exited normally
	Exited bool
	// ExitUnknown: the agent logged the end but could not observe its
	// status.
	ExitUnknown bool
	// Alive: no exit logged and the pid still runs in this container's
	// sandbox (filled by ReadLaunchLog from /proc).
	Alive bool
}

// ExitCode is the code Kubernetes should report for the run: the exit
// status, or 128+signal for a run killed by a signal (the agent logs the
// code that way already; a bare signal number is taken as the signal).
func (r Run) ExitCode() int32 {
	if r.Signal != 0 && r.Code < 128 {
		return int32(128 + r.Signal)
	}
	return int32(r.Code)
}

func (r Run) String() string {
	end := "running"
	switch {
	case r.Exited:
		end = fmt.Sprintf("exit %s code=%d signal=%d", r.End.Format("15:04:05.000"), r.Code, r.Signal)
	case !r.Alive:
		end = "no exit logged, process gone"
	}
	return fmt.Sprintf("%s/%s pid %d [%s → %s]", r.Agent, r.ID, r.Pid, r.Start.Format("15:04:05.000"), end)
}

// ErrNoLaunchLog is returned (wrapped) when an agent work dir has no
// launch log: the agent predates crash recovery.
var ErrNoLaunchLog = errors.New("no launch log (the agent does not write " + LaunchLogName + ")")

// ReadLaunchLog reads <workDir>/launches.log into runs, in launch order.
// A torn last line (the agent was SIGKILLed while writing) is skipped.
func ReadLaunchLog(workDir string) ([]Run, error) {
	path := filepath.Join(workDir, LaunchLogName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoLaunchLog)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	agent := filepath.Base(workDir)
	live := LiveProcesses(workDir)
	var runs []*Run
	open := map[string]*Run{} // id/pid -> run
	key := func(id string, pid int) string { return fmt.Sprintf("%s/%d", id, pid) }
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		switch e.Event {
		case "launch":
			r := &Run{Agent: agent, ID: e.ID, Pid: e.Pid, Start: e.T}
			runs = append(runs, r)
			open[key(e.ID, e.Pid)] = r
		case "exit":
			r := open[key(e.ID, e.Pid)]
			if r == nil {
				// An exit without its launch: count it as a zero-length run
				// so that the exit code is still known.
				r = &Run{Agent: agent, ID: e.ID, Pid: e.Pid, Start: e.T}
				runs = append(runs, r)
			}
			delete(open, key(e.ID, e.Pid))
			r.End, r.Exited, r.Signal, r.ExitUnknown = e.T, true, e.Signal, e.Unknown
			if e.Code != nil {
				r.Code = *e.Code
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]Run, 0, len(runs))
	for _, r := range runs {
		if !r.Exited {
			for _, pid := range live[r.ID] {
				if pid == r.Pid {
					r.Alive = true
				}
			}
		}
		out = append(out, *r)
	}
	return out, nil
}

// ReadLaunchLogs reads the launch logs of several agent work dirs.
func ReadLaunchLogs(workDirs ...string) ([]Run, error) {
	var all []Run
	var errs []error
	for _, d := range workDirs {
		runs, err := ReadLaunchLog(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, runs...)
	}
	return all, errors.Join(errs...)
}

// AgentWorkDirs lists <stackRoot>/agents/agent-N.
func AgentWorkDirs(stackRoot string) []string {
	dirs, _ := filepath.Glob(filepath.Join(stackRoot, "agents", "agent-*"))
	sort.Strings(dirs)
	return dirs
}

var restartSuffix = regexp.MustCompile(`-r[0-9]+$`)

// PodContainerKey maps a container id to the pod container it runs: the
// bridge's ids (translate.ContainerID, "-rN" for the Nth restart) lose
// their run suffix; any other id (a legacy task's) is its own key.
func PodContainerKey(id string) string {
	if base := restartSuffix.ReplaceAllString(id, ""); base != id {
		if _, _, ok := translate.ParseContainerID(base); ok {
			return base
		}
	}
	return id
}

// RunIndex is the run number of a container id (0 for the first run, N for
// "-rN").
func RunIndex(id string) int {
	m := restartSuffix.FindString(id)
	if m == "" {
		return 0
	}
	var n int
	fmt.Sscanf(m, "-r%d", &n)
	if _, _, ok := translate.ParseContainerID(strings.TrimSuffix(id, m)); !ok {
		return 0
	}
	return n
}

// Violation is one broken invariant.
type Violation struct {
	Kind    string // duplicate, orphan, exit-code, lost-exit, job, legacy-job, ...
	Subject string // what it is about (a pod, container id, job)
	Detail  string
}

func (v Violation) String() string { return fmt.Sprintf("[%s] %s: %s", v.Kind, v.Subject, v.Detail) }

// Violation kinds.
const (
	KindDuplicate     = "duplicate"      // two live runs of one pod container at once
	KindLostExit      = "lost-exit"      // a run with no exit logged whose process is gone
	KindOrphan        = "orphan"         // a container or process left without its pod
	KindNoContainer   = "no-container"   // a Running pod with no live container
	KindExitCode      = "exit-code"      // a reported exit code differs from the real one
	KindTerminatedRun = "terminated-run" // a container reported terminated still runs
	KindJob           = "job"            // a Job did not complete exactly its completions
	KindLegacyJob     = "legacy-job"     // a legacy job lost or doubled
	KindRelaunch      = "relaunch"       // a container launched again when it should not be
	KindCheck         = "check"          // the checker could not look
)

// CheckOverlaps reports every pair of runs of one pod container whose
// launch→exit intervals overlap (across its -rN runs and agents). A run
// with no exit logged counts as still running (its end is unknown), and a
// run that has no exit logged while its process is gone is reported too
// (lost-exit): the agent lost track of it.
func CheckOverlaps(runs []Run) []Violation {
	var out []Violation
	groups := map[string][]Run{}
	for _, r := range runs {
		k := PodContainerKey(r.ID)
		groups[k] = append(groups[k], r)
		if !r.Exited && !r.Alive {
			out = append(out, Violation{KindLostExit, r.ID, "launched (" + r.String() + ") but no exit was ever logged and the process is gone"})
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		sort.SliceStable(g, func(i, j int) bool { return g[i].Start.Before(g[j].Start) })
		// Sweep: every run against the ones launched before it that have
		// not ended by its launch.
		for j := 1; j < len(g); j++ {
			for i := 0; i < j; i++ {
				switch {
				case g[i].Exited && !g[i].End.After(g[j].Start):
				case !g[i].Exited && !g[i].Alive:
					out = append(out, Violation{KindDuplicate, k, fmt.Sprintf("a run was launched while an earlier one had logged no exit (its end is unknown): %s and %s", g[i], g[j])})
				default:
					out = append(out, Violation{KindDuplicate, k, fmt.Sprintf("two runs at once: %s and %s", g[i], g[j])})
				}
			}
		}
	}
	return out
}

// CheckLaunchLog reads the launch logs of the agent work dirs and reports
// overlapping runs of a pod container and runs whose exit was lost. An
// agent without a launch log is a violation of kind "check".
func CheckLaunchLog(workDirs ...string) []Violation {
	runs, err := ReadLaunchLogs(workDirs...)
	out := CheckOverlaps(runs)
	if err != nil {
		out = append(out, Violation{KindCheck, "launch log", err.Error()})
	}
	return out
}

// FilterRuns keeps the runs whose container id satisfies keep.
func FilterRuns(runs []Run, keep func(id string) bool) []Run {
	var out []Run
	for _, r := range runs {
		if keep(r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// LiveRunsPerPodContainer counts, per pod container, the runs still alive.
func LiveRunsPerPodContainer(runs []Run) map[string][]Run {
	out := map[string][]Run{}
	for _, r := range runs {
		if r.Alive {
			k := PodContainerKey(r.ID)
			out[k] = append(out[k], r)
		}
	}
	return out
}
