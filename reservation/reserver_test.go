package reservation

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/discovery"
)

// fakeMaster reserves out of free, refusing with 409 as Mesos does.
type fakeMaster struct {
	free, reserved discovery.Resources
	calls          []string
}

func (f *fakeMaster) Operate(_ context.Context, c *master.Call) error {
	var x discovery.Resources
	rs := c.GetReserveResources().GetResources()
	if c.Type == master.Call_UNRESERVE_RESOURCES {
		rs = c.GetUnreserveResources().GetResources()
	}
	for _, r := range rs {
		if r.Reservations[0].GetRole() != "vk-titus" || r.Reservations[0].GetPrincipal() != "bridge" {
			return apierrors.Code(http.StatusBadRequest).Error("bad reservation")
		}
		switch r.Name {
		case "cpus":
			x.CPUs = r.Scalar.Value
		case "mem":
			x.MemMB = r.Scalar.Value
		}
	}
	f.calls = append(f.calls, fmt.Sprintf("%s %g/%g", c.Type, x.CPUs, x.MemMB))
	if c.Type == master.Call_RESERVE_RESOURCES {
		if !fits(f.free, x) {
			return apierrors.Code(http.StatusConflict).Error("not enough")
		}
		f.free, f.reserved = minus(f.free, x), plus(f.reserved, x)
		return nil
	}
	if !fits(f.reserved, x) {
		return apierrors.Code(http.StatusConflict).Error("not reserved")
	}
	f.free, f.reserved = plus(f.free, x), minus(f.reserved, x)
	return nil
}

type told struct {
	granted bool
	reason  string
}

func newTest(t *testing.T, free discovery.Resources) (*Reserver, *fakeMaster, map[types.UID][]told) {
	t.Helper()
	fm := &fakeMaster{free: free}
	notes := map[types.UID][]told{}
	r, err := New(Config{
		AgentID: "a1", Role: "vk-titus", Principal: "bridge", Quantum: discovery.Resources{CPUs: 1, MemMB: 1024}, Spare: 1,
		Master: fm, Log: logrus.NewEntry(logrus.New()),
		Notify: func(uid types.UID, granted bool, reason, _ string) {
			notes[uid] = append(notes[uid], told{granted, reason})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, fm, notes
}

// run steps until nothing more is asked for now (the kicks a step leaves).
func run(r *Reserver) {
	for i := 0; i < 10; i++ {
		select {
		case <-r.kick:
		default:
			return
		}
		r.step(context.Background())
	}
}

var half = discovery.Resources{CPUs: 0.5, MemMB: 100}

// TestBurstIsOneCallAndShrinksWithHysteresis: a burst of claims costs one
// RESERVE in whole quanta; dropping them gives back all but the spare
// quantum in one UNRESERVE, and only once every pod is admitted.
func TestBurstIsOneCallAndShrinksWithHysteresis(t *testing.T) {
	r, fm, notes := newTest(t, discovery.Resources{CPUs: 8, MemMB: 8192})
	r.Claim("p1", half)
	run(r)
	if len(fm.calls) != 0 || len(notes) != 0 {
		t.Fatalf("acted before the first observation: %v %v", fm.calls, notes)
	}
	r.Observe(discovery.Resources{}, time.Now())
	r.Claim("p2", half)
	r.Claim("p3", half)
	run(r)
	if want := []string{"RESERVE_RESOURCES 2/1024"}; fmt.Sprint(fm.calls) != fmt.Sprint(want) {
		t.Fatalf("calls %v, want %v", fm.calls, want)
	}
	for _, uid := range []types.UID{"p1", "p2", "p3"} {
		if n := notes[uid]; len(n) != 1 || !n[0].granted {
			t.Fatalf("%s told %v", uid, n)
		}
	}
	// A pod more fits in what is reserved: granted by Claim itself, no
	// call, no Notify.
	if !r.Claim("p4", half) {
		t.Fatal("p4 not granted at once although its room is reserved")
	}
	run(r)
	if len(fm.calls) != 1 || len(notes["p4"]) != 0 {
		t.Fatalf("calls %v, p4 %v", fm.calls, notes["p4"])
	}
	for _, uid := range []types.UID{"p1", "p2", "p3", "p4"} {
		r.Drop(uid)
	}
	run(r)
	if len(fm.calls) != 1 {
		t.Fatalf("room given back before the pods were all admitted: %v", fm.calls)
	}
	r.Settle(0)
	run(r)
	if want := "UNRESERVE_RESOURCES 1/0"; len(fm.calls) != 2 || fm.calls[1] != want {
		t.Fatalf("calls %v, want a last %s (one spare quantum kept)", fm.calls, want)
	}
	if got := r.Reserved(); got != (discovery.Resources{CPUs: 1, MemMB: 1024}) {
		t.Fatalf("reserved %+v", got)
	}
	run(r)
	if len(fm.calls) != 2 {
		t.Fatalf("the spare quantum was given back too: %v", fm.calls)
	}
}

// TestRefusedClaimWaitsAndIsToldOnce: whole quanta refused, the exact
// shortfall is tried; a claim that gets nothing is told once and granted
// when room comes back.
func TestRefusedClaimWaitsAndIsToldOnce(t *testing.T) {
	r, fm, notes := newTest(t, discovery.Resources{CPUs: 0.7, MemMB: 4096})
	r.Observe(discovery.Resources{}, time.Now())
	r.Settle(0)
	r.Claim("p1", half)
	run(r)
	if n := notes["p1"]; len(n) != 1 || !n[0].granted {
		t.Fatalf("p1 told %v (calls %v)", n, fm.calls)
	}
	r.Claim("p2", half)
	run(r)
	if again := r.step(context.Background()); again <= 0 {
		t.Fatal("no retry scheduled after a refusal")
	}
	if n := notes["p2"]; len(n) != 1 || n[0].granted || n[0].reason != ReasonOutOfCapacity {
		t.Fatalf("p2 told %v, want one refusal", n)
	}
	fm.free.CPUs += 1 // a legacy task ended
	r.Kick()
	run(r)
	if n := notes["p2"]; len(n) != 2 || !n[1].granted {
		t.Fatalf("p2 told %v, want a grant after the refusal", n)
	}
}

// TestObserveAndHold: an observation older than the last call is ignored;
// a newer one is the master's word (a reservation lost in a failover is
// made again); held pods count as granted at once.
func TestObserveAndHold(t *testing.T) {
	r, fm, notes := newTest(t, discovery.Resources{CPUs: 8, MemMB: 8192})
	before := time.Now().Add(-time.Minute)
	r.Observe(discovery.Resources{}, before)
	r.Hold("running", half)
	run(r)
	if len(notes) != 0 || len(fm.calls) != 1 || fm.calls[0] != "RESERVE_RESOURCES 1/1024" {
		t.Fatalf("calls %v, notes %v", fm.calls, notes)
	}
	r.Observe(discovery.Resources{}, before) // a poll from before the call
	if got := r.Reserved(); got.CPUs != 1 {
		t.Fatalf("a stale observation was taken: %+v", got)
	}
	fm.free, fm.reserved = plus(fm.free, fm.reserved), discovery.Resources{}
	r.Observe(discovery.Resources{}, time.Now().Add(time.Second)) // the master lost it
	run(r)
	if len(fm.calls) != 2 || fm.calls[1] != "RESERVE_RESOURCES 1/1024" {
		t.Fatalf("lost reservation not made again: %v", fm.calls)
	}
}

func TestParseQuantum(t *testing.T) {
	q, err := ParseQuantum("cpus:1; mem:1024")
	if err != nil || q != (discovery.Resources{CPUs: 1, MemMB: 1024}) {
		t.Fatalf("%+v %v", q, err)
	}
	for _, bad := range []string{"cpus", "cpus:-1", "cpus:x", "ports:1", "cpus:1;cpus:2", "mem:NaN"} {
		if _, err := ParseQuantum(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := New(Config{AgentID: "a", Role: "r"}); err == nil {
		t.Error("New without Master accepted")
	}
}

func TestCeilTo(t *testing.T) {
	q := discovery.Resources{CPUs: 1, MemMB: 1024}
	for _, c := range []struct{ in, want discovery.Resources }{
		{discovery.Resources{CPUs: 0.1 + 0.2, MemMB: 1}, discovery.Resources{CPUs: 1, MemMB: 1024}},
		{discovery.Resources{CPUs: 2, MemMB: 1024}, discovery.Resources{CPUs: 2, MemMB: 1024}},
		{discovery.Resources{CPUs: 2.001, DiskMB: 5}, discovery.Resources{CPUs: 3, DiskMB: 5}},
	} {
		if got := ceilTo(c.in, q); got != c.want {
			t.Errorf("ceilTo(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
