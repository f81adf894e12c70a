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
// pod goes; agent news, stale timers and stale answers no longer matter.
func terminal(s State) []Transition {
	return append([]Transition{row(s, DeleteRequested, Removing, nil, DoRemove)},
		ignored(s, AgentUnreachable, AgentBack, AgentGone, GraceExpired, ReconciledNotFound, ReconciledFound)...)
}

func concat(groups ...[]Transition) []Transition {
	var out []Transition
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// killRow is how a deletion reaches a container whose process may exist but
// is not followed yet (never launched as far as this process knows, a launch
// whose answer was lost, one being reconciled): SIGTERM, follow it with a
// WAIT, run the grace period. A container that never existed answers 404,
// which ends it as Killed; one that does is killed, never orphaned.
func killRow(from State) Transition {
	return row(from, DeleteRequested, Killing, normal("Killing"), DoKill, DoWait, DoStartGrace)
}

// table is the state machine. Read it top to bottom as the life of a
// container; `vk-titus statemachine` prints it as a diagram.
var table = concat(
	[]Transition{
		row(Accepted, Launch, Launching, nil, DoLaunch),
		row(Accepted, Adopt, Reconciling, nil, DoReconcile),
		row(Accepted, InvalidSpec, Rejected, warning("Failed")),
		// The agent may hold it: a bridge that crashed between LAUNCH and
		// its first status write, or a pod deleted while the bridge was down.
		killRow(Accepted),
		row(Accepted, AgentGone, Lost, warning("NodeLost")),
	},
	ignored(Accepted, AgentUnreachable, AgentBack, GraceExpired, RestartDue),
	[]Transition{
		row(Launching, LaunchAccepted, Starting, normal("Created"), DoWait),
		row(Launching, LaunchExists, Running, normal("Started"), DoWait),
		row(Launching, LaunchRejected, Rejected, warning("Failed")),
		// The call failed in transit: the agent may have started it.
		row(Launching, LaunchUnavailable, LaunchRetry, warning("FailedLaunch"), DoRetryLaunch),
		killRow(Launching),
		row(Launching, AgentGone, Lost, warning("NodeLost")),
	},
	ignored(Launching, AgentUnreachable, AgentBack),
	[]Transition{
		// LAUNCH is idempotent on the container id: a retry of a launch that
		// did happen answers "already launched" and is followed from there.
		row(LaunchRetry, Launch, Launching, nil, DoLaunch),
		killRow(LaunchRetry),
		row(LaunchRetry, AgentGone, Lost, warning("NodeLost")),
	},
	ignored(LaunchRetry, AgentUnreachable, AgentBack, GraceExpired),
	[]Transition{
		row(Starting, ContainerRunning, Running, normal("Started")),
		row(Starting, DeleteRequested, Killing, normal("Killing"), DoKill, DoStartGrace),
		row(Starting, AgentUnreachable, Disconnected, nil),
		row(Starting, AgentGone, Lost, warning("NodeLost")),
		row(Starting, ReconciledNotFound, Lost, warning("ContainerLost")),
	},
	exits(Starting),
	ignored(Starting, AgentBack),
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
	ignored(Running, ContainerRunning, AgentBack, GraceExpired, ReconciledFound),
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
		// The run has ended: nothing to kill; the deletion removes it next.
		row(BackOff, DeleteRequested, Killed, nil),
		row(BackOff, AgentGone, Lost, warning("NodeLost")),
	},
	ignored(BackOff, AgentUnreachable, AgentBack, GraceExpired),
	[]Transition{
		row(Killing, ExitedOK, Killed, nil),
		row(Killing, ExitedError, Killed, nil),
		row(Killing, ExitedRestart, Killed, nil),
		row(Killing, GraceExpired, Killing, nil, DoKillForce),
		row(Killing, AgentUnreachable, Disconnected, nil),
		row(Killing, AgentGone, Lost, warning("NodeLost")),
		row(Killing, ReconciledNotFound, Killed, nil),
	},
	ignored(Killing, DeleteRequested, ContainerRunning, AgentBack, LivenessFailed, RestartDue),
	[]Transition{
		row(Disconnected, AgentBack, Reconciling, nil, DoReconcile),
		row(Disconnected, AgentGone, Lost, warning("NodeLost")),
		row(Disconnected, ReconciledNotFound, Lost, warning("ContainerLost")),
	},
	// An exit that arrives while the agent is thought away is still the
	// container's exit (a WAIT answered just before a health check failed).
	exits(Disconnected),
	// A deletion while the agent is unreachable waits for it, as a pod on an
	// unreachable node stays Terminating: the pod table re-issues it on
	// every change, so it acts once the container is reconciled.
	ignored(Disconnected, AgentUnreachable, DeleteRequested, GraceExpired, RestartDue, LivenessFailed),
	[]Transition{
		row(Reconciling, ReconciledFound, Running, nil, DoWait),
		row(Reconciling, ReconciledNotFound, Lost, warning("ContainerLost")),
		row(Reconciling, AgentUnreachable, Disconnected, nil),
		row(Reconciling, AgentGone, Lost, warning("NodeLost")),
		// The agent answers again (or its container list came in): ask again.
		row(Reconciling, AgentBack, Reconciling, nil, DoReconcile),
		killRow(Reconciling),
	},
	exits(Reconciling),
	ignored(Reconciling, GraceExpired),
	terminal(Succeeded),
	terminal(Failed),
	terminal(Rejected),
	terminal(Killed),
	// Lost means unknown, not ended: the process may still run where the
	// agent could not be asked. A deletion sends SIGKILL before removing;
	// whatever survives that (an agent still away) is found by the
	// reconciliation sweep, which kills and removes containers without a pod.
	[]Transition{row(Lost, DeleteRequested, Removing, nil, DoKillForce, DoRemove)},
	ignored(Lost, AgentUnreachable, AgentBack, AgentGone, GraceExpired, ReconciledNotFound, ReconciledFound),
	// The pod is released only once the agent took every REMOVE: until then
	// the pod object stays (its finalizer), so a bridge that restarts finds
	// it and removes what is left. A REMOVE refused because the container
	// has not ended yet (a lost one's SIGKILL still landing) is tried again
	// as well. An agent declared gone took its sandboxes with it.
	[]Transition{
		row(Removing, RemoveDone, Removed, nil),
		row(Removing, RemoveFailed, Removing, nil, DoRetryRemove),
		row(Removing, RemoveDue, Removing, nil, DoRemove),
		row(Removing, AgentBack, Removing, nil, DoRemove),
		row(Removing, AgentGone, Removed, nil),
	},
	ignored(Removing, DeleteRequested, AgentUnreachable, GraceExpired,
		ReconciledNotFound, ReconciledFound, ExitedOK, ExitedError, ExitedRestart, RestartDue),
	ignored(Removed, DeleteRequested, AgentUnreachable, AgentBack, AgentGone, GraceExpired,
		ReconciledNotFound, ReconciledFound, ExitedOK, ExitedError, ExitedRestart, RestartDue, RemoveDone, RemoveFailed, RemoveDue),
)
