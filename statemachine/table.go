package statemachine

import corev1 "k8s.io/api/core/v1"

func normal(reason string) *Record  { return &Record{Type: corev1.EventTypeNormal, Reason: reason} }
func warning(reason string) *Record { return &Record{Type: corev1.EventTypeWarning, Reason: reason} }

func row(from State, on EventType, to State, rec *Record, actions ...Action) Transition {
	return Transition{From: from, On: on, To: to, Actions: actions, Record: rec}
}

// exits are the three refined ContainerExited rows every state that can see
// a process end shares (Starting, Running, Reconciling).
func exits(from State) []Transition {
	return []Transition{
		row(from, ExitedOK, Succeeded, nil),
		row(from, ExitedError, Failed, nil),
		row(from, ExitedRestart, BackOff, warning("BackOff"), DoScheduleRestart),
	}
}

// ignored makes an event a deliberate no-op in a state, so it is still
// visible in the table (and the diagram) rather than an error.
func ignored(s State, events ...EventType) []Transition {
	out := make([]Transition, 0, len(events))
	for _, e := range events {
		out = append(out, row(s, e, s, nil))
	}
	return out
}

// terminal rows: a finished container only needs its sandbox removed when the
// pod goes; agent news and stale timers no longer matter.
func terminal(s State) []Transition {
	return append([]Transition{row(s, DeleteRequested, s, nil, DoRemove)},
		ignored(s, AgentUnreachable, AgentBack, AgentGone, GraceExpired)...)
}

func concat(groups ...[]Transition) []Transition {
	var out []Transition
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// table is the state machine. Read it top to bottom as the life of a
// container; `vk-titus statemachine` prints it as a diagram.
var table = concat(
	[]Transition{
		row(Accepted, Launch, Launching, nil, DoLaunch),
		row(Accepted, Adopt, Reconciling, nil, DoReconcile),
		row(Accepted, InvalidSpec, Rejected, warning("Failed")),
		row(Accepted, DeleteRequested, Killed, nil),
		row(Accepted, AgentGone, Lost, warning("NodeLost")),
	},
	// A launch that found the agent unreachable is retried by its own timer.
	ignored(Accepted, AgentUnreachable, AgentBack),
	[]Transition{

		row(Launching, LaunchAccepted, Starting, normal("Created"), DoWait),
		row(Launching, LaunchExists, Running, normal("Started"), DoWait),
		row(Launching, LaunchRejected, Rejected, warning("Failed")),
		row(Launching, LaunchUnavailable, Accepted, warning("FailedLaunch"), DoRetryLaunch),
		row(Launching, AgentGone, Lost, warning("NodeLost")),

		row(Starting, ContainerRunning, Running, normal("Started")),
		row(Starting, DeleteRequested, Killing, normal("Killing"), DoKill, DoStartGrace),
		row(Starting, AgentUnreachable, Disconnected, nil),
		row(Starting, AgentGone, Lost, warning("NodeLost")),
		row(Starting, ReconciledNotFound, Lost, warning("ContainerLost")),
	},
	exits(Starting),
	[]Transition{
		// The kubelet kills a container whose liveness probe fails; what
		// follows its exit is the restart policy's call, as for any exit.
		row(Running, LivenessFailed, Restarting, normal("Killing"), DoKill, DoStartGrace),
		row(Running, DeleteRequested, Killing, normal("Killing"), DoKill, DoStartGrace),
		row(Running, AgentUnreachable, Disconnected, nil),
		row(Running, AgentGone, Lost, warning("NodeLost")),
		// WAIT answering 404: the container vanished under us.
		row(Running, ReconciledNotFound, Lost, warning("ContainerLost")),
	},
	exits(Running),
	ignored(Running, ContainerRunning, AgentBack),
	exits(Restarting),
	[]Transition{
		row(Restarting, GraceExpired, Restarting, nil, DoKillForce),
		// SIGTERM is already sent; the deletion's own grace period applies.
		row(Restarting, DeleteRequested, Killing, nil, DoStartGrace),
		row(Restarting, AgentUnreachable, Disconnected, nil),
		row(Restarting, AgentGone, Lost, warning("NodeLost")),
		row(Restarting, ReconciledNotFound, Lost, warning("ContainerLost")),
	},
	ignored(Restarting, ContainerRunning, AgentBack, LivenessFailed),
	[]Transition{
		row(BackOff, RestartDue, Launching, nil, DoLaunch),
		row(BackOff, DeleteRequested, Killed, nil, DoRemove),
		row(BackOff, AgentGone, Lost, warning("NodeLost")),
	},
	ignored(BackOff, AgentUnreachable, AgentBack),
	[]Transition{
		row(Killing, ExitedOK, Killed, nil, DoRemove),
		row(Killing, ExitedError, Killed, nil, DoRemove),
		row(Killing, ExitedRestart, Killed, nil, DoRemove),
		row(Killing, GraceExpired, Killing, nil, DoKillForce),
		row(Killing, AgentUnreachable, Disconnected, nil),
		row(Killing, AgentGone, Lost, warning("NodeLost")),
		row(Killing, ReconciledNotFound, Killed, nil, DoRemove),
	},
	ignored(Killing, DeleteRequested, ContainerRunning, AgentBack),
	[]Transition{
		row(Disconnected, AgentBack, Reconciling, nil, DoReconcile),
		row(Disconnected, AgentGone, Lost, warning("NodeLost")),
	},
	// A deletion while the agent is unreachable waits for it, as a pod on an
	// unreachable node stays Terminating; the caller re-issues it once found.
	ignored(Disconnected, AgentUnreachable, DeleteRequested, GraceExpired, RestartDue),
	[]Transition{
		row(Reconciling, ReconciledFound, Running, nil, DoWait),
		row(Reconciling, ReconciledNotFound, Lost, warning("ContainerLost")),
		row(Reconciling, AgentUnreachable, Disconnected, nil),
		row(Reconciling, AgentGone, Lost, warning("NodeLost")),
	},
	exits(Reconciling),
	ignored(Reconciling, DeleteRequested, AgentBack, GraceExpired),
	terminal(Succeeded),
	terminal(Failed),
	terminal(Rejected),
	terminal(Killed),
	terminal(Lost),
)
