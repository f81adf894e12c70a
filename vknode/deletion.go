package vknode

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// DeletionWatcher is implemented by a provider that must hear of every pod
// of its node being deleted. virtual-kubelet calls DeletePod only for a pod
// that still runs; one that has stopped it deletes from the API itself, so a
// provider that keeps the pod object (a finalizer) until it has cleaned up
// learns of the deletion only here. PodDeleting must not block: it runs on
// the pod informer's handler goroutine.
type DeletionWatcher interface {
	PodDeleting(pod *corev1.Pod)
}

// deletionHandler hands the watcher every pod of the node that carries a
// deletionTimestamp, as it is listed and on each update after.
type deletionHandler struct{ w DeletionWatcher }

func (h deletionHandler) OnAdd(obj any, _ bool) { h.seen(obj) }

func (h deletionHandler) OnUpdate(_, newObj any) { h.seen(newObj) }

func (h deletionHandler) OnDelete(any) {}

func (h deletionHandler) seen(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionTimestamp != nil {
		h.w.PodDeleting(pod)
	}
}

var _ cache.ResourceEventHandler = deletionHandler{}
