package ownership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// ErrFenced is what a fenced node's mutations fail with: this replica may
// no longer act for the node (Fence.Err wraps it with the node and why).
var ErrFenced = errors.New("ownership: fenced")

// Reason says why a replica stops serving a node.
type Reason string

const (
	// ReasonRebalance: the node moves to the replica the assignment prefers.
	ReasonRebalance Reason = "rebalance"
	// ReasonRemoved: the node left the set given to SetNodes.
	ReasonRemoved Reason = "removed"
	// ReasonShutdown: the manager's ctx ended.
	ReasonShutdown Reason = "shutdown"
	// ReasonLost: the membership lease could not be renewed before the
	// renew deadline, or another replica holds the node's lease. The fence
	// ended before Stop is called.
	ReasonLost Reason = "lost"
)

// Fence is one term of this replica's ownership of a node: from the
// acquiring write until the node is stopped, or until the membership lease
// could not be renewed in time. Every mutation for the node (agent calls, pod
// status, node status and node lease writes) must be gated on it: checked
// with Valid (or Err) right before it is issued, and issued under
// Context, so that what is in flight is cancelled when the fence ends.
//
// A fence ends once and for all (a later term has a new fence). It ends at
// lastSent + RenewDeadline on this process's monotonic clock, where
// lastSent is when the node's acquiring write or the last successful
// membership renewal, whichever is later, was sent; Valid turns false at
// that instant even if the timer that closes Done runs late.
//
// Lock rule: mu guards timer, gen and err; it is never held while calling
// the clock's timer methods (a fake clock runs timer functions under its
// own lock, and fire takes mu).
type Fence struct {
	node     string
	clk      clock.WithDelayedExecution
	deadline atomic.Pointer[time.Time]
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelCauseFunc
	expired  func(*Fence) // tells the manager; called once, by the timer, not under mu

	mu    sync.Mutex
	timer clock.Timer
	gen   uint64 // the current timer's; an earlier timer's fire is ignored
	err   error  // set once: the fence ended
}

// newFence starts a term valid until deadline. parent carries values only
// (its end does not end the fence).
func newFence(parent context.Context, node string, clk clock.WithDelayedExecution, deadline time.Time, expired func(*Fence)) *Fence {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	f := &Fence{node: node, clk: clk, done: make(chan struct{}), ctx: ctx, cancel: cancel, expired: expired}
	f.deadline.Store(&deadline)
	f.arm(deadline)
	return f
}

// Node is the node the fence is for.
func (f *Fence) Node() string { return f.node }

// Valid reports whether this replica may still act for the node. It is
// cheap (an atomic load and a clock read) and meant to be called before
// every mutation.
func (f *Fence) Valid() bool {
	select {
	case <-f.done:
		return false
	default:
	}
	return f.clk.Now().Before(*f.deadline.Load())
}

// Err is nil while the fence is valid, and then an error wrapping ErrFenced
// that says why it ended.
func (f *Fence) Err() error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !f.Valid() {
		return fmt.Errorf("%w: node %s: membership lease not renewed before the deadline", ErrFenced, f.node)
	}
	return nil
}

// Done is closed when the fence ends.
func (f *Fence) Done() <-chan struct{} { return f.done }

// Context is cancelled when the fence ends (its cause is Err's error).
func (f *Fence) Context() context.Context { return f.ctx }

// extend moves the deadline to deadline after a successful membership
// renewal, if that is later (a renewal sent before the acquiring write
// does not shorten the term); it reports false if the fence had already
// ended (then it stays ended: the renewal came too late, and others may
// have judged the lease expired meanwhile).
func (f *Fence) extend(deadline, now time.Time) bool {
	f.mu.Lock()
	cur := *f.deadline.Load()
	if f.err != nil || !now.Before(cur) {
		f.mu.Unlock()
		return false
	}
	if !deadline.After(cur) {
		f.mu.Unlock()
		return true
	}
	f.deadline.Store(&deadline)
	f.mu.Unlock()
	f.arm(deadline)
	return true
}

// arm replaces the timer by one firing at deadline.
func (f *Fence) arm(deadline time.Time) {
	f.mu.Lock()
	f.gen++
	gen, old := f.gen, f.timer
	f.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	t := f.clk.AfterFunc(deadline.Sub(f.clk.Now()), func() { f.fire(gen) })
	f.mu.Lock()
	if f.gen == gen && f.err == nil {
		f.timer, t = t, nil
	}
	f.mu.Unlock()
	if t != nil {
		t.Stop() // superseded or ended meanwhile
	}
}

// fire is the timer's: the deadline passed without a renewal. It must not
// read the clock (see the lock rule).
func (f *Fence) fire(gen uint64) {
	f.mu.Lock()
	if gen != f.gen || f.err != nil {
		f.mu.Unlock()
		return
	}
	f.endLocked(fmt.Errorf("%w: node %s: membership lease not renewed before the deadline", ErrFenced, f.node))
	f.mu.Unlock()
	f.expired(f)
}

// revoke ends the fence now; it reports whether it was still valid.
func (f *Fence) revoke(reason Reason) bool {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return false
	}
	f.endLocked(fmt.Errorf("%w: node %s: %s", ErrFenced, f.node, reason))
	t := f.timer
	f.timer = nil
	f.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	return true
}

func (f *Fence) endLocked(err error) {
	f.err = err
	close(f.done)
	f.cancel(err)
}
