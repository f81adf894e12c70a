package vknode

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// statusAnnotationInformer is the pod informer the pod controller gets when
// Config.StatusAnnotations is set: its event handlers see an update whose
// only metadata change is in those annotations as a status-only update.
type statusAnnotationInformer struct {
	corev1informers.PodInformer
	keys map[string]bool
}

func (i statusAnnotationInformer) Informer() cache.SharedIndexInformer {
	return statusAnnotationSharedInformer{i.PodInformer.Informer(), i.keys}
}

type statusAnnotationSharedInformer struct {
	cache.SharedIndexInformer
	keys map[string]bool
}

func (i statusAnnotationSharedInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandler(statusAnnotationHandler{h, i.keys})
}

func (i statusAnnotationSharedInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, d time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandlerWithResyncPeriod(statusAnnotationHandler{h, i.keys}, d)
}

func (i statusAnnotationSharedInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, o cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandlerWithOptions(statusAnnotationHandler{h, i.keys}, o)
}

type statusAnnotationHandler struct {
	cache.ResourceEventHandler
	keys map[string]bool
}

// OnUpdate hands the pod controller an old pod whose status annotations are
// the new pod's when nothing else in the annotations changed, so that the
// update compares as the status update it is. Neither object is modified
// (both belong to the informer's cache).
func (h statusAnnotationHandler) OnUpdate(oldObj, newObj any) {
	oldPod, ok1 := oldObj.(*corev1.Pod)
	newPod, ok2 := newObj.(*corev1.Pod)
	if ok1 && ok2 {
		if merged, ok := statusOnlyAnnotations(oldPod, newPod, h.keys); ok {
			o := *oldPod
			o.Annotations = merged
			oldObj = &o
		}
	}
	h.ResourceEventHandler.OnUpdate(oldObj, newObj)
}

// statusOnlyAnnotations reports whether old and new differ in annotations
// only by the provider's own changes to keys, and if so returns old's
// annotations with those changes applied (a new map).
func statusOnlyAnnotations(oldPod, newPod *corev1.Pod, keys map[string]bool) (map[string]string, bool) {
	if oldPod.DeletionTimestamp != nil || newPod.DeletionTimestamp != nil {
		return nil, false
	}
	oa, na := oldPod.Annotations, newPod.Annotations
	changed := false
	for k, nv := range na {
		ov, had := oa[k]
		if had && ov == nv {
			continue
		}
		anyChange, own := keys[k]
		if !own || (had && !anyChange) {
			return nil, false
		}
		changed = true
	}
	for k := range oa {
		if _, ok := na[k]; !ok {
			return nil, false // a removal is never the provider's
		}
	}
	if !changed {
		return nil, false
	}
	merged := make(map[string]string, len(na))
	for k, v := range na {
		merged[k] = v
	}
	return merged, true
}
