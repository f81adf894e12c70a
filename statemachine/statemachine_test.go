package statemachine

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// eventFor builds an event that Refine turns into the row's event type, so
// every row can be driven through Step exactly as the provider drives it.
func eventFor(e EventType) (Event, corev1.RestartPolicy) {
	switch e {
	case ExitedOK:
		return Event{Type: ContainerExited}, corev1.RestartPolicyNever
	case ExitedError:
		return Event{Type: ContainerExited, ExitCode: 3}, corev1.RestartPolicyNever
	case ExitedRestart:
		return Event{Type: ContainerExited, ExitCode: 1}, corev1.RestartPolicyAlways
	}
	return Event{Type: e}, corev1.RestartPolicyNever
}

func TestEveryRow(t *testing.T) {
	for _, row := range Table() {
		ev, pol := eventFor(row.On)
		got, err := Step(row.From, ev, pol)
		if err != nil {
			t.Errorf("%s --%s-->: %v", row.From, row.On, err)
			continue
		}
		if got.To != row.To || len(got.Actions) != len(row.Actions) {
			t.Errorf("%s --%s--> got %s %v, want %s %v", row.From, row.On, got.To, got.Actions, row.To, row.Actions)
		}
	}
}

func TestForbiddenPairs(t *testing.T) {
	for _, c := range []struct {
		s State
		e EventType
	}{
		{Succeeded, Launch},
		{Failed, ContainerRunning},
		{Killed, RestartDue},
		{Lost, ExitedOK},
		{Accepted, ContainerRunning},
		{Running, Launch},
		{Running, LaunchAccepted},
		{BackOff, ExitedError},
		{Removed, Launch},
		{Rejected, Adopt},
		{Disconnected, ReconciledFound},
	} {
		ev, pol := eventFor(c.e)
		if _, err := Step(c.s, ev, pol); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s on %s: want ErrForbidden, got %v", c.e, c.s, err)
		}
	}
}

func TestRefineFollowsRestartPolicy(t *testing.T) {
	for _, c := range []struct {
		pol  corev1.RestartPolicy
		code int32
		sig  int32
		want EventType
	}{
		{corev1.RestartPolicyNever, 0, 0, ExitedOK},
		{corev1.RestartPolicyNever, 3, 0, ExitedError},
		{corev1.RestartPolicyNever, 137, 9, ExitedError},
		{corev1.RestartPolicyOnFailure, 0, 0, ExitedOK},
		{corev1.RestartPolicyOnFailure, 1, 0, ExitedRestart},
		{corev1.RestartPolicyAlways, 0, 0, ExitedRestart},
		{corev1.RestartPolicyAlways, 2, 0, ExitedRestart},
	} {
		got := Refine(Event{Type: ContainerExited, ExitCode: c.code, Signal: c.sig}, c.pol)
		if got != c.want {
			t.Errorf("%s exit %d sig %d: got %s want %s", c.pol, c.code, c.sig, got, c.want)
		}
	}
}

// Every state is described for every world, terminal states accept the
// deletion cleanup, and every state can be reached from Accepted.
func TestStatesComplete(t *testing.T) {
	reached := map[State]bool{Accepted: true}
	for changed := true; changed; {
		changed = false
		for _, r := range Table() {
			if reached[r.From] && !reached[r.To] {
				reached[r.To], changed = true, true
			}
		}
	}
	for _, s := range States() {
		i := InfoOf(s)
		// Removing and Removed have no Titus state of their own: they show
		// what the container ended as.
		removal := s == Removing || s == Removed
		if i.View == "" || i.Mesos == "" || (i.Titus == "" && !removal) {
			t.Errorf("%s: incomplete mapping %+v", s, i)
		}
		if i.View != ViewLast && i.Phase == "" {
			t.Errorf("%s: no pod phase", s)
		}
		if !reached[s] {
			t.Errorf("%s unreachable from %s", s, Accepted)
		}
		if i.Terminal {
			if tr, err := Step(s, Event{Type: DeleteRequested}, corev1.RestartPolicyNever); err != nil || (tr.To != Removing && tr.To != Removed) {
				t.Errorf("%s: delete in a terminal state: %v", s, err)
			}
			if !removal && (i.Titus != "Finished" || i.TitusReason == "") {
				t.Errorf("%s: terminal but Titus %s/%s", s, i.Titus, i.TitusReason)
			}
		}
	}
	// Nothing leaves a terminal state but for its removal.
	for _, r := range Table() {
		if InfoOf(r.From).Terminal && r.To != r.From && r.To != Removing && r.To != Removed {
			t.Errorf("row leaves terminal state: %+v", r)
		}
	}
}

func TestTerminatedReason(t *testing.T) {
	if got := TerminatedReason(Succeeded, 0); got != "Completed" {
		t.Errorf("got %s", got)
	}
	if got := TerminatedReason(Failed, 3); got != "Error" {
		t.Errorf("got %s", got)
	}
	if got := TerminatedReason(Lost, 0); got != "ContainerStatusUnknown" {
		t.Errorf("got %s", got)
	}
}

func TestDiagrams(t *testing.T) {
	var dot, mm bytes.Buffer
	if err := Dot(&dot); err != nil {
		t.Fatal(err)
	}
	if err := Mermaid(&mm); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"running" -> "killing" [label="delete-requested / kill, start-grace"]`, "digraph"} {
		if !strings.Contains(dot.String(), want) {
			t.Errorf("dot lacks %q:\n%s", want, dot.String())
		}
	}
	if !strings.Contains(mm.String(), "running --> killing: delete-requested / kill, start-grace") {
		t.Errorf("mermaid:\n%s", mm.String())
	}
}

func BenchmarkStep(b *testing.B) {
	b.ReportAllocs()
	ev := Event{Type: ContainerExited, ExitCode: 1}
	for i := 0; i < b.N; i++ {
		if _, err := Step(Running, ev, corev1.RestartPolicyOnFailure); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTitusMappingsAgree(t *testing.T) {
	known := map[string]bool{}
	for _, s := range TitusStates() {
		known[s] = true
	}
	// A bridge state and the Mesos state it reports must read the same in Titus.
	for _, s := range States() {
		info := InfoOf(s)
		if s == Removing || s == Removed {
			continue // no Titus state of their own
		}
		viaMesos, ok := TitusOfMesos(info.Mesos)
		if !ok {
			t.Fatalf("%s: Mesos state %s has no Titus mapping", s, info.Mesos)
		}
		if !known[info.Titus] || !known[viaMesos.State] {
			t.Fatalf("%s: unknown Titus state %q / %q", s, info.Titus, viaMesos.State)
		}
		if info.Terminal && TitusOf(s) != viaMesos {
			t.Errorf("%s: Titus %v directly but %v via %s", s, TitusOf(s), viaMesos, info.Mesos)
		}
	}
}
