package ownership

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	testclock "k8s.io/utils/clock/testing"
)

// The shell is tested with several managers on one fakeAPI and one fake
// clock. The clock moves only when every manager is quiet (its loop waits
// with nothing queued or running, and every list and watch event was
// handed to it), so that a loaded machine cannot make a lease expire: the
// tests assert what happens, never how fast in real time.

type testHandler struct {
	h  *harness
	id string

	mu     sync.Mutex
	fences map[string]*Fence
	serves int
	stops  map[Reason]int
	// hold, if set, makes Stop wait until it is closed (the caller's stop
	// taking long); stopping is closed when such a Stop started.
	hold, stopping chan struct{}
}

func (th *testHandler) Serve(f *Fence) {
	th.h.mu.Lock()
	defer th.h.mu.Unlock()
	// Nobody else may act for the node now: the previous holder's fence
	// ended before this replica could acquire.
	for _, r := range th.h.reps {
		if r.h != th {
			if other := r.h.fence(f.Node()); other != nil && other.Valid() {
				th.h.t.Errorf("%s acquired %s while %s's fence is valid", th.id, f.Node(), r.id)
			}
		}
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.fences[f.Node()] != nil {
		th.h.t.Errorf("%s: Serve(%s) twice without Stop", th.id, f.Node())
	}
	th.fences[f.Node()] = f
	th.serves++
}

func (th *testHandler) Stop(ctx context.Context, node string, reason Reason) error {
	th.mu.Lock()
	hold, stopping := th.hold, th.stopping
	th.hold = nil
	th.mu.Unlock()
	if hold != nil {
		close(stopping)
		select {
		case <-hold:
		case <-ctx.Done():
			th.h.t.Errorf("%s: Stop(%s) ran out of time", th.id, node)
		}
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	f := th.fences[node]
	if f == nil {
		th.h.t.Errorf("%s: Stop(%s) without Serve", th.id, node)
		return errors.New("not served")
	}
	if reason == ReasonLost && f.Valid() {
		th.h.t.Errorf("%s: Stop(%s, lost) with a valid fence", th.id, node)
	}
	delete(th.fences, node)
	th.stops[reason]++
	return nil
}

func (th *testHandler) fence(node string) *Fence {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.fences[node]
}

// serving lists the nodes this handler may act for now.
func (th *testHandler) serving() []string {
	th.mu.Lock()
	defer th.mu.Unlock()
	var out []string
	for n, f := range th.fences {
		if f.Valid() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

type testReplica struct {
	id      string
	m       *Manager
	h       *testHandler
	c       *apiClient
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returned
	err     error         // Run's, once done is closed
}

func (r *testReplica) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

type harness struct {
	t   *testing.T
	clk *testclock.FakeClock
	api *fakeAPI
	mu  sync.Mutex // guards reps
	// reps in start order
	reps []*testReplica
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, clk: testclock.NewFakeClock(time.Unix(1_000_000, 0)), api: newFakeAPI()}
}

func (h *harness) start(id string, nodes []string) *testReplica {
	h.t.Helper()
	c := h.api.client()
	metrics, err := NewMetrics(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	th := &testHandler{h: h, id: id, fences: map[string]*Fence{}, stops: map[Reason]int{}}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{Client: c, Namespace: "vk-titus", Identity: id, Handler: th, Metrics: metrics,
		Clock: h.clk, Log: logrus.NewEntry(log)})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := m.SetNodes(nodes); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &testReplica{id: id, m: m, h: th, c: c, metrics: metrics, cancel: cancel, done: make(chan struct{})}
	h.mu.Lock()
	h.reps = append(h.reps, r)
	h.mu.Unlock()
	go func() {
		r.err = m.Run(ctx)
		close(r.done)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			h.t.Errorf("%s: Run did not return", id)
		}
	})
	h.settle()
	return r
}

// quiet reports whether every running manager is quiet.
func (h *harness) quiet() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.reps {
		if !r.finished() && (!r.m.idle() || r.c.emitted.Load() != r.m.handled.Load()) {
			return false
		}
	}
	return true
}

func (h *harness) settle() {
	h.t.Helper()
	for deadline := time.Now().Add(time.Minute); !h.quiet(); {
		if time.Now().After(deadline) {
			h.t.Fatal("managers not quiet after a minute")
		}
		time.Sleep(time.Millisecond)
	}
}

const harnessStep = 250 * time.Millisecond

// until steps the clock until cond holds, at most max of fake time, and
// returns the fake time it took.
func (h *harness) until(max time.Duration, what string, cond func() bool) time.Duration {
	h.t.Helper()
	start := h.clk.Now()
	for {
		h.settle()
		if cond() {
			return h.clk.Since(start)
		}
		if h.clk.Since(start) > max {
			h.t.Fatalf("not %s after %s of fake time: %v", what, max, h.owners())
		}
		h.clk.Step(harnessStep)
	}
}

// owners maps each node to the replicas acting for it.
func (h *harness) owners() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]string{}
	for _, r := range h.reps {
		for _, n := range r.h.serving() {
			out[n] = append(out[n], r.id)
		}
	}
	return out
}

// balanced: every node served by exactly one of ids, shares within one.
func (h *harness) balanced(nodes []string, ids ...string) func() bool {
	return func() bool {
		own := h.owners()
		count := map[string]int{}
		for _, n := range nodes {
			o := own[n]
			if len(o) != 1 || !slices.Contains(ids, o[0]) {
				return false
			}
			count[o[0]]++
		}
		lo, hi := len(nodes), 0
		for _, id := range ids {
			lo, hi = min(lo, count[id]), max(hi, count[id])
		}
		return hi-lo <= 1
	}
}

func conflicts(rs ...*testReplica) float64 {
	var n float64
	for _, r := range rs {
		n += testutil.ToFloat64(r.metrics.conflicts)
	}
	return n
}

// run lets d of fake time pass.
func (h *harness) run(d time.Duration) {
	h.t.Helper()
	for end := h.clk.Now().Add(d); h.clk.Now().Before(end); {
		h.settle()
		h.clk.Step(harnessStep)
	}
	h.settle()
}

func TestManagersConvergeAndStay(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 7)
	a, b, c := h.start("vk-titus-0", nodes), h.start("vk-titus-1", nodes), h.start("vk-titus-2", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id, c.id))
	before := h.owners()
	serves := a.h.serves + b.h.serves + c.h.serves
	h.run(time.Minute)
	if got := h.owners(); !equalOwners(got, before) {
		t.Fatalf("nodes moved with nothing failing: %v -> %v", before, got)
	}
	if got := a.h.serves + b.h.serves + c.h.serves; got != serves {
		t.Fatalf("%d more acquisitions in steady state", got-serves)
	}
	if n := conflicts(a, b, c); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}
	for _, r := range []*testReplica{a, b, c} {
		if got, want := testutil.ToFloat64(r.metrics.owned), float64(len(r.h.serving())); got != want {
			t.Fatalf("%s: vktitus_owned_nodes %v, serving %v", r.id, got, want)
		}
	}
	// Every lease is this package's: held, annotated.
	l := h.api.get(NodeLeaseName(nodes[0]))
	if l == nil || l.Spec.HolderIdentity == nil || l.Labels[LabelLease] != kindNode || l.Annotations[annotationNode] != nodes[0] {
		t.Fatalf("node lease %v", l)
	}
}

func equalOwners(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// SIGKILL: a replica stops writing at once (no release). Its nodes are
// taken over once its leases expired, and only its nodes move.
func TestManagerKilledIsTakenOverAfterExpiry(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 6)
	a, b, c := h.start("a", nodes), h.start("b", nodes), h.start("c", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id, c.id))
	before := h.owners()
	c.c.cut.Store(true) // nothing it writes lands any more
	c.cancel()
	took := h.until(time.Minute, "taken over", h.balanced(nodes, a.id, b.id))
	if took > 12*time.Second+time.Second {
		t.Fatalf("takeover took %s of fake time, want at most the lease duration", took)
	}
	if took < 12*time.Second-4*time.Second {
		t.Fatalf("takeover after %s: before the killed replica's leases could expire", took)
	}
	for n, o := range h.owners() {
		if before[n][0] != c.id && o[0] != before[n][0] {
			t.Fatalf("%s moved from %s to %s", n, before[n][0], o[0])
		}
	}
}

// A graceful stop hands every node over with no time passing: the
// releases are seen through the informers and acquired at once.
func TestManagerGracefulStopHandsOverAtOnce(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 6)
	a, b, c := h.start("a", nodes), h.start("b", nodes), h.start("c", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id, c.id))
	c.cancel()
	<-c.done
	if c.err != nil {
		t.Fatalf("Run: %v", c.err)
	}
	h.settle() // no fake time passes
	if !h.balanced(nodes, a.id, b.id)() {
		t.Fatalf("not handed over without waiting: %v", h.owners())
	}
	if c.h.stops[ReasonShutdown] != 2 || h.api.get(ReplicaLeaseName(c.id)) != nil {
		t.Fatalf("c's stops %v, membership lease %v", c.h.stops, h.api.get(ReplicaLeaseName(c.id)))
	}
	if n := conflicts(a, b, c); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}
	if got := testutil.ToFloat64(c.metrics.handovers.WithLabelValues("released")); got != 2 {
		t.Fatalf("c released %v", got)
	}
}

// A replica whose membership renewals fail ends every fence at its last
// successful renewal's send time + RenewDeadline, and the other acquires
// only a LeaseDuration after that renewal (testHandler.Serve checks that
// no fence is valid then); it stops its nodes as lost, and they are taken
// over.
func TestManagerThatCannotRenewIsFencedFirst(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 4)
	a, b := h.start("a", nodes), h.start("b", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id))
	bNodes := b.h.serving()
	fences := make([]*Fence, len(bNodes))
	for i, n := range bNodes {
		fences[i] = b.h.fence(n)
	}
	b.c.cut.Store(true)
	// Quiet managers have no write in flight: this is b's last success.
	last := h.api.get(ReplicaLeaseName(b.id)).Spec.RenewTime.Time
	fencedAt := last.Add(8 * time.Second)
	h.until(time.Minute, "taken over by a", func() bool {
		now := h.clk.Now()
		for _, f := range fences {
			if f.Valid() != now.Before(fencedAt) {
				t.Fatalf("at %s after b's last renewal, its fence for %s is valid: %v", now.Sub(last), f.Node(), f.Valid())
			}
		}
		served := a.h.serving()
		for _, n := range bNodes {
			if slices.Contains(served, n) && now.Before(last.Add(12*time.Second)) {
				t.Fatalf("a took %s %s after b's last renewal, before the lease duration", n, now.Sub(last))
			}
		}
		return h.balanced(nodes, a.id)()
	})
	for _, f := range fences {
		select {
		case <-f.Done():
		default:
			t.Fatalf("b's fence for %s still open", f.Node())
		}
		if f.Context().Err() == nil || !errors.Is(f.Err(), ErrFenced) {
			t.Fatalf("b's fence for %s: ctx %v, err %v", f.Node(), f.Context().Err(), f.Err())
		}
	}
	if b.h.stops[ReasonLost] != len(bNodes) {
		t.Fatalf("b stopped %v, want %d lost", b.h.stops, len(bNodes))
	}
	if got := testutil.ToFloat64(b.metrics.handovers.WithLabelValues("lost")); got != float64(len(bNodes)) {
		t.Fatalf("b counted %v lost", got)
	}
	// Reachable again, b gets its share back.
	b.c.cut.Store(false)
	h.until(time.Minute, "rebalanced", h.balanced(nodes, a.id, b.id))
}

// An idle fleet writes only the membership leases, one per replica per
// RenewInterval, however many nodes each holds.
func TestManagerIdleWritesOnlyMembership(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 30)
	a, b, c := h.start("a", nodes), h.start("b", nodes), h.start("c", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id, c.id))
	h.run(30 * time.Second) // past any settling
	before := h.api.writeCounts()
	h.run(time.Minute)
	after := h.api.writeCounts()
	for name, n := range after {
		n -= before[name]
		switch name {
		case ReplicaLeaseName(a.id), ReplicaLeaseName(b.id), ReplicaLeaseName(c.id):
			if n < 14 || n > 16 { // a minute / RenewInterval 4s, give or take one
				t.Errorf("%s written %d times in a minute, want 15", name, n)
			}
		default:
			if n != 0 {
				t.Errorf("%s written %d times in an idle minute", name, n)
			}
		}
	}
	if n := conflicts(a, b, c); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}
}

// A restarted replica (same identity, another process) adopts its
// predecessor's node leases at once, while its membership lease keeps them
// alive: nothing moves, and the other acquires nothing.
func TestManagerRestartAdoptsAtOnce(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 6)
	a, b := h.start("a", nodes), h.start("b", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id))
	bNodes := b.h.serving()
	aServes := a.h.serves
	b.c.cut.Store(true) // crashed: nothing more of it lands
	b.cancel()
	<-b.done
	b2 := h.start("b", nodes) // settles: no fake time passes
	if got := b2.h.serving(); !slices.Equal(got, bNodes) {
		t.Fatalf("restarted b serves %v at once, want its predecessor's %v", got, bNodes)
	}
	h.run(time.Minute)
	if got := b2.h.serving(); !slices.Equal(got, bNodes) || a.h.serves != aServes {
		t.Fatalf("after a minute b serves %v (want %v), a acquired %d", got, bNodes, a.h.serves-aServes)
	}
	for _, n := range bNodes {
		l := h.api.get(NodeLeaseName(n))
		if l.Annotations[annotationIncarnation] != b2.m.w.incarnation {
			t.Fatalf("%s's lease is still the predecessor's: %v", n, l.Annotations)
		}
	}
	if n := conflicts(a, b2); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}
}

// A joining replica gets its share; the others hand it over one node at a
// time each, with no conflict; and a node leaving the set is stopped and
// its lease deleted.
func TestManagerJoinAndNodeSetChange(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 6)
	a, b := h.start("a", nodes), h.start("b", nodes)
	h.until(time.Minute, "balanced", h.balanced(nodes, a.id, b.id))
	c := h.start("c", nodes)
	h.until(time.Minute, "balanced over three", h.balanced(nodes, a.id, b.id, c.id))
	if c.h.serves != 2 || a.h.stops[ReasonRebalance]+b.h.stops[ReasonRebalance] != 2 {
		t.Fatalf("c served %d, a and b stopped %v %v", c.h.serves, a.h.stops, b.h.stops)
	}
	if n := conflicts(a, b, c); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}

	rest := nodes[1:]
	for _, r := range []*testReplica{a, b, c} {
		if err := r.m.SetNodes(rest); err != nil {
			t.Fatal(err)
		}
	}
	h.until(time.Minute, "the smaller set served", func() bool {
		return h.balanced(rest, a.id, b.id, c.id)() && h.api.get(NodeLeaseName(nodes[0])) == nil
	})
	if got := a.h.stops[ReasonRemoved] + b.h.stops[ReasonRemoved] + c.h.stops[ReasonRemoved]; got != 1 {
		t.Fatalf("%d removed stops", got)
	}
}

// A node handed over is released only once the caller's Stop returned:
// meanwhile its lease stays held (the membership lease is renewed) and
// nobody else takes it.
func TestManagerReleasesOnlyAfterStopReturns(t *testing.T) {
	h := newHarness(t)
	nodes := names("agent-", 2)
	a := h.start("a", nodes)
	h.until(time.Minute, "served by a", h.balanced(nodes, a.id))
	hold, stopping := make(chan struct{}), make(chan struct{})
	a.h.mu.Lock()
	a.h.hold, a.h.stopping = hold, stopping
	a.h.mu.Unlock()
	b := h.start("b", nodes)
	h.until(time.Minute, "a stopping one", func() bool { return closed(stopping) })
	h.run(30 * time.Second) // far beyond the lease duration
	if own := h.owners(); len(own) != 2 || own[nodes[0]][0] != a.id || own[nodes[1]][0] != a.id {
		t.Fatalf("a's node moved before its Stop returned: %v", own)
	}
	close(hold)
	h.until(time.Minute, "handed over", h.balanced(nodes, a.id, b.id))
	if n := conflicts(a, b); n != 0 {
		t.Fatalf("%v write conflicts", n)
	}
}

// Bad input is refused with an error, never a panic.
func TestManagerRefusesBadInput(t *testing.T) {
	h := newHarness(t)
	if _, err := New(Config{Client: h.api.client(), Namespace: "vk-titus", Identity: "Not A Name", Handler: &testHandler{}}); err == nil {
		t.Fatal("a bad identity was accepted")
	}
	if _, err := New(Config{Client: h.api.client(), Namespace: "vk-titus", Identity: "a", Handler: &testHandler{},
		LeaseDuration: 8 * time.Second}); err == nil {
		t.Fatal("RenewDeadline >= LeaseDuration was accepted")
	}
	m, err := New(Config{Client: h.api.client(), Namespace: "vk-titus", Identity: "a", Handler: &testHandler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetNodes([]string{"agent-1", "Bad_Name"}); err == nil {
		t.Fatal("a bad node name was accepted")
	}
}
