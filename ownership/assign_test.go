package ownership

import (
	"fmt"
	"testing"
)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return sortedSet(out)
}

func shares(desired map[string]string) map[string]int {
	s := map[string]int{}
	for _, r := range desired {
		s[r]++
	}
	return s
}

func assertBalanced(t *testing.T, desired map[string]string, nodes, replicas []string) {
	t.Helper()
	if len(desired) != len(nodes) {
		t.Fatalf("%d nodes assigned, want %d", len(desired), len(nodes))
	}
	s := shares(desired)
	lo, hi := len(nodes), 0
	for _, r := range replicas {
		lo, hi = min(lo, s[r]), max(hi, s[r])
	}
	if hi-lo > 1 {
		t.Fatalf("shares %v differ by more than one", s)
	}
}

// From scratch and then from its own result: balanced, and a balanced
// assignment is kept as it is.
func TestAssignBalancedAndStable(t *testing.T) {
	for _, r := range []int{1, 2, 3, 5} {
		for n := 0; n <= 40; n++ {
			nodes, reps := names("agent-", n), names("vk-titus-", r)
			got := map[string]string{}
			assign(nodes, reps, nil, got)
			assertBalanced(t, got, nodes, reps)
			again := map[string]string{}
			assign(nodes, reps, got, again)
			for node, rep := range got {
				if again[node] != rep {
					t.Fatalf("r=%d n=%d: %s moved %s -> %s with nothing changed", r, n, node, rep, again[node])
				}
			}
		}
	}
}

// Adding a replica moves only its share, all to it; removing one moves only
// its nodes.
func TestAssignJoinAndLeaveMoveOnlyTheirShare(t *testing.T) {
	for n := 1; n <= 40; n++ {
		nodes := names("agent-", n)
		three := names("vk-titus-", 3)
		before := map[string]string{}
		assign(nodes, three[:2], nil, before)

		after := map[string]string{}
		assign(nodes, three, before, after)
		assertBalanced(t, after, nodes, three)
		for node, rep := range after {
			if rep != before[node] && rep != three[2] {
				t.Fatalf("n=%d join: %s moved %s -> %s, not to the new replica", n, node, before[node], rep)
			}
		}
		if moved := shares(after)[three[2]]; moved != n/3 && moved != n/3+1 {
			t.Fatalf("n=%d join: %d moved, want the new share", n, moved)
		}

		left := map[string]string{}
		assign(nodes, []string{three[0], three[2]}, after, left)
		assertBalanced(t, left, nodes, []string{three[0], three[2]})
		for node, rep := range left {
			if after[node] != three[1] && rep != after[node] {
				t.Fatalf("n=%d leave: %s moved %s -> %s though its holder stayed", n, node, after[node], rep)
			}
		}
	}
}

// Holders that are not live hold nothing; nodes held beyond a share are
// placed anew.
func TestAssignIgnoresDeadHoldersAndPlacesSurplus(t *testing.T) {
	nodes := names("agent-", 6)
	reps := []string{"a", "b"}
	holder := map[string]string{}
	for _, n := range nodes {
		holder[n] = "dead"
	}
	holder[nodes[0]], holder[nodes[1]], holder[nodes[2]], holder[nodes[3]] = "a", "a", "a", "a"
	got := map[string]string{}
	assign(nodes, reps, holder, got)
	assertBalanced(t, got, nodes, reps)
	kept := 0
	for _, n := range nodes[:4] {
		if got[n] == "a" {
			kept++
		}
	}
	if kept != 3 {
		t.Fatalf("a kept %d of its 4 nodes, want its share of 3: %v", kept, got)
	}
}

func TestWeightSpreads(t *testing.T) {
	// Near-identical names must not all prefer the same replica.
	nodes := names("agent-", 300)
	reps := names("vk-titus-", 3)
	top := map[string]int{}
	for _, n := range nodes {
		best := reps[0]
		for _, r := range reps[1:] {
			if byWeight(n)(r, best) < 0 {
				best = r
			}
		}
		top[best]++
	}
	for _, r := range reps {
		if top[r] < 60 { // 100 expected
			t.Fatalf("top choices %v: badly skewed", top)
		}
	}
}
