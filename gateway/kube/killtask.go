package kube

import (
	"context"
	"math"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// KillTask deletes the task's pod, gracefully. Its controller replaces it,
// unless shrink: then the pod is first marked the cheapest to delete and
// the Deployment lowered by one, so that the ReplicaSet, should it act
// before the deletion lands, removes this pod and no other.
func (b *Backend) KillTask(ctx context.Context, id string, shrink bool) error {
	pod := b.podByTaskID(id)
	if pod == nil {
		if _, ok := b.finished.get(id); ok {
			return conflictf("task %s has already finished", id)
		}
		return legacyapi.NotFound("task", id)
	}
	if podEnded(pod) {
		return conflictf("task %s has already finished", id)
	}
	if shrink {
		if err := b.shrinkFor(ctx, id, pod); err != nil {
			return err
		}
	}
	b.killing.add(id)
	err := b.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone already, or the name is another pod's now: this one ended
		// before the kill, for its own reasons.
		b.killing.take(id)
	case err != nil:
		b.killing.take(id)
		return apiError(err, "delete pod %s/%s of task %s", pod.Namespace, pod.Name, id)
	}
	b.await(ctx, id, func() bool {
		if p := b.podByTaskID(id); p != nil {
			return p.DeletionTimestamp != nil
		}
		_, remembered := b.finished.get(id)
		return remembered
	})
	return nil
}

// shrinkFor lowers the service job's capacity by one for pod's kill.
func (b *Backend) shrinkFor(ctx context.Context, id string, pod *corev1.Pod) error {
	jobID := pod.Labels[LabelJobID]
	o, ok := b.lookupJob(jobID)
	if !ok || o.service == nil {
		return &legacyapi.FieldError{Field: "shrink", Msg: "only a service job's task can be killed with shrink"}
	}
	// Checked before marking the pod, so a refused shrink leaves no trace;
	// checked again on the fresh object when writing.
	if err := checkShrink(jobID, o.service); err != nil {
		return err
	}
	patch := `{"metadata":{"annotations":{"` + corev1.PodDeletionCost + `":"` + strconv.Itoa(math.MinInt32) + `"}}}`
	if _, err := b.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return apiError(err, "mark pod %s/%s of task %s for deletion", pod.Namespace, pod.Name, id)
	}
	return b.updateService(ctx, o, func(d *appsv1.Deployment) error {
		if err := checkShrink(jobID, d); err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To(ptr.Deref(d.Spec.Replicas, 0) - 1)
		return nil
	})
}

func checkShrink(jobID string, d *appsv1.Deployment) error {
	if err := checkAlive(jobID, d); err != nil {
		return err
	}
	floor := annotationU32(d.Annotations, AnnotationCapacityMin)
	if desired := ptr.Deref(d.Spec.Replicas, 0); desired <= int32(floor) {
		return conflictf("job %s: desired %d cannot shrink below min %d", jobID, desired, floor)
	}
	return nil
}

// idSet is a set of ids safe for concurrent use.
type idSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func newIDSet() *idSet { return &idSet{m: map[string]struct{}{}} }

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = struct{}{}
}

// take removes id and tells whether it was there.
func (s *idSet) take(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	delete(s.m, id)
	return ok
}
