package provider

import (
	"testing"

	"github.com/vk-titus/vk-titus/statemachine"
)

// A returning agent's new provider may register while the old one has not
// stopped yet: the scrape must still succeed, with one series per node and
// state, the newest provider's.
func TestStatesDuplicateNodeGathers(t *testing.T) {
	st := statemachine.States()[0]
	oldP, newP := &Provider{opts: Options{NodeName: "dup"}}, &Provider{opts: Options{NodeName: "dup"}}
	states.addSource(stateSource{key: oldP, node: "dup", count: func() map[statemachine.State]int { return map[statemachine.State]int{st: 1} }})
	states.addSource(stateSource{key: newP, node: "dup", count: func() map[statemachine.State]int { return map[statemachine.State]int{st: 2} }})
	other := &Provider{opts: Options{NodeName: "other"}} // counted for real: no pods
	other.waits = newWaiter(other, 1)
	states.add(other)
	t.Cleanup(func() {
		for _, p := range []*Provider{oldP, newP, other} {
			unregister(p)
		}
	})

	got := gatherStates(t)
	if len(got["dup"]) != len(statemachine.States()) || len(got["other"]) != len(statemachine.States()) {
		t.Fatalf("series per node: %v", got)
	}
	if v := got["dup"][string(st)]; v != 2 {
		t.Fatalf("dup %s = %v, want the newest provider's 2", st, v)
	}

	unregister(newP)
	if v := gatherStates(t)["dup"][string(st)]; v != 1 {
		t.Fatalf("after the newest left, dup %s = %v, want the old provider's 1", st, v)
	}
	unregister(oldP)
	if got := gatherStates(t); got["dup"] != nil {
		t.Fatalf("unregistered providers still reported: %v", got["dup"])
	}
}

// gatherStates gathers Registry (failing on any error, as /metrics would
// answer 500) and returns vktitus_containers by node and state.
func gatherStates(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vktitus_containers" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var node, state string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "node":
					node = l.GetValue()
				case "state":
					state = l.GetValue()
				}
			}
			if out[node] == nil {
				out[node] = map[string]float64{}
			}
			if _, dup := out[node][state]; dup {
				t.Fatalf("duplicate series node=%s state=%s", node, state)
			}
			out[node][state] = m.GetGauge().GetValue()
		}
	}
	return out
}
