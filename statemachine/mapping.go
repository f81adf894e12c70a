package statemachine

import corev1 "k8s.io/api/core/v1"

// ContainerView is which of the three Kubernetes container states a state shows.
type ContainerView string

// Container views.
const (
	ViewWaiting    ContainerView = "waiting"
	ViewRunning    ContainerView = "running"
	ViewTerminated ContainerView = "terminated"
	// ViewLast keeps whatever the API shows: an unreachable agent tells us
	// nothing new, and the kubelet's node going silent changes no pod status.
	ViewLast ContainerView = "last-known"
)

// Info is what one state means to each world that looks at it.
type Info struct {
	Phase         corev1.PodPhase // contribution to the pod phase ("" with ViewLast)
	View          ContainerView
	WaitingReason string // with ViewWaiting
	// TerminatedReason with ViewTerminated; empty means the kubelet's rule:
	// "Completed" for exit 0, "Error" otherwise.
	TerminatedReason string
	Mesos            string // Mesos TaskState name
	Titus            string // Titus v3 TaskState
	TitusReason      string // Titus reasonCode, with Titus state Finished
	Terminal         bool
	// MayRun: a process of this container may exist on the agent. Every such
	// state has a path to Removed through KILL on deletion (TestDeleteKills).
	MayRun bool
}

var infos = map[State]Info{
	Accepted:     {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STAGING", Titus: "Accepted", MayRun: true},
	Launching:    {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STAGING", Titus: "Launched", MayRun: true},
	LaunchRetry:  {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STAGING", Titus: "Launched", MayRun: true},
	Starting:     {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STARTING", Titus: "StartInitiated", MayRun: true},
	Running:      {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_RUNNING", Titus: "Started", MayRun: true},
	BackOff:      {Phase: corev1.PodRunning, View: ViewWaiting, WaitingReason: "CrashLoopBackOff", Mesos: "TASK_STAGING", Titus: "Launched"},
	Killing:      {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_KILLING", Titus: "KillInitiated", MayRun: true},
	Restarting:   {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_KILLING", Titus: "KillInitiated", MayRun: true},
	Disconnected: {View: ViewLast, Mesos: "TASK_UNREACHABLE", Titus: "Disconnected", MayRun: true},
	Reconciling:  {View: ViewLast, Mesos: "TASK_UNREACHABLE", Titus: "Disconnected", MayRun: true},
	Succeeded:    {Phase: corev1.PodSucceeded, View: ViewTerminated, TerminatedReason: "Completed", Mesos: "TASK_FINISHED", Titus: "Finished", TitusReason: "normal", Terminal: true},
	Failed:       {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "Error", Mesos: "TASK_FAILED", Titus: "Finished", TitusReason: "failed", Terminal: true},
	Rejected:     {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "StartError", Mesos: "TASK_ERROR", Titus: "Finished", TitusReason: "invalidRequest", Terminal: true},
	Killed:       {Phase: corev1.PodFailed, View: ViewTerminated, Mesos: "TASK_KILLED", Titus: "Finished", TitusReason: "killed", Terminal: true},
	Lost:         {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "ContainerStatusUnknown", Mesos: "TASK_LOST", Titus: "Finished", TitusReason: "lost", Terminal: true, MayRun: true},
	// Removing and Removed show what the container ended as (ViewLast);
	// their Titus state is the one it was shown in (no Titus entry of their own).
	Removing: {View: ViewLast, Mesos: "TASK_GONE", Terminal: true},
	Removed:  {View: ViewLast, Mesos: "TASK_GONE", Terminal: true},
}

// States lists every state in lifecycle order.
func States() []State {
	return []State{Accepted, Launching, LaunchRetry, Starting, Running, BackOff, Killing, Restarting, Disconnected, Reconciling,
		Succeeded, Failed, Rejected, Killed, Lost, Removing, Removed}
}

// InfoOf returns what s shows to Kubernetes, Mesos and Titus.
func InfoOf(s State) Info { return infos[s] }

// TerminatedReason is the container's terminated reason for state s and an
// exit code, with the kubelet's default where the state names none.
func TerminatedReason(s State, exitCode int32) string {
	if r := infos[s].TerminatedReason; r != "" {
		return r
	}
	if exitCode == 0 {
		return "Completed"
	}
	return "Error"
}

// TitusState is a Titus v3 task state with the reason it carries once Finished.
type TitusState struct {
	State  string
	Reason string
}

// mesosToTitus is how Titus's master read Mesos task states. Tasks the
// legacy master runs show through this table, pods through infos, so both
// worlds answer the job API with the same words.
var mesosToTitus = map[string]TitusState{
	"TASK_STAGING":          {State: "Launched"},
	"TASK_STARTING":         {State: "StartInitiated"},
	"TASK_RUNNING":          {State: "Started"},
	"TASK_KILLING":          {State: "KillInitiated"},
	"TASK_UNREACHABLE":      {State: "Disconnected"},
	"TASK_FINISHED":         {State: "Finished", Reason: "normal"},
	"TASK_FAILED":           {State: "Finished", Reason: "failed"},
	"TASK_DROPPED":          {State: "Finished", Reason: "failed"},
	"TASK_KILLED":           {State: "Finished", Reason: "killed"},
	"TASK_ERROR":            {State: "Finished", Reason: "invalidRequest"},
	"TASK_LOST":             {State: "Finished", Reason: "lost"},
	"TASK_UNKNOWN":          {State: "Finished", Reason: "lost"},
	"TASK_GONE":             {State: "Finished", Reason: "lost"},
	"TASK_GONE_BY_OPERATOR": {State: "Finished", Reason: "lost"},
}

// TitusOfMesos maps a Mesos task state name to Titus; ok is false for a
// name Mesos does not define.
func TitusOfMesos(mesosState string) (TitusState, bool) {
	t, ok := mesosToTitus[mesosState]
	return t, ok
}

// TitusOf is what state s shows to the Titus job API.
func TitusOf(s State) TitusState {
	i := infos[s]
	return TitusState{State: i.Titus, Reason: i.TitusReason}
}

// TitusStates lists the Titus v3 task states in lifecycle order.
func TitusStates() []string {
	return []string{"Accepted", "Launched", "StartInitiated", "Started", "KillInitiated", "Disconnected", "Finished"}
}
