package statemachine

import "fmt"

// PodState is where a pod as a whole is in its life on the node: which of
// its containers may start, and whether it is being deleted. The container
// table says what happens to one container; this one says what the pod asks
// of its containers, in the kubelet's order (init containers one at a time,
// native sidecars started and kept running, then the app containers).
type PodState string

// Pod states.
const (
	PodPending      PodState = "pending"      // admitted; nothing asked of the agent yet
	PodReserving    PodState = "reserving"    // waits for its room on the agent (a dynamic reservation), held Pending
	PodAdopting     PodState = "adopting"     // it ran before this process: its containers are reconciled first
	PodInitializing PodState = "initializing" // init containers start one at a time, in order
	PodStarted      PodState = "started"      // every init step is done; the app containers are started
	PodCompleted    PodState = "completed"    // every app container has ended; sidecars are stopped
	PodTerminating  PodState = "terminating"  // deleted: every container is killed, then removed
	PodReleased     PodState = "released"     // deleted and nothing left on the agent; the record goes
)

// PodEventType is what happened to a pod. The first four come from the pod
// controller, room and no-room from the agent's reserver; the rest are
// derived from the containers' states by Progress,
// after every container transition.
type PodEventType string

// Pod events.
const (
	PodCreate  PodEventType = "create"  // a new pod was bound to the node
	PodAdopt   PodEventType = "adopt"   // a pod some container of which ran before (restart, takeover)
	PodInvalid PodEventType = "invalid" // the pod cannot be translated
	PodDelete  PodEventType = "delete"  // the pod is being deleted
	PodRoom    PodEventType = "room"    // its room on the agent is reserved
	PodNoRoom  PodEventType = "no-room" // the master refused its room (legacy tasks hold it)

	PodChanged    PodEventType = "changed"     // a container moved; nothing the pod acts on
	PodInitReady  PodEventType = "init-ready"  // the next init step may start
	PodInitsDone  PodEventType = "inits-done"  // init containers succeeded, sidecars started
	PodInitFailed PodEventType = "init-failed" // an init container failed for good
	PodAppsDone   PodEventType = "apps-done"   // every app container has ended
	PodAllStopped PodEventType = "all-stopped" // every container has ended
	PodAllRemoved PodEventType = "all-removed" // every container has ended and been removed
)

// PodAction is what the pod asks of its containers, the caller turns each
// into container events (DoStartInit: Launch on the next init step, ...),
// or of the agent's reserver.
type PodAction string

// Pod actions.
const (
	DoStartInit    PodAction = "start-init"    // Launch the first init step not done, if it waits
	DoStartApps    PodAction = "start-apps"    // Launch every app container that waits
	DoAdoptAll     PodAction = "adopt-all"     // Adopt every container that ran before
	DoRejectAll    PodAction = "reject-all"    // InvalidSpec to every container
	DoStopSidecars PodAction = "stop-sidecars" // DeleteRequested to every sidecar
	DoDeleteAll    PodAction = "delete-all"    // DeleteRequested to every container
	DoRelease      PodAction = "release"       // drop the record, remove the pod object
	// The pod's room on the agent (package reservation): DoReserve claims
	// it and waits for room or no-room; DoHoldRoom counts the room of a
	// pod that runs already, at once; DoReportNoRoom records the refusal
	// (the kubelet's admission failure event); DoUnreserve gives it back.
	DoReserve      PodAction = "reserve"
	DoHoldRoom     PodAction = "hold-room"
	DoReportNoRoom PodAction = "report-no-room"
	DoUnreserve    PodAction = "unreserve"
)

// PodTransition is one row of the pod table.
type PodTransition struct {
	From    PodState
	On      PodEventType
	To      PodState
	Actions []PodAction
}

// Role is what a container is to its pod.
type Role string

// Roles.
const (
	RoleInit    Role = "init"    // an init container: runs to completion before the next step
	RoleSidecar Role = "sidecar" // an init container with restartPolicy Always (a native sidecar)
	RoleApp     Role = "app"     // a regular container
)

// Facts is what Progress needs of one container, in the pod's order (init
// containers first).
type Facts struct {
	Role  Role
	State State
}

// StepDone: this init step lets the next one start. A regular init
// container must have succeeded; a sidecar must have been started (the
// kubelet starts the next init container once a sidecar runs).
func StepDone(f Facts) bool {
	if f.Role == RoleInit {
		return f.State == Succeeded || f.State == Removed
	}
	switch f.State {
	case Accepted, Launching, LaunchRetry, Starting, Reconciling:
		return false
	}
	return true
}

// Progress derives the pod event that the containers' states amount to, in
// priority order. It is pure, as Refine is for exits: which container state
// counts as what is decided here, what the pod does about it by the table.
func Progress(cs []Facts) PodEventType {
	allStopped, allRemoved, appsDone := true, true, true
	initFailed, initsDone, initReady := false, true, false
	for _, f := range cs {
		if f.State == Reconciling {
			return PodChanged
		}
		terminal := InfoOf(f.State).Terminal
		allStopped = allStopped && terminal
		allRemoved = allRemoved && f.State == Removed
		switch f.Role {
		case RoleApp:
			appsDone = appsDone && terminal
		case RoleInit:
			if terminal && !StepDone(f) {
				initFailed = true
			}
		}
		if f.Role != RoleApp && initsDone && !StepDone(f) {
			// The first init step not done: it may start if it waits.
			initsDone = false
			initReady = f.State == Accepted
		}
	}
	switch {
	case allRemoved:
		return PodAllRemoved
	case allStopped:
		return PodAllStopped
	case initFailed:
		return PodInitFailed
	case initsDone && appsDone:
		return PodAppsDone
	case initsDone:
		return PodInitsDone
	case initReady:
		return PodInitReady
	}
	return PodChanged
}

func prow(from PodState, on PodEventType, to PodState, actions ...PodAction) PodTransition {
	return PodTransition{From: from, On: on, To: to, Actions: actions}
}

func pignored(s PodState, events ...PodEventType) []PodTransition {
	out := make([]PodTransition, 0, len(events))
	for _, e := range events {
		out = append(out, prow(s, e, s))
	}
	return out
}

func pconcat(groups ...[]PodTransition) []PodTransition {
	var out []PodTransition
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// derived are the events Progress hands back.
var derived = []PodEventType{PodChanged, PodInitReady, PodInitsDone, PodInitFailed, PodAppsDone, PodAllStopped, PodAllRemoved}

// podTable is the pod's life. A pod's room on the agent is reserved before
// anything is launched and given back once its containers have ended (a
// completed pod's sidecars are being stopped then). Every state but
// Released answers a deletion
// with DoDeleteAll, and Terminating re-issues it on every change, so a
// container that could not act on it (an unreachable agent) gets it again
// once it can: the container table's DeleteRequested rows then carry each
// container through KILL to Removed.
var podTable = pconcat(
	[]PodTransition{
		// Nothing is launched before the pod's room on the agent is
		// reserved: the legacy path must not take it meanwhile. A pod
		// that ran before has it (or gets it) at once.
		prow(PodPending, PodCreate, PodReserving, DoReserve),
		prow(PodPending, PodAdopt, PodAdopting, DoHoldRoom, DoAdoptAll),
		prow(PodPending, PodInvalid, PodCompleted, DoRejectAll),
		prow(PodPending, PodDelete, PodTerminating, DoDeleteAll),
	},
	pignored(PodPending, derived...),
	[]PodTransition{
		// A refusal holds the pod Pending, with an event; the reserver
		// tries again when room may exist and tells room when it got it.
		prow(PodReserving, PodRoom, PodInitializing, DoStartInit),
		prow(PodReserving, PodNoRoom, PodReserving, DoReportNoRoom),
		prow(PodReserving, PodDelete, PodTerminating, DoUnreserve, DoDeleteAll),
	},
	pignored(PodReserving, derived...),
	[]PodTransition{
		// Once nothing is being reconciled, whatever had not started yet
		// starts, in order, from where the pod had got to.
		prow(PodAdopting, PodInitReady, PodInitializing, DoStartInit),
		prow(PodAdopting, PodInitsDone, PodStarted, DoStartApps),
		prow(PodAdopting, PodInitFailed, PodCompleted, DoStopSidecars, DoUnreserve),
		prow(PodAdopting, PodAppsDone, PodCompleted, DoStopSidecars, DoUnreserve),
		prow(PodAdopting, PodAllStopped, PodCompleted, DoUnreserve),
		prow(PodAdopting, PodDelete, PodTerminating, DoDeleteAll),
	},
	pignored(PodAdopting, PodChanged, PodAllRemoved),
	[]PodTransition{
		prow(PodInitializing, PodInitReady, PodInitializing, DoStartInit),
		prow(PodInitializing, PodInitsDone, PodStarted, DoStartApps),
		prow(PodInitializing, PodInitFailed, PodCompleted, DoStopSidecars, DoUnreserve),
		prow(PodInitializing, PodAllStopped, PodCompleted, DoUnreserve),
		prow(PodInitializing, PodDelete, PodTerminating, DoDeleteAll),
	},
	pignored(PodInitializing, PodChanged, PodAppsDone, PodAllRemoved),
	[]PodTransition{
		// The kubelet stops sidecars once every regular container has ended.
		prow(PodStarted, PodAppsDone, PodCompleted, DoStopSidecars, DoUnreserve),
		prow(PodStarted, PodAllStopped, PodCompleted, DoUnreserve),
		prow(PodStarted, PodDelete, PodTerminating, DoDeleteAll),
	},
	pignored(PodStarted, PodChanged, PodInitReady, PodInitsDone, PodInitFailed, PodAllRemoved),
	[]PodTransition{
		prow(PodCompleted, PodDelete, PodTerminating, DoDeleteAll),
	},
	pignored(PodCompleted, PodChanged, PodInitReady, PodInitsDone, PodInitFailed, PodAppsDone, PodAllStopped, PodAllRemoved),
	[]PodTransition{
		prow(PodTerminating, PodDelete, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodChanged, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodInitReady, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodInitsDone, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodInitFailed, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodAppsDone, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodAllStopped, PodTerminating, DoDeleteAll),
		prow(PodTerminating, PodAllRemoved, PodReleased, DoUnreserve, DoRelease),
	},
	// The reserver's answer to a pod deleted while it waited.
	pignored(PodTerminating, PodRoom, PodNoRoom),
	pignored(PodReleased, append([]PodEventType{PodCreate, PodAdopt, PodInvalid, PodDelete, PodRoom, PodNoRoom}, derived...)...),
)

type podKey struct {
	s PodState
	e PodEventType
}

var podIndex = indexRows(podTable, func(t PodTransition) podKey { return podKey{t.From, t.On} })

// StepPod looks up the pod transition for e in state s; a pair the table
// does not hold is an error wrapping ErrForbidden.
func StepPod(s PodState, e PodEventType) (PodTransition, error) {
	t, ok := podIndex[podKey{s, e}]
	if !ok {
		return PodTransition{}, fmt.Errorf("%w: pod %s on %s", ErrForbidden, e, s)
	}
	return t, nil
}

// PodTable returns the pod rows, in the order they are declared.
func PodTable() []PodTransition {
	out := make([]PodTransition, len(podTable))
	copy(out, podTable)
	return out
}

// PodStates lists the pod states in lifecycle order.
func PodStates() []PodState {
	return []PodState{PodPending, PodReserving, PodAdopting, PodInitializing, PodStarted, PodCompleted, PodTerminating, PodReleased}
}
