package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// UpdateTask sets or deletes a task's attributes in its pod's annotation.
// A task whose pod is gone has left the active set: NotFound.
func (b *Backend) UpdateTask(ctx context.Context, id string, u legacyapi.TaskUpdate) error {
	pod := b.podByTaskID(id)
	if pod == nil {
		if _, ok := b.finished.get(id); ok {
			return fmt.Errorf("task %s has finished and its pod is gone: %w", id, legacyapi.ErrNotFound)
		}
		return legacyapi.NotFound("task", id)
	}
	return update(ctx, b, b.client.CoreV1().Pods(pod.Namespace), b.pods, pod.Name, func(p *corev1.Pod) error {
		if p.UID != pod.UID {
			return legacyapi.NotFound("task", id) // the name is another pod's now
		}
		cur := taskAttributes(p)
		next := u.Apply(cur)
		if maps.Equal(cur, next) {
			return errUnchanged
		}
		if len(next) == 0 {
			delete(p.Annotations, AnnotationTaskAttributes)
			return nil
		}
		text, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode task attributes: %w", err)
		}
		setAnnotation(p, AnnotationTaskAttributes, string(text))
		return nil
	})
}

// MoveTask is not possible here: a pod belongs to its Deployment's
// ReplicaSet by labels its template fixed, and moving it would make the
// source replace it and the target count a pod it did not make.
func (b *Backend) MoveTask(ctx context.Context, m legacyapi.TaskMove) error {
	return fmt.Errorf("task %s: moving a task between jobs is not supported in the Kubernetes world (a pod cannot change Deployments): %w",
		m.TaskID, legacyapi.ErrUnimplemented)
}
