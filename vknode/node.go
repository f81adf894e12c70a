// Package vknode assembles a virtual node from virtual-kubelet's node
// library the way nodeutil.NewNode does, with the differences that matter
// for a process serving many agents through API-server outages:
//
//   - The pod controller's work queues get a rate limit sized for thousands
//     of pods. nodeutil leaves them at client-go's controller default (10
//     items/s after a burst of 100), which alone makes a 1,000-pod burst take
//     100 s and a bridge restart with 5,000 pods take over 8 minutes to
//     publish its statuses, whatever the provider does.
//   - Registration never gives up. A node controller that fails (the API
//     server is away while it registers) is replaced by a new one after an
//     exponential back-off (Config.RetryMin up to RetryMax), for as long as
//     the node's ctx lives; each failure is logged with the node and agent.
//     virtual-kubelet controllers run once, hence a new one per attempt.
//   - The provider's node-status callback never blocks (statusRelay): the
//     provider's health loop and discovery must not hang on the API server.
//   - Secret, ConfigMap and Service informers are the process's (Shared);
//     each node keeps only its own pod informer (spec.nodeName). Informers
//     cache objects without managedFields.
//
// Invariants: everything a Node starts (informers, kubelet API server and
// its listener, the relay and registration goroutines, the controllers) is
// tied to the ctx given to Run and has stopped when Run returns, except at
// most one goroutine per node-controller instance blocked for good in
// virtual-kubelet's status send (see statusRelay.deliver). Run returns
// before ctx ends only if the pod controller stopped, which v1.13.0 does
// only when ctx ends; the caller then builds the node anew.
//
// Locks: statusRelay.mu and controllerProvider.mu guard their own fields
// only, are leaves (nothing else is locked while holding them) and are
// never held across a call out of their type.
package vknode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vk-titus/vk-titus/internal/cachetrim"
)

// Config is what a node needs besides its provider.
type Config struct {
	Client        kubernetes.Interface
	EventRecorder record.EventRecorder
	// Shared are the process's Secret, ConfigMap and Service informers
	// (required; started by the caller).
	Shared       *Shared
	Workers      int           // pod sync workers
	ResyncPeriod time.Duration // pod informer full resync
	// QueueQPS and QueueBurst bound each pod-controller queue overall
	// (per-item retries still back off exponentially).
	QueueQPS   float64
	QueueBurst int
	// StatusAnnotations are annotations the provider publishes with a pod's
	// status (the pod controller writes the provider's copy of the pod,
	// metadata included, through UpdateStatus). virtual-kubelet re-syncs a
	// pod into the provider on every annotation change, which for these is
	// the provider hearing back what it just said: a sync worker and a full
	// reflective compare of the pod per status write. An update that changes
	// nothing but status and these keys is passed to the pod controller as
	// the status update it is. The value says which changes are the
	// provider's: true any change, false only adding the key to a pod that
	// lacks it (a user's later edit of it still reaches the provider). Pods
	// being deleted are passed through untouched.
	StatusAnnotations map[string]bool
	// The kubelet API: served over TLS when TLS is set.
	ListenAddr string
	Handler    http.Handler
	TLS        *tls.Config
	// Log carries the node's fields (node, agent); virtual-kubelet's own
	// logs for this node go through it too.
	Log *logrus.Entry
	// RetryMin and RetryMax bound the back-off between registration
	// attempts and kubelet API listen attempts (defaults 1 s and 30 s).
	RetryMin, RetryMax time.Duration
}

// Node is one running virtual node.
type Node struct {
	cfg   Config
	log   *logrus.Entry
	spec  *corev1.Node // as the provider configured it (registration base)
	np    node.NodeProvider
	pc    *node.PodController
	pods  informers.SharedInformerFactory
	relay *statusRelay
	sleep func(context.Context, time.Duration) bool

	readyOnce sync.Once
	ready     chan struct{}
	done      chan struct{}
	err       error
}

func (c Config) limiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 1000*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(c.QueueQPS), c.QueueBurst)},
	)
}

func (c Config) backoff() Backoff {
	b := Backoff{Min: c.RetryMin, Max: c.RetryMax}
	if b.Min <= 0 {
		b.Min = time.Second
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	return b
}

// New builds a node named name whose provider newProvider makes from the
// node's listers and node spec, as nodeutil.NewProviderFunc does. It talks
// to no API server: its errors are configuration errors.
func New(name string, newProvider nodeutil.NewProviderFunc, cfg Config) (*Node, error) {
	if cfg.QueueQPS <= 0 || cfg.QueueBurst <= 0 {
		return nil, errors.New("vknode: QueueQPS and QueueBurst must be positive")
	}
	if cfg.Shared == nil {
		return nil, errors.New("vknode: Config.Shared is required")
	}
	if cfg.ResyncPeriod <= 0 {
		return nil, errors.New("vknode: ResyncPeriod must be positive")
	}
	log := cfg.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	log = log.WithField("node", name)
	spec := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"type": "virtual-kubelet", "kubernetes.io/role": "agent", "kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{Phase: corev1.NodePending},
	}
	pods := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod,
		nodeutil.PodInformerFilter(name), informers.WithTransform(cachetrim.StripManagedFields))
	var podInformer corev1informers.PodInformer = pods.Core().V1().Pods()
	podInformer.Informer() // a factory starts only the informers asked for before Start
	if len(cfg.StatusAnnotations) > 0 {
		podInformer = statusAnnotationInformer{podInformer, cfg.StatusAnnotations}
	}
	sh := cfg.Shared

	p, np, err := newProvider(nodeutil.ProviderConfig{
		Pods: podInformer.Lister(), ConfigMaps: sh.configMaps.Lister(), Secrets: sh.secrets.Lister(),
		Services: sh.services.Lister(), Node: spec,
	})
	if err != nil {
		return nil, fmt.Errorf("creating provider: %w", err)
	}
	if np == nil {
		return nil, errors.New("vknode: the provider must report node status")
	}
	if w, ok := p.(DeletionWatcher); ok {
		if _, err := podInformer.Informer().AddEventHandler(deletionHandler{w}); err != nil {
			return nil, fmt.Errorf("pod informer: %w", err)
		}
	}
	n := &Node{cfg: cfg, log: log, spec: spec, np: np, pods: pods, relay: newStatusRelay(), sleep: Sleep,
		ready: make(chan struct{}), done: make(chan struct{})}
	// Node controllers are made per registration attempt; one now checks
	// their options, so that a bad one is a startup error, not a retry loop.
	if _, err := n.newNodeController(&controllerProvider{NodeProvider: np}); err != nil {
		return nil, fmt.Errorf("creating node controller: %w", err)
	}
	n.pc, err = node.NewPodController(node.PodControllerConfig{
		PodClient: cfg.Client.CoreV1(), EventRecorder: cfg.EventRecorder, Provider: p,
		PodInformer: podInformer, SecretInformer: sh.secrets, ConfigMapInformer: sh.configMaps, ServiceInformer: sh.services,
		SyncPodsFromKubernetesRateLimiter:    cfg.limiter(),
		DeletePodsFromKubernetesRateLimiter:  cfg.limiter(),
		SyncPodStatusFromProviderRateLimiter: cfg.limiter(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating pod controller: %w", err)
	}
	return n, nil
}

func (n *Node) newNodeController(np node.NodeProvider) (*node.NodeController, error) {
	return node.NewNodeController(np, n.registrationNode(), n.cfg.Client.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(nodeutil.NodeLeaseV1Client(n.cfg.Client), node.DefaultLeaseDuration))
}

// registrationNode is the node an attempt registers: the spec, with the
// status, labels and annotations the provider last reported (a node
// controller starts from its spec; without this, one that replaced a failed
// one would publish the status of when the process started until the
// provider's next change).
func (n *Node) registrationNode() *corev1.Node {
	spec := n.spec.DeepCopy()
	if last := n.relay.lastNode(); last != nil {
		last = last.DeepCopy()
		spec.Status, spec.Labels, spec.Annotations = last.Status, last.Labels, last.Annotations
	}
	return spec
}

// Run starts the informers, the kubelet API, the pod controller and then
// registers the node (so that it registers only once pods can be served),
// and keeps it registered until ctx ends. API-server failures are retried,
// never returned: Run returns nil when ctx ends, or an error if the pod
// controller stopped on its own (see the package doc). Everything it
// started has stopped when it returns.
func (n *Node) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	ctx = vklog.WithLogger(ctx, vklogrus.FromLogrus(n.log))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		n.pods.Shutdown() // waits for the pod informer's goroutines
		n.err = err
		close(n.done)
	}()
	goWG := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	if n.cfg.TLS != nil && n.cfg.Handler != nil {
		goWG(func() { n.serveAPI(ctx) })
	}
	n.pods.Start(ctx.Done())
	n.np.NotifyNodeStatus(ctx, n.relay.put)
	goWG(func() { n.relay.run(ctx) })

	// Pods reference Secrets, ConfigMaps and Services: syncing pods before
	// those caches are would fail (and retry) them for nothing. While the API
	// server is away this waits (the informers retry), it does not fail.
	if !cache.WaitForCacheSync(ctx.Done(), n.cfg.Shared.synced()...) {
		return nil
	}
	goWG(func() { _ = n.pc.Run(ctx, n.cfg.Workers) }) // reported through Done/Err
	select {
	case <-ctx.Done():
		return nil
	case <-n.pc.Ready():
	case <-n.pc.Done():
		return podControllerStopped(n.pc.Err())
	}
	goWG(func() { n.register(ctx) })
	select {
	case <-ctx.Done():
		return nil
	case <-n.pc.Done():
		return podControllerStopped(n.pc.Err())
	}
}

func podControllerStopped(err error) error {
	if err == nil {
		err = errors.New("no error")
	}
	return fmt.Errorf("pod controller stopped: %w", err)
}

// register keeps the node registered until ctx ends: a node controller
// runs until it fails, then a new one replaces it after a back-off.
func (n *Node) register(ctx context.Context) {
	r := retryLoop{backoff: n.cfg.backoff(), sleep: n.sleep, failed: func(err error, d time.Duration) {
		n.log.WithError(err).WithField("retryIn", d).Error("node registration or status failed: retrying")
	}}
	r.run(ctx, n.runNodeController)
}

// runNodeController runs one node controller until it stops (its error) or
// ctx ends (nil).
func (n *Node) runNodeController(ctx context.Context, up func()) error {
	// Its own ctx: a controller that fails to register returns without
	// stopping the ping loop it started, which would otherwise live as long
	// as the node, one more per attempt.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	np := &controllerProvider{NodeProvider: n.np}
	nc, err := n.newNodeController(np)
	if err != nil {
		return err
	}
	go nc.Run(ctx) //nolint:errcheck // reported through Done/Err
	stopped := func() error {
		if err := nc.Err(); err != nil {
			return err
		}
		return errors.New("node controller stopped")
	}
	select {
	case <-ctx.Done():
		<-nc.Done()
		return nil
	case <-nc.Done():
		return stopped()
	case <-nc.Ready():
	}
	up()
	n.relay.attach(np.callback())
	defer n.relay.detach()
	n.readyOnce.Do(func() {
		n.log.Info("node registered")
		close(n.ready)
	})
	select {
	case <-ctx.Done():
		cancel()
		<-nc.Done()
		return nil
	case <-nc.Done():
		return stopped()
	}
}

// serveAPI serves the kubelet API until ctx ends. A port that cannot be
// listened on (held by another process) is tried again after a back-off:
// the node's pods are served meanwhile, only logs and exec wait.
func (n *Node) serveAPI(ctx context.Context) {
	b := n.cfg.backoff()
	for {
		l, err := tls.Listen("tcp", n.cfg.ListenAddr, n.cfg.TLS)
		if err == nil {
			srv := &http.Server{Handler: n.cfg.Handler, TLSConfig: n.cfg.TLS, ReadHeaderTimeout: 30 * time.Second,
				BaseContext: func(net.Listener) context.Context { return ctx }}
			stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
			err = srv.Serve(l) // closes l when it returns
			stop()
			if ctx.Err() != nil {
				return
			}
		}
		d := b.Next()
		n.log.WithError(err).WithFields(logrus.Fields{"addr": n.cfg.ListenAddr, "retryIn": d}).Error("kubelet API not served: retrying")
		if !n.sleep(ctx, d) {
			return
		}
	}
}

// WaitReady waits until the node is registered and serving (timeout 0: no
// limit). Its error says only that the wait ended: registration goes on
// until the node's ctx ends.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	select {
	case <-n.ready:
		return nil
	case <-n.done:
		return fmt.Errorf("node stopped before it was ready: %w", n.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Name is the node's name.
func (n *Node) Name() string { return n.spec.Name }

// Done is closed when Run has returned and everything it started stopped.
func (n *Node) Done() <-chan struct{} { return n.done }
