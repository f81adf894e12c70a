package statemachine

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// State is where one legacy container is in its life.
type State string

// The states. Terminal ones (Succeeded, Failed, Rejected, Killed, Lost) only accept the
// cleanup a deletion asks for: Removing until the agent took the REMOVE,
// then Removed.
const (
	Accepted     State = "accepted"     // known to the bridge, not launched yet
	Launching    State = "launching"    // LAUNCH_CONTAINER in flight
	LaunchRetry  State = "launch-retry" // a launch failed in transit: it may or may not run
	Starting     State = "starting"     // the agent accepted the launch
	Running      State = "running"      // the process runs; a WAIT is (or will be) pending
	BackOff      State = "backoff"      // exited, restart scheduled by the restart policy
	Killing      State = "killing"      // SIGTERM sent, grace period running
	Restarting   State = "restarting"   // killed for a failed liveness or startup probe
	Disconnected State = "disconnected" // the agent cannot be reached; last status stands
	Reconciling  State = "reconciling"  // the agent is back; asking it what happened
	Succeeded    State = "succeeded"    // exited 0, not restarted
	Failed       State = "failed"       // exited non-zero or by a signal
	Rejected     State = "rejected"     // could not be translated or launched
	Killed       State = "killed"       // ended because the pod was deleted
	Lost         State = "lost"         // unknown: the agent or the container could not be found
	Removing     State = "removing"     // ended; REMOVE sent, or to be sent again (the agent was away)
	Removed      State = "removed"      // ended and its sandbox removed: nothing of it is left
)

// EventType is what happened to a container.
type EventType string

// Events fed to Step. ContainerExited is refined by Step into ExitedOK,
// ExitedError or ExitedRestart according to the exit code and the pod's
// restart policy, and the table is keyed by the refined type.
const (
	Launch             EventType = "launch"              // the pod was bound to the node: start it
	Adopt              EventType = "adopt"               // a restarted bridge meets a pod that ran before
	InvalidSpec        EventType = "invalid-spec"        // the pod cannot be translated
	LaunchAccepted     EventType = "launch-accepted"     // LAUNCH_CONTAINER answered 202
	LaunchExists       EventType = "launch-exists"       // LAUNCH_CONTAINER answered 200: it already runs
	LaunchRejected     EventType = "launch-rejected"     // the agent refused the launch (4xx)
	LaunchUnavailable  EventType = "launch-unavailable"  // the launch call failed in transit: retry
	ContainerRunning   EventType = "container-running"   // the agent reports the process running
	ContainerExited    EventType = "container-exited"    // WAIT_CONTAINER returned
	ExitedOK           EventType = "exited-ok"           // refined: exit 0, no restart
	ExitedError        EventType = "exited-error"        // refined: non-zero or signal, no restart
	ExitedRestart      EventType = "exited-restart"      // refined: the restart policy restarts it
	RestartDue         EventType = "restart-due"         // the back-off delay has passed
	DeleteRequested    EventType = "delete-requested"    // the pod is being deleted
	GraceExpired       EventType = "grace-expired"       // the termination grace period is over
	LivenessFailed     EventType = "liveness-failed"     // a liveness (or startup) probe failed failureThreshold times
	AgentUnreachable   EventType = "agent-unreachable"   // calls to the agent fail
	AgentBack          EventType = "agent-back"          // the agent answers again
	AgentGone          EventType = "agent-gone"          // the master or an operator declared it gone
	ReconciledFound    EventType = "reconciled-found"    // the agent lists the container as live
	ReconciledNotFound EventType = "reconciled-notfound" // the agent knows nothing of it
	RemoveDone         EventType = "remove-done"         // REMOVE_CONTAINER answered (or 404: nothing left)
	RemoveFailed       EventType = "remove-failed"       // REMOVE_CONTAINER did not reach the agent, or it still runs
	RemoveDue          EventType = "remove-due"          // the remove back-off has passed
)

// Action is work the caller must perform after a transition, in order.
type Action string

// Actions.
const (
	DoLaunch          Action = "launch"           // LAUNCH_CONTAINER
	DoWait            Action = "wait"             // WAIT_CONTAINER until it exits
	DoKill            Action = "kill"             // KILL_CONTAINER with SIGTERM
	DoStartGrace      Action = "start-grace"      // fire GraceExpired after the grace period
	DoKillForce       Action = "kill-force"       // KILL_CONTAINER with SIGKILL
	DoScheduleRestart Action = "schedule-restart" // fire RestartDue after the kubelet back-off
	DoRetryLaunch     Action = "retry-launch"     // fire Launch again after a short back-off
	DoRemove          Action = "remove"           // REMOVE_CONTAINER (frees the sandbox); answers RemoveDone or RemoveFailed
	DoRetryRemove     Action = "retry-remove"     // fire RemoveDue after the remove back-off
	DoReconcile       Action = "reconcile"        // ask the agent, fire Reconciled* or ContainerExited
)

// Record is the Kubernetes event a transition leaves on the pod, as the
// kubelet would (`kubectl describe pod` tells the story from these).
type Record struct {
	Type   string // corev1.EventTypeNormal or EventTypeWarning
	Reason string
}

// Transition is one row of the table.
type Transition struct {
	From    State
	On      EventType
	To      State
	Actions []Action
	Record  *Record
}

// Event is one input to Step.
type Event struct {
	Type     EventType
	ExitCode int32  // ContainerExited: exit code (128+signal when killed by a signal)
	Run      int32  // ReconciledFound: the newest run the agent holds (restart count)
	Signal   int32  // ContainerExited: the terminating signal, 0 if it exited
	Reason   string // free-form cause, shown on the pod (e.g. the agent's refusal)
	Message  string
}

// ErrForbidden is wrapped by Step's error for a pair the table does not have.
var ErrForbidden = fmt.Errorf("transition not in the state machine")

type key struct {
	s State
	e EventType
}

var index = indexRows(table, func(t Transition) key { return key{t.From, t.On} })

// indexRows builds a table's lookup; a pair declared twice is a programming
// error caught at start.
func indexRows[K comparable, R any](rows []R, keyOf func(R) K) map[K]R {
	m := make(map[K]R, len(rows))
	for _, r := range rows {
		k := keyOf(r)
		if _, dup := m[k]; dup {
			panic(fmt.Sprintf("statemachine: duplicate row %v", k))
		}
		m[k] = r
	}
	return m
}

// Refine turns a ContainerExited event into the table's exit kind, applying
// the pod's restart policy as the kubelet does: Always restarts every exit,
// OnFailure only failures, Never none. Other events pass unchanged.
func Refine(ev Event, policy corev1.RestartPolicy) EventType {
	if ev.Type != ContainerExited {
		return ev.Type
	}
	ok := ev.ExitCode == 0 && ev.Signal == 0
	switch {
	case policy == corev1.RestartPolicyAlways, policy == corev1.RestartPolicyOnFailure && !ok:
		return ExitedRestart
	case ok:
		return ExitedOK
	default:
		return ExitedError
	}
}

// Step looks up the transition for ev in state s. A pair the table does not
// hold is an error wrapping ErrForbidden: the caller logs it and keeps the
// state, so nothing changes on an event that makes no sense.
func Step(s State, ev Event, policy corev1.RestartPolicy) (Transition, error) {
	e := Refine(ev, policy)
	t, ok := index[key{s, e}]
	if !ok {
		return Transition{}, fmt.Errorf("%w: %s on %s", ErrForbidden, e, s)
	}
	return t, nil
}

// Table returns the rows, in the order they are declared.
func Table() []Transition {
	out := make([]Transition, len(table))
	copy(out, table)
	return out
}
