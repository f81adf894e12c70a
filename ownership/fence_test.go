package ownership

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestFenceEndsAtItsDeadlineUnlessExtended(t *testing.T) {
	clk := testclock.NewFakeClock(time.Unix(1_000_000, 0))
	var expired atomic.Int32
	f := newFence(context.Background(), "agent-1", clk, clk.Now().Add(8*time.Second), func(*Fence) { expired.Add(1) })
	if !f.Valid() || f.Err() != nil || f.Node() != "agent-1" {
		t.Fatalf("new fence: valid %v err %v", f.Valid(), f.Err())
	}

	clk.Step(5 * time.Second)
	if !f.extend(clk.Now().Add(8*time.Second), clk.Now()) {
		t.Fatal("extend before the deadline refused")
	}
	clk.Step(5 * time.Second) // past the first deadline, before the second
	if !f.Valid() || closed(f.Done()) || expired.Load() != 0 {
		t.Fatal("the superseded deadline ended the fence")
	}

	clk.Step(3 * time.Second)
	if f.Valid() || !closed(f.Done()) || expired.Load() != 1 {
		t.Fatalf("at the deadline: valid %v, done %v, expired %d", f.Valid(), closed(f.Done()), expired.Load())
	}
	if !errors.Is(f.Err(), ErrFenced) || !errors.Is(context.Cause(f.Context()), ErrFenced) {
		t.Fatalf("err %v, cause %v", f.Err(), context.Cause(f.Context()))
	}
	if f.extend(clk.Now().Add(8*time.Second), clk.Now()) || f.Valid() {
		t.Fatal("an ended fence came back")
	}
	if f.revoke(ReasonShutdown) || expired.Load() != 1 {
		t.Fatal("revoking an ended fence did something")
	}
}

// Valid is judged on the clock, not on the timer: it is false from the
// deadline on even if the timer has not run yet (a fake clock runs it only
// when stepped).
func TestFenceValidIgnoresALateTimer(t *testing.T) {
	clk := testclock.NewFakeClock(time.Unix(1_000_000, 0))
	f := newFence(context.Background(), "agent-1", clk, clk.Now(), func(*Fence) {})
	if closed(f.Done()) {
		t.Fatal("the timer ran without the clock moving")
	}
	if f.Valid() || !errors.Is(f.Err(), ErrFenced) {
		t.Fatal("valid at its deadline")
	}
}

func TestFenceRevoke(t *testing.T) {
	clk := testclock.NewFakeClock(time.Unix(1_000_000, 0))
	var expired atomic.Int32
	f := newFence(context.Background(), "agent-1", clk, clk.Now().Add(8*time.Second), func(*Fence) { expired.Add(1) })
	if !f.revoke(ReasonRebalance) {
		t.Fatal("revoke of a valid fence reported false")
	}
	if f.Valid() || !closed(f.Done()) || f.Context().Err() == nil || !errors.Is(f.Err(), ErrFenced) {
		t.Fatal("revoked fence still open")
	}
	clk.Step(time.Minute)
	if expired.Load() != 0 {
		t.Fatal("a revoked fence's timer reported an expiry")
	}
	if clk.HasWaiters() {
		t.Fatal("a revoked fence left its timer")
	}
}
