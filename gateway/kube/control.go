package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// UpdateJob makes u on the job's object, read fresh from the API server:
// the descriptor annotation holds what the job API shows (attributes,
// disruption budget, processes, capacity), and a service job's replicas
// and capacity and enabled annotations its live size and flag, which
// jobOf lays over the descriptor.
func (b *Backend) UpdateJob(ctx context.Context, id string, u legacyapi.JobUpdate) error {
	o, ok := b.lookupJob(id)
	if !ok {
		return legacyapi.NotFound("job", id)
	}
	if o.batch != nil {
		return update(ctx, b, b.client.BatchV1().Jobs(b.cfg.Namespace), b.jobs, o.meta.Name, func(j *batchv1.Job) error {
			d, err := b.updated(jobObject{id: id, meta: &j.ObjectMeta, batch: j}, u)
			if err != nil {
				return err
			}
			return setDescriptor(j, d)
		})
	}
	return b.updateService(ctx, o, func(dep *appsv1.Deployment) error {
		d, err := b.updated(jobObject{id: id, meta: &dep.ObjectMeta, service: dep}, u)
		if err != nil {
			return err
		}
		c := d.Service.Capacity
		dep.Spec.Replicas = ptr.To(int32(c.Desired))
		setAnnotation(dep, AnnotationCapacityMin, strconv.FormatUint(uint64(c.Min), 10))
		setAnnotation(dep, AnnotationCapacityMax, strconv.FormatUint(uint64(c.Max), 10))
		setAnnotation(dep, AnnotationEnabled, strconv.FormatBool(d.Service.Enabled))
		if err := setDescriptor(dep, d); err != nil && !errors.Is(err, errUnchanged) {
			return err
		}
		return nil
	})
}

// updated is the descriptor of o, a fresh object, with u made on it; a
// job being killed or finished takes no update (an update it could never
// take is refused as such first, as Titus does).
func (b *Backend) updated(o jobObject, u legacyapi.JobUpdate) (legacyapi.JobDescriptor, error) {
	cur, err := b.jobOf(o)
	if err != nil {
		return legacyapi.JobDescriptor{}, err
	}
	d := cur.JobDescriptor
	if err := u.Apply(o.id, &d); err != nil {
		return legacyapi.JobDescriptor{}, err
	}
	if s := cur.Status.State; s != legacyapi.JobAccepted {
		return legacyapi.JobDescriptor{}, legacyapi.Terminating("job", o.id, s)
	}
	if d.Service != nil && d.Service.Capacity == nil {
		d.Service.Capacity = &legacyapi.Capacity{}
	}
	return d, nil
}

// setDescriptor writes d into obj's descriptor annotation (errUnchanged
// when it holds d already).
func setDescriptor(obj metav1.Object, d legacyapi.JobDescriptor) error {
	text, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode descriptor: %w", err)
	}
	if obj.GetAnnotations()[AnnotationDescriptor] == string(text) {
		return errUnchanged
	}
	setAnnotation(obj, AnnotationDescriptor, string(text))
	return nil
}

func (b *Backend) updateService(ctx context.Context, o jobObject, mutate func(*appsv1.Deployment) error) error {
	return update(ctx, b, b.client.AppsV1().Deployments(b.cfg.Namespace), b.deployments, o.meta.Name, mutate)
}
