package discovery

import "testing"

// A reader that falls behind gets one merged update describing the
// difference from what it last received, never a stale or lost change.
func TestSubscriptionCoalesces(t *testing.T) {
	w := &AgentWatcher{agents: map[string]Agent{}, stop: make(chan struct{})}
	set := func(as ...Agent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.agents = map[string]Agent{}
		for _, a := range as {
			w.agents[a.ID] = a
		}
		w.synced = true
		for _, s := range w.subs {
			w.deliverLocked(s)
		}
	}
	a := Agent{ID: "a", Total: Resources{CPUs: 1}}
	b := Agent{ID: "b", Total: Resources{CPUs: 2}}
	b2 := b
	b2.Legacy.CPUs = 1

	ch := w.Subscribe()
	set(a, b)
	u := <-ch
	if len(u.Events) != 2 || u.Events[0].Type != AgentAdded || u.Events[1].Type != AgentAdded {
		t.Fatalf("first update %+v", u.Events)
	}
	// Three changes while the reader sleeps: b changes, a goes, a returns.
	set(b2)
	set(a, b2)
	u = <-ch
	if len(u.Events) != 1 || u.Events[0].Type != AgentChanged || u.Events[0].Agent.Legacy.CPUs != 1 {
		t.Fatalf("merged update %+v", u.Events)
	}
	// A change and its reversal while unread: nothing to tell.
	set(a)
	set(a, b2)
	select {
	case u := <-ch:
		t.Fatalf("unexpected update %+v", u.Events)
	default:
	}
	set(a)
	if u := <-ch; len(u.Events) != 1 || u.Events[0].Type != AgentRemoved || u.Events[0].Agent.ID != "b" || len(u.Agents) != 1 {
		t.Fatalf("removal %+v", u)
	}
	// A late subscriber starts with everything as added.
	if u := <-w.Subscribe(); len(u.Events) != 1 || u.Events[0].Type != AgentAdded {
		t.Fatalf("late subscriber %+v", u.Events)
	}
}
