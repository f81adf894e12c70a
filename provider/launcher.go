package provider

import (
	"context"
	"sync/atomic"

	"k8s.io/client-go/util/workqueue"
)

// launcher starts newly admitted pods off the pod controller's sync
// workers. CreatePod used to launch under the worker: with a handful of
// workers and a LAUNCH_CONTAINER that forks on the agent (tens to hundreds of
// milliseconds on a busy host), a burst was admitted at workers/latency pods
// per second whatever else was free. Now CreatePod admits the pod and queues
// it; up to max launches run at once, each under the pod's lock as before,
// and the first status the pod controller hears is the launch's outcome, as
// it was when CreatePod launched in place.
type launcher struct {
	p       *Provider
	max     int
	queue   workqueue.TypedInterface[*podRecord]
	running atomic.Bool
}

const defaultMaxLaunches = 32

func newLauncher(p *Provider, max int) *launcher {
	if max <= 0 {
		max = defaultMaxLaunches
	}
	return &launcher{p: p, max: max, queue: workqueue.NewTyped[*podRecord]()}
}

// run serves the queue until ctx ends.
func (l *launcher) run(ctx context.Context) {
	l.running.Store(true)
	for i := 0; i < l.max; i++ {
		go func() {
			for {
				rec, quit := l.queue.Get()
				if quit {
					return
				}
				l.launch(rec)
				l.queue.Done(rec)
			}
		}()
	}
	<-ctx.Done()
	l.running.Store(false)
	l.queue.ShutDown()
}

// launch does what CreatePod did after admitting: start what may start and
// publish the outcome. A record that was deleted and dropped meanwhile has
// nothing left to do.
func (l *launcher) launch(rec *podRecord) {
	rec.mu.Lock()
	if rec.released {
		rec.mu.Unlock()
		return
	}
	l.p.advance(rec)
	l.p.finish(rec)
}
