package vknode

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

// fakeProvider is a provider with no pods whose node-status calls are the
// test's to make.
type fakeProvider struct {
	nodeutil.Provider // the kubelet API's methods: not called here
	mu                sync.Mutex
	cb                func(*corev1.Node)
}

func (*fakeProvider) CreatePod(context.Context, *corev1.Pod) error { return nil }
func (*fakeProvider) UpdatePod(context.Context, *corev1.Pod) error { return nil }
func (*fakeProvider) DeletePod(context.Context, *corev1.Pod) error { return nil }
func (*fakeProvider) GetPod(context.Context, string, string) (*corev1.Pod, error) {
	return nil, errors.New("not found")
}
func (*fakeProvider) GetPodStatus(context.Context, string, string) (*corev1.PodStatus, error) {
	return nil, errors.New("not found")
}
func (*fakeProvider) GetPods(context.Context) ([]*corev1.Pod, error) { return nil, nil }
func (*fakeProvider) Ping(ctx context.Context) error                 { return ctx.Err() }
func (p *fakeProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	p.cb = cb
	p.mu.Unlock()
}

// The API server refuses the node's registration a few times: the node
// keeps trying (Run does not return), registers, and Run stops everything
// when ctx ends.
func TestNodeRegistrationRetries(t *testing.T) {
	client := fake.NewSimpleClientset()
	var creates atomic.Int32
	const failures = 3
	client.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if creates.Add(1) <= failures {
			return true, nil, errors.New("apiserver away")
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shared := NewShared(client, time.Minute)
	shared.Start(ctx.Done())
	defer shared.Shutdown()

	fp := &fakeProvider{}
	n, err := New("n1", func(nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		return fp, fp, nil
	}, Config{Client: client, EventRecorder: record.NewFakeRecorder(100), Shared: shared, Workers: 1,
		ResyncPeriod: time.Minute, QueueQPS: 100, QueueBurst: 100, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	if err := n.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	if c := creates.Load(); c != failures+1 {
		t.Fatalf("%d creates, want %d", c, failures+1)
	}
	// The provider's status callback returns however busy the controller is.
	fp.mu.Lock()
	cb := fp.cb
	fp.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for range 100 {
			cb(&corev1.Node{})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the provider's node-status callback blocked")
	}
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	<-n.Done()
}
