package vknode

import (
	"context"
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
)

// statusRelay stands between the provider's node-status callback and
// virtual-kubelet's node controller.
//
// The controller's callback sends on a one-slot channel that only its
// control loop reads, and that loop spends as long as the API server makes
// it in each status update (and, before registration succeeds or after the
// controller stopped, never reads at all). Called directly, the provider's
// health loop and discovery's SetLegacyUsage would hang with it. The
// provider is given put instead, which never blocks: it leaves the node in a
// one-slot mailbox (a newer node replaces an undelivered one: only the
// latest status matters) and wakes the relay's single goroutine, which hands
// it to the controller that is currently up.
//
// Lock rule: mu guards the fields below it and is never held while calling
// the controller's callback (nor anything else outside this type).
type statusRelay struct {
	mu     sync.Mutex
	latest *corev1.Node       // not yet delivered; nil when delivered
	last   *corev1.Node       // last node the provider sent (a re-registration starts from it)
	target func(*corev1.Node) // the callback of the controller that is up; nil while none is
	gen    uint64             // counts target changes

	wake chan struct{} // one slot: "something changed"
}

func newStatusRelay() *statusRelay { return &statusRelay{wake: make(chan struct{}, 1)} }

// put is the callback the provider gets. It never blocks.
func (r *statusRelay) put(n *corev1.Node) {
	r.mu.Lock()
	r.latest, r.last = n, n
	r.mu.Unlock()
	r.poke()
}

func (r *statusRelay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// attach makes cb (a node controller's callback, once that controller is up
// and reading) where nodes go; detach stops deliveries (the controller
// stopped). A node that arrived while none was attached waits in the mailbox.
func (r *statusRelay) attach(cb func(*corev1.Node)) { r.setTarget(cb) }
func (r *statusRelay) detach()                      { r.setTarget(nil) }

func (r *statusRelay) setTarget(cb func(*corev1.Node)) {
	r.mu.Lock()
	r.target = cb
	r.gen++
	r.mu.Unlock()
	r.poke()
}

// lastNode is the last node the provider sent, nil if none yet.
func (r *statusRelay) lastNode() *corev1.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// run forwards nodes until ctx (the node's) ends.
func (r *statusRelay) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			n, cb, gen := r.latest, r.target, r.gen
			if n == nil || cb == nil {
				r.mu.Unlock()
				break
			}
			r.latest = nil
			r.mu.Unlock()
			if !r.deliver(ctx, cb, gen, n) {
				return
			}
		}
	}
}

// deliver calls cb(n) and waits for it, but no longer than ctx or the
// controller it belongs to lives. The call runs on its own goroutine because
// virtual-kubelet's send cannot be cancelled: when the controller stops with
// a node still in its channel, that goroutine stays blocked for good. It is
// at most one goroutine and one node per controller instance (deliveries go
// one at a time and only to a controller that is up, which stops only when
// the node's ctx ends or it fails), not one per status change. It reports
// whether ctx is still live.
func (r *statusRelay) deliver(ctx context.Context, cb func(*corev1.Node), gen uint64, n *corev1.Node) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		cb(n)
	}()
	for {
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		case <-r.wake:
			r.mu.Lock()
			changed := r.gen != gen
			if changed && r.latest == nil {
				r.latest = n // the next controller gets it
			}
			r.mu.Unlock()
			if changed {
				return true
			}
			// A newer node: run picks it up once this one is through.
		}
	}
}

// controllerProvider is the NodeProvider one node-controller instance gets:
// Ping is the provider's; the controller's status callback is kept for
// attach once the controller is up (never called before: its channel is not
// read until registration succeeded).
type controllerProvider struct {
	node.NodeProvider
	mu sync.Mutex
	cb func(*corev1.Node)
}

func (p *controllerProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	p.cb = cb
	p.mu.Unlock()
}

func (p *controllerProvider) callback() func(*corev1.Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cb
}
