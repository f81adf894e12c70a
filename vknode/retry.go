package vknode

import (
	"context"
	"time"
)

// Backoff is an exponential back-off: Next returns Min, then twice the last
// delay, up to Max; Reset starts over from Min. It is not safe for
// concurrent use (each retry loop owns one).
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.Min <= 0 {
		b.Min = time.Second
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	switch {
	case b.cur == 0:
		b.cur = b.Min
	case b.cur < b.Max:
		b.cur *= 2
	}
	if b.cur > b.Max {
		b.cur = b.Max
	}
	return b.cur
}

// Reset makes the next delay Min again: what failed had come up, so its
// next failure is a new outage, not the same one going on.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryLoop runs attempt until ctx ends, for something that must stay up
// for the node's whole life (registration and the node controller). An
// attempt runs until it fails or ctx ends; it calls up once it is up (the
// back-off then starts over, so that an outage hours after the last one is
// retried quickly). A failure is reported to failed with the delay before
// the next attempt; nothing here ever gives up: giving up would leave the
// node unregistered (its pods unserved) while the process looks healthy.
type retryLoop struct {
	backoff Backoff
	sleep   func(context.Context, time.Duration) bool // Sleep; tests replace it
	failed  func(err error, retryIn time.Duration)
}

func (r *retryLoop) run(ctx context.Context, attempt func(ctx context.Context, up func()) error) {
	for {
		err := attempt(ctx, r.backoff.Reset)
		if ctx.Err() != nil {
			return
		}
		d := r.backoff.Next()
		if r.failed != nil {
			r.failed(err, d)
		}
		if !r.sleep(ctx, d) {
			return
		}
	}
}
