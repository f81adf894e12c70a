// Package vknode assembles a virtual node from virtual-kubelet's node
// library the way nodeutil.NewNode does, with one difference that matters at
// scale: the pod controller's work queues get a rate limit sized for
// thousands of pods. nodeutil leaves them at client-go's controller default
// (10 items/s after a burst of 100), which alone makes a 1,000-pod burst take
// 100 s and a bridge restart with 5,000 pods take over 8 minutes to publish
// its statuses, whatever the provider does.
package vknode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Config is what a node needs besides its provider.
type Config struct {
	Client        kubernetes.Interface
	EventRecorder record.EventRecorder
	Workers       int           // pod sync workers
	ResyncPeriod  time.Duration // informer full resync
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
}

// Node is one running virtual node.
type Node struct {
	cfg   Config
	nc    *node.NodeController
	pc    *node.PodController
	pods  informers.SharedInformerFactory
	other informers.SharedInformerFactory
	ready chan struct{}
	done  chan struct{}
	err   error
}

func (c Config) limiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 1000*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(c.QueueQPS), c.QueueBurst)},
	)
}

// New builds a node named name whose provider newProvider makes from the
// node's listers and node spec, as nodeutil.NewProviderFunc does.
func New(name string, newProvider nodeutil.NewProviderFunc, cfg Config) (*Node, error) {
	if cfg.QueueQPS <= 0 || cfg.QueueBurst <= 0 {
		return nil, errors.New("vknode: QueueQPS and QueueBurst must be positive")
	}
	spec := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"type": "virtual-kubelet", "kubernetes.io/role": "agent", "kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{Phase: corev1.NodePending},
	}
	pods := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod, nodeutil.PodInformerFilter(name))
	other := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod)
	var podInformer corev1informers.PodInformer = pods.Core().V1().Pods()
	if len(cfg.StatusAnnotations) > 0 {
		podInformer = statusAnnotationInformer{podInformer, cfg.StatusAnnotations}
	}
	secrets, configMaps, services := other.Core().V1().Secrets(), other.Core().V1().ConfigMaps(), other.Core().V1().Services()

	p, np, err := newProvider(nodeutil.ProviderConfig{
		Pods: podInformer.Lister(), ConfigMaps: configMaps.Lister(), Secrets: secrets.Lister(),
		Services: services.Lister(), Node: spec,
	})
	if err != nil {
		return nil, fmt.Errorf("creating provider: %w", err)
	}
	if np == nil {
		return nil, errors.New("vknode: the provider must report node status")
	}
	nc, err := node.NewNodeController(np, spec, cfg.Client.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(nodeutil.NodeLeaseV1Client(cfg.Client), node.DefaultLeaseDuration))
	if err != nil {
		return nil, fmt.Errorf("creating node controller: %w", err)
	}
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient: cfg.Client.CoreV1(), EventRecorder: cfg.EventRecorder, Provider: p,
		PodInformer: podInformer, SecretInformer: secrets, ConfigMapInformer: configMaps, ServiceInformer: services,
		SyncPodsFromKubernetesRateLimiter:    cfg.limiter(),
		DeletePodsFromKubernetesRateLimiter:  cfg.limiter(),
		SyncPodStatusFromProviderRateLimiter: cfg.limiter(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating pod controller: %w", err)
	}
	return &Node{cfg: cfg, nc: nc, pc: pc, pods: pods, other: other, ready: make(chan struct{}), done: make(chan struct{})}, nil
}

// Run starts the informers, the kubelet API, the pod controller and then
// the node controller (so the node registers only once pods can be served),
// and returns when either controller stops or ctx ends.
func (n *Node) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		n.err = err
		close(n.done)
	}()
	if n.cfg.TLS != nil && n.cfg.Handler != nil {
		l, err := tls.Listen("tcp", n.cfg.ListenAddr, n.cfg.TLS)
		if err != nil {
			return fmt.Errorf("kubelet API listener: %w", err)
		}
		srv := &http.Server{Handler: n.cfg.Handler, TLSConfig: n.cfg.TLS, ReadHeaderTimeout: 30 * time.Second,
			BaseContext: func(net.Listener) context.Context { return ctx }}
		go srv.Serve(l) //nolint:errcheck // closed below
		defer srv.Close()
	}
	go n.pods.Start(ctx.Done())
	go n.other.Start(ctx.Done())
	go n.pc.Run(ctx, n.cfg.Workers) //nolint:errcheck // reported through Done/Err
	defer func() { cancel(); <-n.pc.Done() }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.pc.Ready():
	case <-n.pc.Done():
		return n.pc.Err()
	}
	go n.nc.Run(ctx) //nolint:errcheck // reported through Done/Err
	defer func() { cancel(); <-n.nc.Done() }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.nc.Ready():
	case <-n.nc.Done():
		return n.nc.Err()
	}
	close(n.ready)
	select {
	case <-ctx.Done():
		return nil
	case <-n.nc.Done():
		return n.nc.Err()
	case <-n.pc.Done():
		return n.pc.Err()
	}
}

// WaitReady waits until the node is registered and serving (timeout 0: no
// limit).
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
