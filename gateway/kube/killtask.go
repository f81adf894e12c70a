package kube

import (
	"context"
	"fmt"
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
// unless k.Shrink: then the pod is first marked the cheapest to delete and
// the Deployment lowered by one (legacyapi.Shrink), so that the
// ReplicaSet, should it act before the deletion lands, removes this pod
// and no other. A pod already ended or being deleted is NotFound, as the
// Backend contract has it.
func (b *Backend) KillTask(ctx context.Context, id string, k legacyapi.TaskKill) error {
	pod := b.podByTaskID(id)
	if pod == nil {
		if _, ok := b.finished.get(id); ok {
			return fmt.Errorf("task %s has finished: %w", id, legacyapi.ErrNotFound)
		}
		return legacyapi.NotFound("task", id)
	}
	if podEnded(pod) || pod.DeletionTimestamp != nil {
		return fmt.Errorf("task %s has finished or is being killed: %w", id, legacyapi.ErrNotFound)
	}
	if k.Shrink {
		if err := b.shrinkFor(ctx, id, pod, k.PreventMinSizeUpdate); err != nil {
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
func (b *Backend) shrinkFor(ctx context.Context, id string, pod *corev1.Pod, preventMinSizeUpdate bool) error {
	jobID := pod.Labels[LabelJobID]
	o, ok := b.lookupJob(jobID)
	if !ok || o.service == nil {
		return &legacyapi.FieldError{Field: "shrink", Msg: "only a service job's task can be killed with shrink"}
	}
	// Checked before marking the pod, so a refused shrink leaves no trace;
	// checked again on the fresh object when writing.
	if _, err := b.shrunk(jobObject{id: jobID, meta: o.meta, service: o.service}, preventMinSizeUpdate); err != nil {
		return err
	}
	patch := `{"metadata":{"annotations":{"` + corev1.PodDeletionCost + `":"` + strconv.Itoa(math.MinInt32) + `"}}}`
	if _, err := b.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return apiError(err, "mark pod %s/%s of task %s for deletion", pod.Namespace, pod.Name, id)
	}
	return b.updateService(ctx, o, func(d *appsv1.Deployment) error {
		c, err := b.shrunk(jobObject{id: jobID, meta: &d.ObjectMeta, service: d}, preventMinSizeUpdate)
		if err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To(int32(c.Desired))
		setAnnotation(d, AnnotationCapacityMin, strconv.FormatUint(uint64(c.Min), 10))
		return nil
	})
}

// shrunk is the capacity of o's service job after a kill with shrink.
func (b *Backend) shrunk(o jobObject, preventMinSizeUpdate bool) (legacyapi.Capacity, error) {
	j, err := b.jobOf(o)
	if err != nil {
		return legacyapi.Capacity{}, err
	}
	if s := j.Status.State; s != legacyapi.JobAccepted {
		return legacyapi.Capacity{}, legacyapi.Terminating("job", o.id, s)
	}
	return legacyapi.Shrink(o.id, *j.JobDescriptor.Service.Capacity, preventMinSizeUpdate)
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
