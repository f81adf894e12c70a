package kube

import (
	"context"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/utils/ptr"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// KillJob stops the job and keeps its object, so the record survives: a
// batch Job is suspended (its controller deletes the pods, gracefully), a
// Deployment scaled to zero. The first kill's time stands.
func (b *Backend) KillJob(ctx context.Context, id string) error {
	o, ok := b.lookupJob(id)
	if !ok {
		return legacyapi.NotFound("job", id)
	}
	if b.jobFinished(o) {
		return nil
	}
	now := stamp(time.Now())
	if o.batch != nil {
		return update(ctx, b, b.client.BatchV1().Jobs(b.cfg.Namespace), b.jobs, o.meta.Name, func(j *batchv1.Job) error {
			if _, killed := j.Annotations[AnnotationKilledAt]; killed {
				return errUnchanged
			}
			if _, ended := batchEnd(j, false); ended {
				return errUnchanged
			}
			j.Spec.Suspend = ptr.To(true)
			setAnnotation(j, AnnotationKilledAt, now)
			return nil
		})
	}
	return b.updateService(ctx, o, func(d *appsv1.Deployment) error {
		if _, killed := d.Annotations[AnnotationKilledAt]; killed {
			return errUnchanged
		}
		d.Spec.Replicas = ptr.To(int32(0))
		setAnnotation(d, AnnotationKilledAt, now)
		return nil
	})
}

// UpdateCapacity resizes a live service job.
func (b *Backend) UpdateCapacity(ctx context.Context, id string, c legacyapi.Capacity) error {
	if err := legacyapi.ValidateCapacity("capacity", c); err != nil {
		return err
	}
	o, err := b.serviceJob(id, "has no capacity to update")
	if err != nil {
		return err
	}
	return b.updateService(ctx, o, func(d *appsv1.Deployment) error {
		if err := checkAlive(id, d); err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To(int32(c.Desired))
		setAnnotation(d, AnnotationCapacityMin, strconv.FormatUint(uint64(c.Min), 10))
		setAnnotation(d, AnnotationCapacityMax, strconv.FormatUint(uint64(c.Max), 10))
		return nil
	})
}

// SetEnabled records the flag. Nothing here scales service jobs by policy,
// so the flag has no further effect, as the interface allows.
func (b *Backend) SetEnabled(ctx context.Context, id string, enabled bool) error {
	o, err := b.serviceJob(id, "cannot be enabled or disabled")
	if err != nil {
		return err
	}
	value := strconv.FormatBool(enabled)
	return b.updateService(ctx, o, func(d *appsv1.Deployment) error {
		if err := checkAlive(id, d); err != nil {
			return err
		}
		if d.Annotations[AnnotationEnabled] == value {
			return errUnchanged
		}
		setAnnotation(d, AnnotationEnabled, value)
		return nil
	})
}

// serviceJob finds a service job; a batch job is a conflict, why says for what.
func (b *Backend) serviceJob(id, why string) (jobObject, error) {
	o, ok := b.lookupJob(id)
	switch {
	case !ok:
		return o, legacyapi.NotFound("job", id)
	case o.service == nil:
		return o, conflictf("job %s is a batch job: it %s", id, why)
	}
	return o, nil
}

func (b *Backend) updateService(ctx context.Context, o jobObject, mutate func(*appsv1.Deployment) error) error {
	return update(ctx, b, b.client.AppsV1().Deployments(b.cfg.Namespace), b.deployments, o.meta.Name, mutate)
}

// checkAlive refuses to change a killed service job.
func checkAlive(id string, d *appsv1.Deployment) error {
	if _, killed := d.Annotations[AnnotationKilledAt]; killed {
		return conflictf("job %s has been killed", id)
	}
	return nil
}
