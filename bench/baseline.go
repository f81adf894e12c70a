// Package bench is the code behind `make bench` (bench/cmd/vk-bench): it
// drives the local stack (scripts/stack.sh) through the scenarios of issue #7
// and compares vk-titus with a baseline virtual node that does nothing but
// mark pods Running, run by virtual-kubelet's own node library.
package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/vk-titus/vk-titus/vknode"
)

// BaselineOptions configure the baseline node. QPS, Burst and Workers must be
// vk-titus's (--kube-api-qps 200, --kube-api-burst 400, --pod-sync-workers
// 10), so that the comparison measures the provider and not the client.
type BaselineOptions struct {
	Kubeconfig string
	NodeName   string
	QPS        float32
	Burst      int
	Workers    int
	// QueueQPS, when > 0, builds the node with vk-titus's vknode (pod
	// controller queues at QueueQPS, burst 2×) instead of nodeutil, whose
	// queues start 10 pods/s after a burst of 100: the providers are then
	// compared with the same node plumbing.
	QueueQPS float64
}

// RunBaseline registers the baseline node and serves its pods until ctx ends.
func RunBaseline(ctx context.Context, o BaselineOptions) error {
	logger := logrus.New()
	logger.SetLevel(logrus.InfoLevel)
	vklog.L = vklogrus.FromLogrus(logrus.NewEntry(logger))
	ctx = vklog.WithLogger(ctx, vklog.L)

	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	cfg.UserAgent = "vk-baseline"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	p := &mockProvider{pods: map[string]*corev1.Pod{}, notify: func(*corev1.Pod) {}}
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		n := pc.Node
		n.Labels["type"] = "virtual-kubelet"
		n.Labels[corev1.LabelOSStable] = "linux"
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("1000"),
			corev1.ResourceMemory: resource.MustParse("1000Gi"),
			corev1.ResourcePods:   resource.MustParse("20000"),
		}
		n.Status.Capacity, n.Status.Allocatable = capacity, capacity.DeepCopy()
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		n.Status.NodeInfo.OperatingSystem = "linux"
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{
			Key: "virtual-kubelet.io/provider", Value: "baseline", Effect: corev1.TaintEffectNoSchedule})
		if o.QueueQPS <= 0 {
			return p, nil, nil // nodeutil's naive node provider marks the node Ready
		}
		now := metav1.Now()
		n.Status.Phase = corev1.NodeRunning
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
		return p, node.NewNaiveNodeProvider(), nil
	}
	if o.QueueQPS > 0 {
		// The process's Secret, ConfigMap and Service informers, as vk-titus
		// shares them between its nodes.
		shared := vknode.NewShared(client, time.Minute)
		shared.Start(ctx.Done())
		defer shared.Shutdown()
		n, err := vknode.New(o.NodeName, newProvider, vknode.Config{Client: client, Workers: o.Workers,
			ResyncPeriod: time.Minute, QueueQPS: o.QueueQPS, QueueBurst: int(2 * o.QueueQPS),
			EventRecorder: eventRecorder(ctx, client, o.NodeName), Shared: shared})
		if err != nil {
			return err
		}
		return n.Run(ctx)
	}
	n, err := nodeutil.NewNode(o.NodeName, newProvider, nodeutil.WithClient(client),
		func(c *nodeutil.NodeConfig) error {
			c.NumWorkers = o.Workers
			c.InformerResyncPeriod = time.Minute
			c.HTTPListenAddr = "127.0.0.1:0" // no TLS config: nodeutil serves nothing
			return nil
		})
	if err != nil {
		return err
	}
	go func() {
		if err := n.WaitReady(ctx, 0); err == nil {
			logger.Info("node ready")
		}
	}()
	return n.Run(ctx)
}

// eventRecorder is the recorder nodeutil makes when given none.
func eventRecorder(ctx context.Context, client kubernetes.Interface, name string) record.EventRecorder {
	eb := record.NewBroadcaster()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(corev1.NamespaceAll)})
	go func() { <-ctx.Done(); eb.Shutdown() }()
	return eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: name + "/pod-controller"})
}

// mockProvider is virtual-kubelet's mock provider reduced to what matters
// here, with a mutex (the mock has none but is called from several workers):
// a pod is Running the moment it is created, deleted the moment it is
// deleted, and each change is pushed at once through the PodNotifier.
type mockProvider struct {
	mu     sync.Mutex
	pods   map[string]*corev1.Pod
	notify func(*corev1.Pod)
}

var (
	_ nodeutil.Provider = (*mockProvider)(nil)
	_ node.PodNotifier  = (*mockProvider)(nil)
)

func (p *mockProvider) CreatePod(_ context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, HostIP: "127.0.0.1", PodIP: "127.0.0.1", StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		},
	}
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	p.mu.Lock()
	p.pods[pod.Namespace+"/"+pod.Name] = pod
	cb := p.notify
	p.mu.Unlock()
	cb(pod.DeepCopy())
	return nil
}

func (p *mockProvider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.pods[pod.Namespace+"/"+pod.Name]; ok {
		pod = pod.DeepCopy()
		pod.Status = old.Status
		p.pods[pod.Namespace+"/"+pod.Name] = pod
	}
	return nil
}

func (p *mockProvider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	key := pod.Namespace + "/" + pod.Name
	p.mu.Lock()
	old, ok := p.pods[key]
	delete(p.pods, key)
	cb := p.notify
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFound("pod not found")
	}
	pod = pod.DeepCopy()
	pod.Status = *old.Status.DeepCopy()
	now := metav1.Now()
	pod.Status.Phase, pod.Status.Reason = corev1.PodSucceeded, "BaselinePodDeleted"
	for i := range pod.Status.ContainerStatuses {
		cs := &pod.Status.ContainerStatuses[i]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready = false
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: "BaselineContainerDeleted", StartedAt: started, FinishedAt: now}}
	}
	cb(pod)
	return nil
}

func (p *mockProvider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pod, ok := p.pods[namespace+"/"+name]; ok {
		return pod.DeepCopy(), nil
	}
	return nil, errdefs.NotFoundf("pod %s/%s is not known to the provider", namespace, name)
}

func (p *mockProvider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *mockProvider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.DeepCopy())
	}
	return out, nil
}

func (p *mockProvider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

var errUnsupported = errdefs.NotFound("not supported by the baseline provider")

func (p *mockProvider) GetContainerLogs(context.Context, string, string, string, api.ContainerLogOpts) (io.ReadCloser, error) {
	return nil, errUnsupported
}

func (p *mockProvider) RunInContainer(context.Context, string, string, string, []string, api.AttachIO) error {
	return errUnsupported
}

func (p *mockProvider) AttachToContainer(context.Context, string, string, string, api.AttachIO) error {
	return errUnsupported
}

func (p *mockProvider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	return nil, errUnsupported
}

func (p *mockProvider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, errUnsupported
}

func (p *mockProvider) PortForward(context.Context, string, string, int32, io.ReadWriteCloser) error {
	return errUnsupported
}
