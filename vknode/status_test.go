package vknode

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func nodeVersion(v string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", ResourceVersion: v}}
}

// putReturns fails the test if put blocks.
func putReturns(t *testing.T, r *statusRelay, n *corev1.Node) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		r.put(n)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("put(%s) blocked", n.ResourceVersion)
	}
}

func TestStatusRelayNeverBlocksAndDeliversLatest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newStatusRelay()
	stopped := make(chan struct{})
	go func() {
		r.run(ctx)
		close(stopped)
	}()

	// Before a controller is up, nodes wait in the mailbox.
	putReturns(t, r, nodeVersion("0"))
	gate := make(chan struct{})
	entered := make(chan struct{}, 10)
	got := make(chan string, 10)
	r.attach(func(n *corev1.Node) {
		entered <- struct{}{}
		<-gate // the node controller is stuck in a status update
		got <- n.ResourceVersion
	})
	select {
	case <-entered:
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting node was not delivered on attach")
	}
	// While the controller's callback blocks, the provider's calls do not.
	for _, v := range []string{"1", "2", "3"} {
		putReturns(t, r, nodeVersion(v))
	}
	if last := r.lastNode(); last.ResourceVersion != "3" {
		t.Fatalf("lastNode %s, want 3", last.ResourceVersion)
	}
	close(gate)
	// "0" was being delivered when the callback blocked; of 1..3 only the
	// latest is left to deliver.
	want := []string{"0", "3"}
	for _, w := range want {
		select {
		case v := <-got:
			if v != w {
				t.Fatalf("delivered %s, want %s", v, w)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s not delivered", w)
		}
	}
	select {
	case v := <-got:
		t.Fatalf("extra delivery %s", v)
	case <-time.After(100 * time.Millisecond):
	}

	// A callback blocked for good does not keep the relay from stopping
	// with the node's ctx.
	r.attach(func(*corev1.Node) { select {} })
	putReturns(t, r, nodeVersion("4"))
	putReturns(t, r, nodeVersion("5"))
	cancel()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("relay did not stop with ctx")
	}
}

// A controller that stops while a delivery is blocked in it is abandoned;
// the next controller gets the node.
func TestStatusRelayNewTargetGetsPending(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newStatusRelay()
	go r.run(ctx)
	r.attach(func(*corev1.Node) { select {} })
	putReturns(t, r, nodeVersion("1"))
	time.Sleep(50 * time.Millisecond) // let the delivery start and block
	r.detach()
	got := make(chan string, 1)
	r.attach(func(n *corev1.Node) { got <- n.ResourceVersion })
	select {
	case v := <-got:
		if v != "1" {
			t.Fatalf("got %s, want 1", v)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the new controller got nothing")
	}
}
