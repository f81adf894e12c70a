package ownership

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// The core is exercised here in a simulated world: no clock, no I/O. The
// sim is the API server (conditional writes, resourceVersions) and every
// replica's shell at once: it performs each replica's actions at once,
// delivers every change to every replica at the instant it is made, and
// keeps each replica's fences (deadline = the acquiring write or the last
// successful membership write, whichever is later, sent + RenewDeadline).

var testTiming = timing{leaseDuration: 12 * time.Second, renewDeadline: 8 * time.Second,
	renewInterval: 4 * time.Second, retryPeriod: 2 * time.Second}

const simStep = 250 * time.Millisecond

type simReplica struct {
	id    string
	c     *core
	w     leaseWriter
	dead  bool // SIGKILLed: does nothing any more
	cut   bool // partitioned: every write fails
	fence map[string]time.Time
	// stops counts the Handler.Stop calls by reason.
	stops map[Reason]int
}

// serving reports whether the replica may act for node now.
func (r *simReplica) serving(node string, now time.Time) bool {
	d, ok := r.fence[node]
	return ok && !r.dead && now.Before(d)
}

type sim struct {
	t     testing.TB
	now   time.Time
	rv    int
	store map[string]*coordinationv1.Lease
	reps  []*simReplica
	// acquisitions by replica; the time of the last successful write of
	// each node lease and of each replica's membership lease (the others'
	// observation); successful writes by lease name.
	acquired map[string]int
	lastSeen map[string]time.Time
	member   map[string]time.Time
	writes   map[string]int
	// conflicts counts writes refused for a stale base (cut replicas'
	// writes fail before that).
	conflicts int
}

func newSim(t testing.TB) *sim {
	return &sim{t: t, now: time.Unix(1_000_000, 0), store: map[string]*coordinationv1.Lease{},
		acquired: map[string]int{}, lastSeen: map[string]time.Time{}, member: map[string]time.Time{}, writes: map[string]int{}}
}

func (s *sim) add(id string, nodes []string) *simReplica {
	inc := id + "-" + strconv.Itoa(len(s.reps))
	r := &simReplica{id: id, c: newCore(id, inc, testTiming), fence: map[string]time.Time{}, stops: map[Reason]int{},
		w: leaseWriter{namespace: "ns", identity: id, incarnation: inc, duration: testTiming.leaseDuration}}
	r.c.setNodes(nodes, s.now)
	for name, l := range s.store { // the informer's initial list
		r.c.observe(name, l.DeepCopy(), s.now)
	}
	s.reps = append(s.reps, r)
	return r
}

func (s *sim) get(id string) *simReplica {
	for i := len(s.reps) - 1; i >= 0; i-- {
		if s.reps[i].id == id && !s.reps[i].dead {
			return s.reps[i]
		}
	}
	s.t.Fatalf("no live replica %s", id)
	return nil
}

// write applies a conditional write (l nil: delete) and delivers it.
func (s *sim) write(r *simReplica, name string, base, l *coordinationv1.Lease) (*coordinationv1.Lease, bool) {
	cur := s.store[name]
	if r.cut {
		return nil, false
	}
	if (base == nil) != (cur == nil) || (cur != nil && cur.ResourceVersion != base.ResourceVersion) {
		s.conflicts++
		return nil, false
	}
	s.writes[name]++
	if l == nil {
		delete(s.store, name)
		for _, o := range s.reps {
			o.c.observe(name, nil, s.now)
		}
		return nil, true
	}
	s.rv++
	l = l.DeepCopy()
	l.Name, l.ResourceVersion = name, strconv.Itoa(s.rv)
	s.store[name] = l
	for _, o := range s.reps {
		o.c.observe(name, l.DeepCopy(), s.now)
	}
	return l, true
}

func (s *sim) step() {
	for _, r := range s.reps {
		if r.dead || !r.c.due(s.now) {
			continue // as the manager: a plan only when one is due
		}
		acts := r.c.plan(s.now)
		for _, a := range acts {
			s.perform(r, a)
		}
	}
	for _, r := range s.reps {
		for node, d := range r.fence {
			if !s.now.Before(d) {
				delete(r.fence, node)
				r.c.fenceExpired(node)
			}
		}
	}
	s.checkOneOwner()
	s.now = s.now.Add(simStep)
}

func (s *sim) perform(r *simReplica, a action) {
	c, now := r.c, s.now
	switch a.kind {
	case actAcquire:
		l, ok := s.write(r, NodeLeaseName(a.node), a.base, r.w.acquire(a.node, a.base, now))
		c.acquired(a.node, a.base, l, ok, now, now)
		if ok {
			r.fence[a.node] = now.Add(testTiming.renewDeadline)
			s.acquired[r.id]++
			s.lastSeen[a.node] = now
		}
	case actRevoke:
		delete(r.fence, a.node)
	case actStop:
		delete(r.fence, a.node)
		r.stops[a.reason]++
		c.stopped(a.node)
	case actRelease:
		l, ok := s.write(r, NodeLeaseName(a.node), a.base, r.w.release(a.base))
		c.released(a.node, l, ok, now)
	case actRemove:
		_, ok := s.write(r, NodeLeaseName(a.node), a.base, nil)
		c.released(a.node, nil, ok, now)
	case actJoin:
		l, ok := s.write(r, ReplicaLeaseName(r.id), a.base, r.w.member(a.base, a.hash, a.count, now))
		c.joined(l, ok, now, now)
		if ok {
			s.extend(r)
		}
	case actLeave:
		l, ok := s.write(r, ReplicaLeaseName(r.id), a.base, r.w.leave(a.base, a.hash, a.count, now))
		c.left(l, ok, now, now)
		if ok {
			s.extend(r)
		}
	case actDepart:
		s.write(r, ReplicaLeaseName(r.id), a.base, nil)
		c.departed()
	case actCollect:
		_, ok := s.write(r, a.base.Name, a.base, nil)
		c.collected(a, ok, now)
	}
}

// extend records r's successful membership write: every fence runs from
// it (or from its acquisition, if later).
func (s *sim) extend(r *simReplica) {
	s.member[r.id] = s.now
	for node, d := range r.fence { // expired ones were dropped by step
		if end := s.now.Add(testTiming.renewDeadline); end.After(d) {
			r.fence[node] = end
		}
	}
}

// checkOneOwner is the safety invariant: never two replicas acting for one
// node at the same instant.
func (s *sim) checkOneOwner() {
	s.t.Helper()
	seen := map[string]string{}
	for _, r := range s.reps {
		for node := range r.fence {
			if !r.serving(node, s.now) {
				continue
			}
			if other, dup := seen[node]; dup {
				s.t.Fatalf("at %s both %s and %s act for %s", s.now.Format(time.TimeOnly), other, r.id, node)
			}
			seen[node] = r.id
		}
	}
}

func (s *sim) run(d time.Duration) {
	for end := s.now.Add(d); s.now.Before(end); {
		s.step()
	}
}

// owners maps each node to the replica serving it.
func (s *sim) owners() map[string]string {
	out := map[string]string{}
	for _, r := range s.reps {
		for node := range r.fence {
			if r.serving(node, s.now) {
				out[node] = r.id
			}
		}
	}
	return out
}

// until runs until cond holds, at most max simulated time.
func (s *sim) until(max time.Duration, what string, cond func() bool) time.Duration {
	s.t.Helper()
	start := s.now
	for !cond() {
		if s.now.Sub(start) > max {
			s.t.Fatalf("not %s after %s: owners %v", what, max, s.owners())
		}
		s.step()
	}
	return s.now.Sub(start)
}

func (s *sim) allServedBalanced(nodes []string, ids ...string) func() bool {
	return func() bool {
		own := s.owners()
		if len(own) != len(nodes) {
			return false
		}
		for _, n := range nodes {
			if o, ok := own[n]; !ok || !slices.Contains(ids, o) {
				return false
			}
		}
		sh := shares(own)
		lo, hi := len(nodes), 0
		for _, id := range ids {
			lo, hi = min(lo, sh[id]), max(hi, sh[id])
		}
		return hi-lo <= 1
	}
}

func TestCoreConvergesBalancedAndStaysPut(t *testing.T) {
	for _, n := range []int{1, 6, 7, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newSim(t)
			nodes := names("agent-", n)
			ids := []string{"vk-titus-0", "vk-titus-1", "vk-titus-2"}
			for _, id := range ids {
				s.add(id, nodes)
			}
			s.until(time.Minute, "served and balanced", s.allServedBalanced(nodes, ids...))
			before := s.owners()
			acq := len(s.acquired)
			total := 0
			for _, v := range s.acquired {
				total += v
			}
			s.run(2 * time.Minute)
			if got := s.owners(); !mapsEqual(got, before) {
				t.Fatalf("nodes moved with nothing failing: %v -> %v", before, got)
			}
			after := 0
			for _, v := range s.acquired {
				after += v
			}
			if after != total || len(s.acquired) != acq {
				t.Fatalf("%d acquisitions in steady state", after-total)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A joining replica takes only its share, each releasing replica hands its
// nodes over one at a time, and nothing moves between the others.
func TestCoreJoinMovesOnlyItsShareOneAtATime(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 12)
	s.add("a", nodes)
	s.add("b", nodes)
	s.until(time.Minute, "served by two", s.allServedBalanced(nodes, "a", "b"))
	before := s.owners()
	s.acquired = map[string]int{}
	for _, id := range []string{"a", "b"} {
		clear(s.get(id).stops)
	}

	s.add("c", nodes)
	released := map[string]int{} // nodes released and not yet taken, by releaser
	s.until(time.Minute, "served by three", func() bool {
		now := s.owners()
		clear(released)
		for node, was := range before {
			if _, ok := now[node]; !ok {
				released[was]++
				if released[was] > 1 {
					t.Fatalf("%s has two nodes in handover at once", was)
				}
			}
		}
		return s.allServedBalanced(nodes, "a", "b", "c")()
	})
	for node, owner := range s.owners() {
		if owner != before[node] && owner != "c" {
			t.Fatalf("%s moved from %s to %s", node, before[node], owner)
		}
	}
	if s.acquired["a"] != 0 || s.acquired["b"] != 0 || s.acquired["c"] != 4 {
		t.Fatalf("acquisitions %v: want only c's share of 4", s.acquired)
	}
	if got := s.get("a").stops[ReasonRebalance] + s.get("b").stops[ReasonRebalance]; got != 4 {
		t.Fatalf("%d rebalance stops, want 4", got)
	}
	if s.conflicts != 0 {
		t.Fatalf("%d write conflicts", s.conflicts)
	}
}

// Scaling 3 -> 2 (graceful) -> 3 (a new replica) rebalances with no write
// conflict, moving only the leaver's and then the joiner's share.
func TestCoreScaleDownAndUpWithoutConflicts(t *testing.T) {
	for _, n := range []int{6, 7, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newSim(t)
			nodes := names("agent-", n)
			for _, id := range []string{"a", "b", "c"} {
				s.add(id, nodes)
			}
			s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b", "c"))
			s.conflicts = 0
			s.get("c").c.shutdown()
			s.until(10*time.Second, "scaled down", s.allServedBalanced(nodes, "a", "b"))
			s.acquired = map[string]int{}
			s.add("d", nodes)
			s.until(time.Minute, "scaled up", s.allServedBalanced(nodes, "a", "b", "d"))
			if s.acquired["a"]+s.acquired["b"] != 0 || s.acquired["d"] < n/3 || s.acquired["d"] > n/3+1 {
				t.Fatalf("acquisitions %v: want only d's share", s.acquired)
			}
			if s.conflicts != 0 {
				t.Fatalf("%d write conflicts", s.conflicts)
			}
		})
	}
}

// A SIGKILLed replica's nodes go to the others once its membership lease
// expired as they observed it, not before, and only its nodes move.
func TestCoreKilledReplicaTakenOverAfterExpiry(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 9)
	for _, id := range []string{"a", "b", "c"} {
		s.add(id, nodes)
	}
	s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b", "c"))
	before := s.owners()
	c := s.get("c")
	c.dead = true
	killed := s.now
	lastWrite := map[string]time.Time{} // c's last write keeping each of its nodes
	for node, o := range before {
		if o == "c" {
			lastWrite[node] = s.member["c"]
			if s.lastSeen[node].After(lastWrite[node]) {
				lastWrite[node] = s.lastSeen[node]
			}
		}
	}
	took := s.until(30*time.Second, "taken over", func() bool {
		own := s.owners()
		for n, last := range lastWrite {
			if o, ok := own[n]; ok && s.now.Before(last.Add(testTiming.leaseDuration)) {
				t.Fatalf("%s taken by %s before c's lease expired", n, o)
			}
		}
		return len(own) == len(nodes)
	})
	if took > testTiming.leaseDuration+time.Second {
		t.Fatalf("takeover took %s after the kill at %s", took, killed.Format(time.TimeOnly))
	}
	for node, o := range s.owners() {
		if before[node] != "c" && o != before[node] {
			t.Fatalf("%s moved from live %s to %s", node, before[node], o)
		}
	}
	if !s.allServedBalanced(nodes, "a", "b")() {
		t.Fatalf("not balanced over the survivors: %v", s.owners())
	}
	// The dead replica's membership lease is collected in the end.
	s.until(time.Minute, "collected", func() bool { return s.store[ReplicaLeaseName("c")] == nil })
}

// A graceful stop hands every node over within a step or two: the leaving
// replica's membership goes first, then its releases, which the others
// take at once.
func TestCoreGracefulShutdownHandsOverAtOnce(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 9)
	for _, id := range []string{"a", "b", "c"} {
		s.add(id, nodes)
	}
	s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b", "c"))
	c := s.get("c")
	c.c.shutdown()
	took := s.until(10*time.Second, "handed over", func() bool {
		return c.c.finished() && s.allServedBalanced(nodes, "a", "b")()
	})
	if took > time.Second {
		t.Fatalf("graceful handover took %s of simulated time", took)
	}
	if c.stops[ReasonShutdown] != 3 || s.store[ReplicaLeaseName("c")] != nil {
		t.Fatalf("stops %v, membership lease %v", c.stops, s.store[ReplicaLeaseName("c")])
	}
}

// A replica that cannot write loses its fences before anyone else takes its
// nodes (checkOneOwner runs every step), and they are taken in the end.
func TestCorePartitionedReplicaFencedBeforeTakeover(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 6)
	for _, id := range []string{"a", "b"} {
		s.add(id, nodes)
	}
	s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b"))
	b := s.get("b")
	b.cut = true
	s.until(30*time.Second, "taken over by a", func() bool {
		own := s.owners()
		return len(own) == len(nodes) && shares(own)["a"] == len(nodes)
	})
	if b.stops[ReasonLost] != 3 {
		t.Fatalf("b stopped %v, want its 3 nodes lost", b.stops)
	}
	// b comes back: it gets its share again, one node at a time.
	b.cut = false
	s.until(time.Minute, "rebalanced", s.allServedBalanced(nodes, "a", "b"))
}

// A restarted replica (same identity, new process) adopts its
// predecessor's leases at once: nothing moves.
func TestCoreRestartAdoptsOwnLeases(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 6)
	s.add("a", nodes)
	s.add("b", nodes)
	s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b"))
	before := s.owners()
	s.get("b").dead = true
	s.acquired = map[string]int{}
	s.add("b", nodes)
	s.until(2*time.Second, "adopted", s.allServedBalanced(nodes, "a", "b"))
	if got := s.owners(); !mapsEqual(got, before) {
		t.Fatalf("restart moved nodes: %v -> %v", before, got)
	}
	if s.acquired["a"] != 0 {
		t.Fatalf("a acquired %d nodes during b's restart", s.acquired["a"])
	}
}

// A node leaving the set is stopped and its lease deleted; a node joining
// it is taken.
func TestCoreNodeSetChanges(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 4)
	s.add("a", nodes)
	s.add("b", nodes)
	s.until(time.Minute, "served", s.allServedBalanced(nodes, "a", "b"))
	gone := nodes[0]
	holder := s.get(s.owners()[gone])
	rest := append(slices.Clone(nodes[1:]), "agent-new")
	for _, r := range s.reps {
		r.c.setNodes(rest, s.now)
	}
	s.until(10*time.Second, "the new set served, the old node's lease deleted", func() bool {
		return s.allServedBalanced(rest, "a", "b")() && s.store[NodeLeaseName(gone)] == nil
	})
	if holder.stops[ReasonRemoved] != 1 || s.store[NodeLeaseName(gone)] != nil {
		t.Fatalf("removed node: stops %v, lease %v", holder.stops, s.store[NodeLeaseName(gone)])
	}
}

// A replica handed a node set the others do not serve receives no node by
// rebalance (it might not know them), but a free node only it knows is
// taken by another after the fallback wait, and nothing ping-pongs.
func TestCoreDifferentNodeSets(t *testing.T) {
	s := newSim(t)
	nodes := names("agent-", 6)
	s.add("a", nodes)
	s.until(time.Minute, "served by a", s.allServedBalanced(nodes, "a"))
	s.add("b", append(slices.Clone(nodes), "agent-only-b"))
	s.run(time.Minute)
	own := s.owners()
	if sh := shares(own); sh["a"] != 6 {
		t.Fatalf("a gave nodes to b, whose node set differs: %v", own)
	}
	if own["agent-only-b"] != "b" {
		t.Fatalf("agent-only-b not served by b: %v", own)
	}
	// Once a learns the same set, the fleet balances.
	s.get("a").c.setNodes(append(slices.Clone(nodes), "agent-only-b"), s.now)
	all := append(slices.Clone(nodes), "agent-only-b")
	s.until(time.Minute, "balanced", s.allServedBalanced(all, "a", "b"))
}

// The loop plans on every input: in steady state (every lease renewed by
// its holder, nothing to move) a plan over 3,000 nodes must stay cheap.
func BenchmarkPlanSteadyState(b *testing.B) {
	s := newSim(b)
	nodes := names("agent-", 3000)
	for _, id := range []string{"a", "b", "c"} {
		s.add(id, nodes)
	}
	for !s.allServedBalanced(nodes, "a", "b", "c")() {
		s.step()
	}
	c := s.get("a").c
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.plan(s.now)
	}
}

// A node lease is never renewed: it lives as long as its holder's
// membership lease, is free at once when released, and without a
// membership lease lives a lease duration from its own last change.
func TestCoreNodeLeaseLivesWithItsHolder(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	x := leaseWriter{namespace: "ns", identity: "x", incarnation: "x1", duration: testTiming.leaseDuration}
	aw := leaseWriter{namespace: "ns", identity: "a", incarnation: "a1", duration: testTiming.leaseDuration}
	rv := 0
	observe := func(c *core, l *coordinationv1.Lease, at time.Time) {
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		c.observe(l.Name, l, at)
	}
	// acquiresAt plans every step from start, x renewing its membership
	// until renewUntil, and returns when a acquires n.
	acquiresAt := func(c *core, start time.Time, renewUntil time.Time) time.Time {
		for now := start; now.Before(start.Add(time.Minute)); now = now.Add(simStep) {
			if now.Before(renewUntil) && now.Sub(t0)%testTiming.renewInterval == 0 {
				observe(c, x.member(nil, nodesHash([]string{"n"}), 1, now), now)
			}
			for _, a := range c.plan(now) {
				switch a.kind {
				case actAcquire:
					return now
				case actJoin:
					c.joined(aw.member(nil, "", 0, now), true, now, now)
				}
			}
		}
		t.Fatal("n never acquired")
		return time.Time{}
	}
	newA := func() *core {
		c := newCore("a", "a1", testTiming)
		c.setNodes([]string{"n"}, t0)
		observe(c, x.acquire("n", nil, t0), t0)
		return c
	}

	c := newA() // x renews its membership for 30s, then dies
	lastRenew := t0.Add(28 * time.Second)
	if got := acquiresAt(c, t0, lastRenew.Add(time.Millisecond)); !got.Equal(lastRenew.Add(testTiming.leaseDuration)) {
		t.Errorf("held lease taken %s after x's last membership renewal, want the lease duration", got.Sub(lastRenew))
	}

	c = newA() // x has no membership lease: the node lease's own age counts
	if got := acquiresAt(c, t0, t0); !got.Equal(t0.Add(testTiming.leaseDuration)) {
		t.Errorf("lease without membership taken %s after it was written", got.Sub(t0))
	}

	c = newA() // x, live, releases it once a settled: free at once
	released := t0.Add(testTiming.renewInterval + time.Second)
	for now := t0; now.Before(released); now = now.Add(simStep) {
		if now.Sub(t0)%testTiming.renewInterval == 0 {
			observe(c, x.member(nil, nodesHash([]string{"n"}), 1, now), now)
		}
		for _, a := range c.plan(now) {
			switch a.kind {
			case actAcquire:
				t.Fatalf("a acquired x's live lease at %s", now.Sub(t0))
			case actJoin:
				c.joined(aw.member(nil, "", 0, now), true, now, now)
			}
		}
	}
	observe(c, x.release(x.acquire("n", nil, t0)), released)
	if got := acquiresAt(c, released, released.Add(time.Minute)); !got.Equal(released) {
		t.Errorf("released lease taken %s after its release", got.Sub(released))
	}
}
