package kube

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// taskMemo holds each cached pod's task, kept by the pod informer's
// events (in order, so a deleted pod's entry cannot come back): a list
// request would otherwise rebuild every task from its pod, 10,000 of them
// at scale, while few pods change between two requests.
type taskMemo struct {
	mu sync.RWMutex
	m  map[types.UID]memoized
}

type memoized struct {
	version string
	e       taskEntry
}

func newTaskMemo() *taskMemo { return &taskMemo{m: map[types.UID]memoized{}} }

// of is taskOf(pod), from the memo when it holds this version of the pod
// (the cache is updated before its events are handled). The entry is
// shared: its maps and slices are read-only to callers.
func (c *taskMemo) of(pod *corev1.Pod) taskEntry {
	c.mu.RLock()
	m, ok := c.m[pod.UID]
	c.mu.RUnlock()
	if ok && m.version == pod.ResourceVersion {
		return m.e
	}
	return taskOf(pod)
}

func (c *taskMemo) put(pod *corev1.Pod) {
	if pod.ResourceVersion == "" { // not from an API server: no version to trust
		return
	}
	e := taskOf(pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[pod.UID] = memoized{version: pod.ResourceVersion, e: e}
}

func (c *taskMemo) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, uid)
}
