package provider

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// waiter follows running containers until they exit. Each WAIT_CONTAINER
// long poll holds one connection on both ends, and at 10,000 pods that is
// close to the 20,000 open files a process may have; so at most max run at
// once. Containers past that are followed by one shared GET_CONTAINERS sweep:
// when one stops being live, a WAIT (answered at once) fetches how it ended.
type waiter struct {
	p     *Provider
	slots chan struct{}

	mu       sync.Mutex
	active   map[string]context.CancelFunc
	overflow map[string]target
	sweeping bool
}

type target struct {
	rec *podRecord
	c   *ctr
}

func newWaiter(p *Provider, max int) *waiter {
	return &waiter{p: p, slots: make(chan struct{}, max), active: map[string]context.CancelFunc{}, overflow: map[string]target{}}
}

// watch follows container run id until it ends; calling it again for an id
// already followed does nothing.
func (w *waiter) watch(rec *podRecord, c *ctr, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.active[id]; ok {
		return
	}
	if _, ok := w.overflow[id]; ok {
		return
	}
	select {
	case w.slots <- struct{}{}:
		ctx, cancel := context.WithCancel(w.p.ctx)
		w.active[id] = cancel
		go w.longPoll(ctx, target{rec, c}, id)
	default:
		w.overflow[id] = target{rec, c}
		if !w.sweeping {
			w.sweeping = true
			go w.sweep()
		}
	}
}

// cancel stops following id (the container is being removed).
func (w *waiter) cancel(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cancel, ok := w.active[id]; ok {
		cancel()
	}
	delete(w.overflow, id)
}

// following says how many runs are followed by a long poll, and how many
// by the overflow sweep (the vktitus_exits_followed gauge).
func (w *waiter) following() (longPolls, swept int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.active), len(w.overflow)
}

func (w *waiter) longPoll(ctx context.Context, t target, id string) {
	defer w.release(id)
	for {
		if !w.p.health.waitUp(ctx) {
			return
		}
		exit, err := w.p.agent.Wait(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if w.deliver(t, id, exit, err) {
			return
		}
		// The agent dropped the call: have health look now; the next WAIT
		// waits until it answers again rather than hammering it.
		w.p.health.suspect()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// deliver turns a WAIT answer for run id into an event for the pod's
// worker; false means try again later.
func (w *waiter) deliver(t target, id string, exit agentclient.Exit, err error) bool {
	var ev sm.Event
	switch {
	case err == nil:
		ev = sm.Event{Type: sm.ContainerExited, ExitCode: exit.Code, Signal: exit.Signal, Reason: exit.Reason, Message: exit.Message}
	case errors.Is(err, agentclient.ErrNotFound):
		ev = sm.Event{Type: sm.ReconciledNotFound}
	case errors.Is(err, agentclient.ErrUnavailable):
		return false
	default:
		w.p.log.WithError(err).WithField("task", id).Warn("wait refused by the agent")
		ev = sm.Event{Type: sm.ReconciledNotFound}
	}
	w.p.enqueue(t.rec, item{c: t.c, ev: ev, run: id})
	return true
}

func (w *waiter) release(id string) {
	w.mu.Lock()
	delete(w.active, id)
	<-w.slots
	// Promote one overflowed container to a long poll.
	var next string
	var t target
	for next, t = range w.overflow {
		break
	}
	if next != "" {
		delete(w.overflow, next)
	}
	w.mu.Unlock()
	if next != "" {
		w.watch(t.rec, t.c, next)
	}
}

// overflowSweepInterval paces the overflow's GET_CONTAINERS: once a second,
// the kubelet's relist period, so an exit beyond the WAIT budget reaches the
// pod within about a second, for the price of one list per agent per second.
const overflowSweepInterval = time.Second

// sweep follows the overflow with one GET_CONTAINERS per interval until it
// is empty or the provider stops.
func (w *waiter) sweep() {
	for {
		select {
		case <-w.p.ctx.Done():
			w.mu.Lock()
			w.sweeping = false
			w.mu.Unlock()
			return
		case <-time.After(overflowSweepInterval):
		}
		w.mu.Lock()
		if len(w.overflow) == 0 {
			w.sweeping = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		live, err := w.p.health.refreshLive(w.p.ctx)
		if err != nil {
			continue
		}
		w.mu.Lock()
		var ended []string
		targets := map[string]target{}
		for id, t := range w.overflow {
			if !live[id] {
				ended = append(ended, id)
				targets[id] = t
				delete(w.overflow, id)
			}
		}
		w.mu.Unlock()
		for _, id := range ended {
			ctx, cancel := context.WithTimeout(w.p.ctx, 10*time.Second)
			exit, err := w.p.agent.Wait(ctx, id)
			cancel()
			if !w.deliver(targets[id], id, exit, err) {
				w.mu.Lock()
				w.overflow[id] = targets[id]
				w.mu.Unlock()
			}
		}
	}
}
