package kube

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// nameAttempts bounds retries of a name taken by another job: names carry
// only 8 hex digits of the id, so among thousands of jobs of one
// application a clash is rare but not unheard of.
const nameAttempts = 3

// jobObject is one job's Kubernetes object: exactly one of batch, service.
type jobObject struct {
	id      string
	meta    *metav1.ObjectMeta
	batch   *batchv1.Job
	service *appsv1.Deployment
}

func jobObjectOf(obj any) (jobObject, bool) {
	switch o := obj.(type) {
	case *batchv1.Job:
		return jobObject{id: o.Labels[LabelJobID], meta: &o.ObjectMeta, batch: o}, true
	case *appsv1.Deployment:
		return jobObject{id: o.Labels[LabelJobID], meta: &o.ObjectMeta, service: o}, true
	}
	return jobObject{}, false
}

// CreateJob creates the job's Job (batch) or Deployment (service).
func (b *Backend) CreateJob(ctx context.Context, d legacyapi.JobDescriptor) (string, error) {
	if err := b.cfg.Limits.Validate(d); err != nil {
		return "", err
	}
	for attempt := 1; ; attempt++ {
		uid := string(uuid.NewUUID())
		j := newJob{id: legacyapi.KubePrefix + uid, name: objectName(d.ApplicationName, uid[:8]), d: d, accepted: time.Now()}
		err := b.create(ctx, j)
		if apierrors.IsAlreadyExists(err) && attempt < nameAttempts {
			continue
		}
		if err != nil {
			return "", err
		}
		b.await(ctx, j.id, func() bool { _, ok := b.lookupJob(j.id); return ok })
		b.log.WithFields(logrus.Fields{"job": j.id, "object": j.name, "application": d.ApplicationName}).Info("job created")
		return j.id, nil
	}
}

func (b *Backend) create(ctx context.Context, j newJob) error {
	if j.d.Batch != nil {
		job, err := b.batchJob(j)
		if err != nil {
			return err
		}
		if _, err := b.client.BatchV1().Jobs(b.cfg.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			return apiError(err, "create Job %s for job %s", j.name, j.id)
		}
		return nil
	}
	dep, err := b.deployment(j)
	if err != nil {
		return err
	}
	if _, err := b.client.AppsV1().Deployments(b.cfg.Namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return apiError(err, "create Deployment %s for job %s", j.name, j.id)
	}
	return nil
}

// GetJob answers from the cache.
func (b *Backend) GetJob(ctx context.Context, id string) (legacyapi.Job, error) {
	o, ok := b.lookupJob(id)
	if !ok {
		return legacyapi.Job{}, legacyapi.NotFound("job", id)
	}
	return b.jobOf(o)
}

// FindJobs filters and pages the cached jobs.
func (b *Backend) FindJobs(ctx context.Context, q legacyapi.JobQuery) (legacyapi.JobQueryResult, error) {
	var objs []jobObject
	if len(q.JobIDs) > 0 {
		for _, id := range q.JobIDs {
			if o, ok := b.lookupJob(id); ok {
				objs = append(objs, o)
			}
		}
	} else {
		objs = b.allJobs()
	}
	jobs := make([]legacyapi.Job, 0, len(objs))
	for _, o := range objs {
		j, err := b.jobOf(o)
		if err != nil {
			// One damaged record must not hide every other job.
			b.log.WithError(err).WithField("job", o.id).Debug("job left out of the list")
			continue
		}
		if legacyapi.MatchJob(q.Criteria, j, func() []legacyapi.Task { return b.jobTasks(j.ID) }) {
			jobs = append(jobs, j)
		}
	}
	items, page, err := legacyapi.Paginate(jobs, legacyapi.JobKey, q.Page)
	return legacyapi.JobQueryResult{Items: items, Pagination: page}, err
}

// jobTasks are the tasks of one job, for criteria on tasks.
func (b *Backend) jobTasks(id string) []legacyapi.Task {
	entries := b.collect([]string{id}, "")
	out := make([]legacyapi.Task, len(entries))
	for i, e := range entries {
		out[i] = e.task
	}
	return out
}

func (b *Backend) lookupJob(id string) (jobObject, bool) {
	for _, inf := range [...]cache.Indexer{b.jobs.GetIndexer(), b.deployments.GetIndexer()} {
		objs, _ := inf.ByIndex(byJobID, id)
		for _, obj := range objs {
			if o, ok := jobObjectOf(obj); ok {
				return o, true
			}
		}
	}
	return jobObject{}, false
}

func (b *Backend) allJobs() []jobObject {
	jobs, deps := b.jobs.GetIndexer().List(), b.deployments.GetIndexer().List()
	out := make([]jobObject, 0, len(jobs)+len(deps))
	for _, obj := range append(jobs, deps...) {
		if o, ok := jobObjectOf(obj); ok && o.id != "" {
			out = append(out, o)
		}
	}
	return out
}

// jobOf is the job as the API shows it: the descriptor as submitted, with
// a service's live capacity and enablement, and the status.
func (b *Backend) jobOf(o jobObject) (legacyapi.Job, error) {
	d, err := b.descriptors.get(o.meta.Annotations[AnnotationDescriptor])
	if err != nil {
		return legacyapi.Job{}, fmt.Errorf("job %s (%s): %w", o.id, o.meta.Name, err)
	}
	if o.service != nil && d.Service != nil {
		s := *d.Service
		s.Capacity = &legacyapi.Capacity{
			Min:     annotationU32(o.meta.Annotations, AnnotationCapacityMin),
			Max:     annotationU32(o.meta.Annotations, AnnotationCapacityMax),
			Desired: legacyapi.U32(ptr.Deref(o.service.Spec.Replicas, 0)),
		}
		s.Enabled = o.meta.Annotations[AnnotationEnabled] == "true"
		d.Service = &s
	}
	history := b.jobHistory(o)
	return legacyapi.Job{ID: o.id, JobDescriptor: d, Status: history[len(history)-1], StatusHistory: history}, nil
}

func annotationU32(annotations map[string]string, key string) legacyapi.U32 {
	v, _ := strconv.ParseUint(annotations[key], 10, 32)
	return legacyapi.U32(v)
}
