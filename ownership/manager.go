package ownership

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationinformers "k8s.io/client-go/informers/coordination/v1"
	"k8s.io/client-go/kubernetes"
	typedcoordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/vk-titus/vk-titus/internal/cachetrim"
)

// Handler is how the manager hands nodes to the caller and takes them back.
type Handler interface {
	// Serve starts serving a node this replica now holds, under fence
	// (fence.Node() names it). It is called from the manager's loop and
	// must not block: start the node in a goroutine. Every mutation for
	// the node must be gated on the fence. Stop is called once for the
	// node after Serve, before any new Serve for it.
	Serve(fence *Fence)
	// Stop stops serving node and returns once nothing acts for it any
	// more: the manager releases the lease to other replicas right after,
	// so a node still running then would act beside its new owner (its
	// fence ends when Stop returns, whatever it returns). ctx ends after
	// Config.StopTimeout. With ReasonLost the fence has already ended.
	// Calls for different nodes may run concurrently.
	Stop(ctx context.Context, node string, reason Reason) error
}

// Config configures a Manager. Durations left zero take the defaults
// given; they must satisfy RenewInterval + RetryPeriod <= RenewDeadline <
// LeaseDuration (a failed renewal is retried at least once before the
// fence ends).
type Config struct {
	// Client writes and watches the Leases. Give the manager a client of
	// its own (its own QPS and burst, sized for the acquisitions and
	// releases of a rebalance or a shutdown, a write per node moved): a
	// membership renewal queued behind pod status writes in a shared
	// client-side rate limiter would end every fence for nothing.
	Client    kubernetes.Interface
	Namespace string // of the Leases: the bridge's (required)
	// Identity names this replica: unique among the live replicas (a
	// restarted replica may reuse its identity: it then adopts its
	// predecessor's leases at once), a DNS subdomain (it is part of the
	// membership lease's name). Required.
	Identity string
	Handler  Handler  // required
	Metrics  *Metrics // nil: counted nowhere
	Log      *logrus.Entry
	Clock    clock.WithDelayedExecution // nil: the real clock

	// LeaseDuration is how long others wait, from when they observed a
	// replica's membership lease change (or a node lease's, if later),
	// before they take the nodes it holds (default 12s).
	LeaseDuration time.Duration
	// RenewDeadline is how long after the last successful membership
	// renewal (or the node's acquisition, if later) was sent a node's
	// fence ends (default 8s). LeaseDuration - RenewDeadline is the margin
	// for clock-rate skew and for a mutation issued just before the
	// deadline to land (see the package doc).
	RenewDeadline time.Duration
	// RenewInterval is how often the membership lease is renewed (default
	// 4s): one write per replica, whatever the number of nodes it holds
	// (node leases are written only when their ownership changes).
	RenewInterval time.Duration
	// RetryPeriod is the wait before a failed write is tried again
	// (default 2s).
	RetryPeriod time.Duration
	// CallTimeout bounds one API call (default RetryPeriod).
	CallTimeout time.Duration
	// Workers bounds the lease writes in flight (default 8). The
	// membership renewal and releases go before acquisitions.
	Workers int
	// StopConcurrency bounds the Handler.Stop calls running at once
	// (default 64: on shutdown every node stops).
	StopConcurrency int
	// StopTimeout bounds one Handler.Stop (default 15s).
	StopTimeout time.Duration
	// ShutdownTimeout bounds the graceful end after ctx ends (default 25s,
	// within Kubernetes' default 30s grace period); what is not released
	// then expires on its own.
	ShutdownTimeout time.Duration
}

func (c *Config) defaults() error {
	if c.Client == nil || c.Handler == nil {
		return errors.New("ownership: Config.Client and Config.Handler are required")
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("ownership: namespace %q: %v", c.Namespace, errs)
	}
	if err := validName(replicaPrefix, c.Identity); err != nil {
		return fmt.Errorf("ownership: identity: %w", err)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.LeaseDuration, 12 * time.Second}, {&c.RenewDeadline, 8 * time.Second}, {&c.RenewInterval, 4 * time.Second},
		{&c.RetryPeriod, 2 * time.Second}, {&c.StopTimeout, 15 * time.Second}, {&c.ShutdownTimeout, 25 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = c.RetryPeriod
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.StopConcurrency == 0 {
		c.StopConcurrency = 64
	}
	switch {
	case c.LeaseDuration%time.Second != 0:
		return fmt.Errorf("ownership: LeaseDuration %s is not whole seconds (a Lease counts seconds)", c.LeaseDuration)
	case c.RenewInterval <= 0 || c.RetryPeriod <= 0 || c.CallTimeout <= 0 || c.StopTimeout <= 0 || c.ShutdownTimeout <= 0:
		return errors.New("ownership: durations must be positive")
	case c.RenewInterval+c.RetryPeriod > c.RenewDeadline:
		return fmt.Errorf("ownership: RenewInterval (%s) + RetryPeriod (%s) must not exceed RenewDeadline (%s)",
			c.RenewInterval, c.RetryPeriod, c.RenewDeadline)
	case c.RenewDeadline >= c.LeaseDuration:
		return fmt.Errorf("ownership: RenewDeadline (%s) must be shorter than LeaseDuration (%s)", c.RenewDeadline, c.LeaseDuration)
	case c.Workers < 0 || c.StopConcurrency < 0:
		return errors.New("ownership: Workers and StopConcurrency must be positive")
	}
	if c.Log == nil {
		c.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return nil
}

// Manager runs this replica's side of ownership: its membership lease, the
// node leases it holds (and their fences, extended by every membership
// renewal), and the Handler calls. Create it with New, give it
// the node set with SetNodes (any time, as often as it changes) and run it
// with Run.
type Manager struct {
	cfg      Config
	log      *logrus.Entry
	clk      clock.WithDelayedExecution
	metrics  *Metrics
	w        leaseWriter
	leases   typedcoordinationv1.LeaseInterface
	informer cache.SharedIndexInformer
	started  atomic.Bool

	wake wakeup
	mu   sync.Mutex // guards in; a leaf
	in   inbox
	// Tests wait on these for quiescence: informer events handed to the
	// loop, and its own work queued or running (writes; a Handler.Stop
	// running is the caller's).
	handled atomic.Int64
	busy    atomic.Int64

	// Owned by the loop (Run's goroutine).
	core            *core
	fences          map[string]*Fence
	urgent, normal  []action // queued writes
	stops           []action // queued Handler.Stop calls
	writing, halted int      // writes and stops running
	callCtx         context.Context
}

// inbox is what the loop has not taken in yet.
type inbox struct {
	leases  map[string]observation // by Lease name: the newest only
	nodes   *[]string              // the newest SetNodes
	results []result
	expired []*Fence
}

type observation struct {
	lease *coordinationv1.Lease // nil: deleted
	at    time.Time
}

// result is an action's outcome, back to the loop.
type result struct {
	act     action
	written *coordinationv1.Lease
	err     error
	sentAt  time.Time
}

// New checks cfg and builds a Manager; it talks to no API server.
func New(cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	metrics := cfg.Metrics
	if metrics == nil {
		metrics, _ = NewMetrics(nil) // nothing registered: cannot fail
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("ownership: incarnation: %w", err)
	}
	incarnation := hex.EncodeToString(b[:])
	m := &Manager{cfg: cfg, clk: cfg.Clock, metrics: metrics,
		log:    cfg.Log.WithField("replica", cfg.Identity),
		w:      leaseWriter{namespace: cfg.Namespace, identity: cfg.Identity, incarnation: incarnation, duration: cfg.LeaseDuration},
		leases: cfg.Client.CoordinationV1().Leases(cfg.Namespace),
		// No resync: liveness is judged on the clock, a resync would only
		// replay the cache.
		informer: coordinationinformers.NewFilteredLeaseInformer(cfg.Client, cfg.Namespace, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = LabelLease }),
		wake:   wakeup{ch: make(chan struct{}, 1)},
		in:     inbox{leases: map[string]observation{}},
		core:   newCore(cfg.Identity, incarnation, timing{cfg.LeaseDuration, cfg.RenewDeadline, cfg.RenewInterval, cfg.RetryPeriod}),
		fences: map[string]*Fence{},
	}
	if err := m.informer.SetTransform(cachetrim.StripManagedFields); err != nil {
		return nil, fmt.Errorf("ownership: lease informer: %w", err)
	}
	return m, nil
}

// SetNodes sets the nodes this replica could serve: the whole set, every
// time (a static agent list once, discovery on every change). Names that
// cannot name a Lease are left out, and reported in the error; the others
// are applied.
func (m *Manager) SetNodes(nodes []string) error {
	valid := make([]string, 0, len(nodes))
	var bad []error
	for _, n := range nodes {
		if err := validName(nodePrefix, n); err != nil {
			bad = append(bad, err)
			continue
		}
		valid = append(valid, n)
	}
	m.mu.Lock()
	m.in.nodes = &valid
	m.mu.Unlock()
	m.wake.signal()
	if len(bad) > 0 {
		return fmt.Errorf("ownership: node names left out: %w", errors.Join(bad...))
	}
	return nil
}

// Run runs the manager until ctx ends, then hands every node over: the
// membership lease is deleted, every node stopped (Handler.Stop) and its
// lease released, so that other replicas take the nodes at once. It
// returns when that is done, or after Config.ShutdownTimeout with an error
// (what was not released expires on its own). Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("ownership: Run called twice")
	}
	reg, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.onLease,
		UpdateFunc: func(_, obj any) { m.onLease(obj) },
		DeleteFunc: m.onDelete,
	})
	if err != nil {
		return fmt.Errorf("ownership: lease informer: %w", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.informer.Run(stop)
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Nothing is written before every lease was seen once: a replica that
	// acted on a partial view would take nodes others hold.
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	m.log.WithFields(logrus.Fields{"namespace": m.cfg.Namespace, "incarnation": m.w.incarnation}).Info("ownership: leases synced, joining")
	return m.loop(ctx)
}

// loop is the manager's single goroutine: it takes in what came (leases,
// node set, results), lets the core plan, performs the plan (writes and
// stops run in bounded workers and come back as results) and sleeps until
// something comes or the plan's next deadline.
func (m *Manager) loop(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil // nothing written yet
	}
	m.callCtx = context.WithoutCancel(ctx) // writes outlive ctx: the shutdown's releases need them
	done := ctx.Done()
	var shutdownAt, timerAt time.Time
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := m.clk.Now()
		m.drain(now)
		if done == nil && !now.Before(shutdownAt) {
			return m.abandon()
		}
		if m.core.due(now) {
			m.perform(m.core.plan(now))
		}
		m.dispatch()
		if m.core.finished() && m.writing == 0 && m.halted == 0 && len(m.urgent)+len(m.normal)+len(m.stops) == 0 {
			m.log.Info("ownership: every node released")
			return nil
		}
		next := m.core.nextPlan()
		if done == nil && (next.IsZero() || shutdownAt.Before(next)) {
			next = shutdownAt
		}
		if !next.Equal(timerAt) {
			if timer != nil {
				timer.Stop()
			}
			timer, timerAt = nil, next
			if !next.IsZero() {
				timer = m.clk.AfterFunc(next.Sub(now), m.wake.signal)
			}
		}
		m.busy.Store(int64(m.writing + len(m.urgent) + len(m.normal) + len(m.stops)))
		m.wake.wait(done)
		if done != nil && ctx.Err() != nil {
			done = nil
			shutdownAt = m.clk.Now().Add(m.cfg.ShutdownTimeout)
			m.core.shutdown()
			m.log.WithField("nodes", len(m.fences)).Info("ownership: shutting down: stopping and releasing every node")
		}
	}
}

// abandon ends the graceful end at its timeout: every fence ends, the rest
// expires on its own.
func (m *Manager) abandon() error {
	for node, f := range m.fences {
		f.revoke(ReasonShutdown)
		delete(m.fences, node)
	}
	m.metrics.owned.Set(0)
	err := fmt.Errorf("ownership: shutdown not finished after %s: %d nodes not released (their leases expire on their own)",
		m.cfg.ShutdownTimeout, len(m.core.own))
	m.log.WithError(err).Warn("ownership: shutdown incomplete")
	return err
}

// drain takes in everything that came since the last turn.
func (m *Manager) drain(now time.Time) {
	m.mu.Lock()
	in := m.in
	m.in = inbox{leases: make(map[string]observation, len(in.leases))}
	m.mu.Unlock()
	if in.nodes != nil {
		m.core.setNodes(*in.nodes, now)
	}
	for name, o := range in.leases {
		m.core.observe(name, o.lease, o.at)
	}
	for _, r := range in.results {
		m.result(r, now)
	}
	for _, f := range in.expired {
		if m.fences[f.Node()] != f {
			continue // an earlier term's, already over
		}
		m.core.fenceExpired(f.Node())
		m.metrics.handovers.WithLabelValues("lost").Inc()
		m.log.WithField("node", f.Node()).Warn("ownership: membership lease not renewed before the deadline: node fenced")
	}
}

// perform queues what the plan says.
func (m *Manager) perform(acts []action) {
	for _, a := range acts {
		switch a.kind {
		case actRevoke:
			if f := m.fences[a.node]; f != nil && f.revoke(ReasonLost) {
				m.metrics.handovers.WithLabelValues("lost").Inc()
				m.log.WithField("node", a.node).Warn("ownership: another replica holds the node's lease: node fenced")
			}
		case actStop:
			m.stops = append(m.stops, a)
		case actAcquire, actCollect:
			m.normal = append(m.normal, a)
		default:
			m.urgent = append(m.urgent, a)
		}
	}
}

// dispatch starts queued writes and stops up to their bounds.
func (m *Manager) dispatch() {
	for m.writing < m.cfg.Workers && len(m.urgent)+len(m.normal) > 0 {
		var a action
		if len(m.urgent) > 0 {
			a, m.urgent = m.urgent[0], m.urgent[1:]
		} else {
			a, m.normal = m.normal[0], m.normal[1:]
		}
		m.writing++
		go m.write(a)
	}
	for m.halted < m.cfg.StopConcurrency && len(m.stops) > 0 {
		a := m.stops[0]
		m.stops = m.stops[1:]
		m.halted++
		go m.stop(a)
	}
}

// write performs one lease write (in a worker goroutine).
func (m *Manager) write(a action) {
	ctx, cancel := context.WithTimeout(m.callCtx, m.cfg.CallTimeout)
	defer cancel()
	sentAt := m.clk.Now()
	r := result{act: a, sentAt: sentAt}
	switch a.kind {
	case actAcquire:
		r.written, r.err = m.put(ctx, a.base, m.w.acquire(a.node, a.base, sentAt))
	case actRelease:
		r.written, r.err = m.put(ctx, a.base, m.w.release(a.base))
	case actJoin:
		r.written, r.err = m.put(ctx, a.base, m.w.member(a.base, a.hash, a.count, sentAt))
	case actLeave:
		r.written, r.err = m.put(ctx, a.base, m.w.leave(a.base, a.hash, a.count, sentAt))
	case actRemove, actDepart, actCollect:
		rv := a.base.ResourceVersion
		r.err = m.leases.Delete(ctx, a.base.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if apierrors.IsNotFound(r.err) {
			r.err = nil
		}
	}
	m.metrics.CountConflict(r.err)
	m.push(func(in *inbox) { in.results = append(in.results, r) })
}

// put creates l (no base) or updates it (conditional on base's
// resourceVersion, which l carries).
func (m *Manager) put(ctx context.Context, base, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if base == nil {
		return m.leases.Create(ctx, l, metav1.CreateOptions{})
	}
	return m.leases.Update(ctx, l, metav1.UpdateOptions{})
}

// stop runs Handler.Stop (in a worker goroutine).
func (m *Manager) stop(a action) {
	ctx, cancel := context.WithTimeout(m.callCtx, m.cfg.StopTimeout)
	defer cancel()
	err := m.cfg.Handler.Stop(ctx, a.node, a.reason)
	m.push(func(in *inbox) { in.results = append(in.results, result{act: a, err: err}) })
}

// result takes in an action's outcome.
func (m *Manager) result(r result, now time.Time) {
	a := r.act
	log := m.log.WithField("node", a.node)
	ok := r.err == nil
	if a.kind == actStop {
		m.halted--
	} else {
		m.writing--
	}
	switch a.kind {
	case actAcquire:
		m.core.acquired(a.node, a.base, r.written, ok, r.sentAt, now)
		if !ok {
			log.WithError(r.err).Info("ownership: node not acquired")
			return
		}
		prev := ""
		if a.base != nil && a.base.Spec.HolderIdentity != nil {
			prev = *a.base.Spec.HolderIdentity
		}
		f := newFence(m.callCtx, a.node, m.clk, r.sentAt.Add(m.cfg.RenewDeadline), m.fenceExpired)
		m.fences[a.node] = f
		m.metrics.handovers.WithLabelValues("acquired").Inc()
		m.metrics.owned.Set(float64(len(m.fences)))
		log.WithField("holder", prev).Info("ownership: node acquired: serving it")
		m.cfg.Handler.Serve(f)
	case actStop:
		if f := m.fences[a.node]; f != nil {
			f.revoke(a.reason)
			delete(m.fences, a.node)
			m.metrics.owned.Set(float64(len(m.fences)))
		}
		m.core.stopped(a.node)
		if !ok {
			log.WithError(r.err).WithField("reason", a.reason).Error("ownership: node did not stop cleanly")
		}
	case actRelease, actRemove:
		m.core.released(a.node, r.written, ok, now)
		if !ok {
			log.WithError(r.err).Warn("ownership: node lease not released: it expires on its own")
			break
		}
		if a.reason != ReasonLost {
			m.metrics.handovers.WithLabelValues("released").Inc()
		}
		log.WithField("reason", a.reason).Info("ownership: node released")
	case actJoin, actLeave:
		if a.kind == actJoin {
			m.core.joined(r.written, ok, r.sentAt, now)
		} else {
			m.core.left(r.written, ok, r.sentAt, now)
		}
		if ok {
			// Every node lease lives as long as the membership lease, so
			// its renewal extends every fence (never shortening one that
			// a later acquisition started).
			deadline := r.sentAt.Add(m.cfg.RenewDeadline)
			for node, f := range m.fences {
				if !f.extend(deadline, now) {
					m.core.fenceExpired(node) // renewed too late: its timer reports the loss
				}
			}
		} else if apierrors.IsConflict(r.err) {
			log.WithError(r.err).Error("ownership: membership lease changed under this replica: is another process using its identity?")
		} else if !ok {
			log.WithError(r.err).Warn("ownership: membership lease not written: retrying (the fences end at the renew deadline)")
		}
	case actDepart:
		m.core.departed()
		if !ok {
			log.WithError(r.err).Warn("ownership: membership lease not deleted: it expires on its own")
		}
	case actCollect:
		m.core.collected(a, ok, now)
	}
}

// fenceExpired is every fence's timer callback: it tells the loop.
func (m *Manager) fenceExpired(f *Fence) {
	m.push(func(in *inbox) { in.expired = append(in.expired, f) })
}

// push hands something to the loop.
func (m *Manager) push(f func(*inbox)) {
	m.mu.Lock()
	f(&m.in)
	m.mu.Unlock()
	m.wake.signal()
}

func (m *Manager) onLease(obj any) {
	if l, ok := obj.(*coordinationv1.Lease); ok {
		m.observe(l.Name, l)
	}
}

func (m *Manager) onDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if l, ok := obj.(*coordinationv1.Lease); ok {
		m.observe(l.Name, nil)
	}
}

// observe hands an informer event to the loop, stamped with the local time
// it was seen (the base of every expiry this replica judges).
func (m *Manager) observe(name string, l *coordinationv1.Lease) {
	at := m.clk.Now()
	m.push(func(in *inbox) { in.leases[name] = observation{lease: l, at: at} })
	m.handled.Add(1)
}

// idle reports that the loop waits with nothing queued, running or come in
// (tests step their fake clock only then).
func (m *Manager) idle() bool { return m.busy.Load() == 0 && m.wake.idle() }

// wakeup wakes the loop. Lock rule: mu guards signaled and waiting only, a
// leaf (signal is called from fake-clock timer functions, under the fake
// clock's lock).
type wakeup struct {
	ch       chan struct{} // capacity 1
	mu       sync.Mutex
	signaled bool // a signal the loop has not woken for yet
	waiting  bool
}

func (w *wakeup) signal() {
	w.mu.Lock()
	w.signaled = true
	w.mu.Unlock()
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// wait returns after a signal (at once if one came since the last wait) or
// once done is closed (nil: never).
func (w *wakeup) wait(done <-chan struct{}) {
	w.mu.Lock()
	if w.signaled {
		w.signaled = false
		w.mu.Unlock()
		select {
		case <-w.ch:
		default:
		}
		return
	}
	w.waiting = true
	w.mu.Unlock()
	select {
	case <-w.ch:
	case <-done:
	}
	w.mu.Lock()
	w.waiting, w.signaled = false, false
	w.mu.Unlock()
}

func (w *wakeup) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting && !w.signaled
}
