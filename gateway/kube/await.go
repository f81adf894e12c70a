package kube

import (
	"context"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// notifier wakes everyone waiting for the caches to change.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

// next is closed at the next change.
func (n *notifier) next() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// await returns once seen holds for the caches, so a client reads back
// what it has just written: reads answer from the caches. The write has
// succeeded either way, so running out of CacheWait (or of ctx) is only
// logged.
func (b *Backend) await(ctx context.Context, what string, seen func() bool) {
	timeout := time.NewTimer(b.cfg.CacheWait)
	defer timeout.Stop()
	for {
		changed := b.changed.next() // before the check, or a change in between is missed
		if seen() {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			b.log.WithField("object", what).Warn("cache has not shown a write yet; a read may not see it")
			return
		case <-ctx.Done():
			return
		}
	}
}

// awaitVersion waits until inf's cache holds obj at its version or later,
// or no longer holds it.
func (b *Backend) awaitVersion(ctx context.Context, inf cache.SharedIndexInformer, obj metav1.Object) {
	key := obj.GetNamespace() + "/" + obj.GetName()
	b.await(ctx, key, func() bool {
		cur, ok, _ := inf.GetStore().GetByKey(key)
		if !ok {
			return true
		}
		m, err := metaOf(cur)
		return err == nil && notOlder(m.GetResourceVersion(), obj.GetResourceVersion())
	})
}

// notOlder compares resource versions. They are opaque by contract but
// etcd revisions in fact; where one is not a number only equality counts.
func notOlder(have, want string) bool {
	if have == want {
		return true
	}
	h, err1 := strconv.ParseUint(have, 10, 64)
	w, err2 := strconv.ParseUint(want, 10, 64)
	return err1 == nil && err2 == nil && h >= w
}
