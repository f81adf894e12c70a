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
}

var infos = map[State]Info{
	Accepted:     {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STAGING", Titus: "Accepted"},
	Launching:    {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STAGING", Titus: "Launched"},
	Starting:     {Phase: corev1.PodPending, View: ViewWaiting, WaitingReason: "ContainerCreating", Mesos: "TASK_STARTING", Titus: "StartInitiated"},
	Running:      {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_RUNNING", Titus: "Started"},
	BackOff:      {Phase: corev1.PodRunning, View: ViewWaiting, WaitingReason: "CrashLoopBackOff", Mesos: "TASK_STAGING", Titus: "Launched"},
	Killing:      {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_KILLING", Titus: "KillInitiated"},
	Restarting:   {Phase: corev1.PodRunning, View: ViewRunning, Mesos: "TASK_KILLING", Titus: "KillInitiated"},
	Disconnected: {View: ViewLast, Mesos: "TASK_UNREACHABLE", Titus: "Disconnected"},
	Reconciling:  {View: ViewLast, Mesos: "TASK_UNREACHABLE", Titus: "Disconnected"},
	Succeeded:    {Phase: corev1.PodSucceeded, View: ViewTerminated, TerminatedReason: "Completed", Mesos: "TASK_FINISHED", Titus: "Finished", TitusReason: "normal", Terminal: true},
	Failed:       {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "Error", Mesos: "TASK_FAILED", Titus: "Finished", TitusReason: "failed", Terminal: true},
	Rejected:     {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "StartError", Mesos: "TASK_ERROR", Titus: "Finished", TitusReason: "invalidRequest", Terminal: true},
	Killed:       {Phase: corev1.PodFailed, View: ViewTerminated, Mesos: "TASK_KILLED", Titus: "Finished", TitusReason: "killed", Terminal: true},
	Lost:         {Phase: corev1.PodFailed, View: ViewTerminated, TerminatedReason: "ContainerStatusUnknown", Mesos: "TASK_LOST", Titus: "Finished", TitusReason: "lost", Terminal: true},
}

// States lists every state in lifecycle order.
func States() []State {
	return []State{Accepted, Launching, Starting, Running, BackOff, Killing, Restarting, Disconnected, Reconciling,
		Succeeded, Failed, Rejected, Killed, Lost}
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
