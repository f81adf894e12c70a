package statemachine

import (
	"errors"
	"testing"
)

func TestEveryPodRow(t *testing.T) {
	for _, row := range PodTable() {
		got, err := StepPod(row.From, row.On)
		if err != nil {
			t.Errorf("%s --%s-->: %v", row.From, row.On, err)
			continue
		}
		if got.To != row.To || len(got.Actions) != len(row.Actions) {
			t.Errorf("%s --%s--> got %s %v, want %s %v", row.From, row.On, got.To, got.Actions, row.To, row.Actions)
		}
	}
	if _, err := StepPod(PodCompleted, PodCreate); !errors.Is(err, ErrForbidden) {
		t.Errorf("create on completed: want ErrForbidden, got %v", err)
	}
}

// Every pod state answers every event Progress can derive, and every state
// but Released answers a deletion: nothing the containers do is dropped.
func TestPodTableComplete(t *testing.T) {
	for _, s := range PodStates() {
		if s == PodPending {
			continue // nothing has started: derived events cannot arise
		}
		for _, e := range derived {
			if _, err := StepPod(s, e); err != nil {
				t.Errorf("pod state %s does not answer %s", s, e)
			}
		}
	}
	for _, s := range PodStates() {
		if _, err := StepPod(s, PodDelete); err != nil {
			t.Errorf("pod state %s does not answer a deletion", s)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, c := range []struct {
		name string
		cs   []Facts
		want PodEventType
	}{
		{"no init, app waits", []Facts{{RoleApp, Accepted}}, PodInitsDone},
		{"first init waits", []Facts{{RoleInit, Accepted}, {RoleInit, Accepted}, {RoleApp, Accepted}}, PodInitReady},
		{"first init runs", []Facts{{RoleInit, Running}, {RoleInit, Accepted}, {RoleApp, Accepted}}, PodChanged},
		{"second init waits", []Facts{{RoleInit, Succeeded}, {RoleInit, Accepted}, {RoleApp, Accepted}}, PodInitReady},
		{"inits done", []Facts{{RoleInit, Succeeded}, {RoleApp, Accepted}}, PodInitsDone},
		{"init failed", []Facts{{RoleInit, Failed}, {RoleApp, Accepted}}, PodInitFailed},
		{"init in back-off", []Facts{{RoleInit, BackOff}, {RoleApp, Accepted}}, PodChanged},
		{"sidecar starting", []Facts{{RoleSidecar, Starting}, {RoleApp, Accepted}}, PodChanged},
		{"sidecar running", []Facts{{RoleSidecar, Running}, {RoleApp, Accepted}}, PodInitsDone},
		{"sidecar then init", []Facts{{RoleSidecar, Running}, {RoleInit, Accepted}, {RoleApp, Accepted}}, PodInitReady},
		{"apps done, sidecar runs", []Facts{{RoleSidecar, Running}, {RoleApp, Succeeded}}, PodAppsDone},
		{"all stopped", []Facts{{RoleSidecar, Killed}, {RoleApp, Succeeded}}, PodAllStopped},
		{"all removed", []Facts{{RoleInit, Removed}, {RoleApp, Removed}}, PodAllRemoved},
		{"reconciling", []Facts{{RoleApp, Reconciling}, {RoleApp, Succeeded}}, PodChanged},
	} {
		if got := Progress(c.cs); got != c.want {
			t.Errorf("%s: Progress = %s, want %s", c.name, got, c.want)
		}
	}
}

// answers are what the agent and the timers may say to a container after its
// pod was deleted.
var answers = []EventType{GraceExpired, ExitedOK, ExitedError, ExitedRestart, ReconciledNotFound, ReconciledFound,
	AgentUnreachable, AgentBack, LaunchAccepted, LaunchExists, LaunchUnavailable, LaunchRejected, Launch, ContainerRunning, RestartDue,
	RemoveDone, RemoveFailed, RemoveDue}

// ended are the events by which the agent itself says the process is gone.
var ended = map[EventType]bool{ExitedOK: true, ExitedError: true, ExitedRestart: true, ReconciledNotFound: true,
	LaunchRejected: true}

// TestDeleteKills is the invariant of doc.go, over every row: from every state
// in which a container may exist on the agent, a deletion (re-issued after
// every change, as the pod table does) never ends the container without a
// KILL or the agent's word that it ended, every path can reach Removed, and
// Removed is only entered through Removing, which is only entered with a REMOVE.
func TestDeleteKills(t *testing.T) {
	// safe: on this path a KILL was sent, or the agent said the process
	// ended, since the last launch.
	type node struct {
		s    State
		safe bool
	}
	for _, start := range States() {
		if !InfoOf(start).MayRun {
			continue
		}
		seen := map[node]bool{}
		queue := []node{}
		// deliver steps ev then the re-issued deletion, as a Terminating pod does.
		deliver := func(n node, ev EventType) {
			for _, e := range []EventType{ev, DeleteRequested} {
				tr, ok := index[key{n.s, e}]
				if !ok {
					continue
				}
				safe := n.safe || ended[e]
				for _, a := range tr.Actions {
					safe = (safe || a == DoKill || a == DoKillForce) && a != DoLaunch
				}
				if tr.To == Removing && n.s != Removing && !hasAction(tr, DoRemove) {
					t.Errorf("%s --%s--> removing without REMOVE", n.s, e)
				}
				if tr.To == Removed && n.s != Removed && n.s != Removing {
					t.Errorf("%s --%s--> removed without removing first", n.s, e)
				}
				if InfoOf(tr.To).Terminal && !InfoOf(n.s).Terminal && tr.To != Lost && !safe {
					t.Errorf("from %s: %s --%s--> %s ends a container that may run without a KILL", start, n.s, e, tr.To)
				}
				n = node{tr.To, safe}
			}
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
		deliver(node{start, false}, DeleteRequested)
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			for _, ev := range answers {
				deliver(n, ev)
			}
		}
		for n := range seen {
			if !reachesRemoved(n.s) {
				t.Errorf("from %s: %s cannot reach removed", start, n.s)
			}
		}
	}
}

func hasAction(t Transition, a Action) bool {
	for _, x := range t.Actions {
		if x == a {
			return true
		}
	}
	return false
}

func reachesRemoved(s State) bool {
	seen := map[State]bool{s: true}
	queue := []State{s}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == Removed {
			return true
		}
		for _, ev := range append([]EventType{DeleteRequested}, answers...) {
			if tr, ok := index[key{cur, ev}]; ok && !seen[tr.To] {
				seen[tr.To] = true
				queue = append(queue, tr.To)
			}
		}
	}
	return false
}
