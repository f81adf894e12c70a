package kube

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vk-titus/vk-titus/internal/cachetrim"
	"github.com/vk-titus/vk-titus/legacyapi"
)

var _ legacyapi.Backend = (*Backend)(nil)

// Backend runs legacy jobs as Kubernetes Jobs and Deployments. It is safe
// for concurrent use; its reads answer from caches that Start fills.
type Backend struct {
	client kubernetes.Interface
	cfg    Config
	log    logrus.FieldLogger

	factory     informers.SharedInformerFactory
	jobs        cache.SharedIndexInformer // batch/v1 Jobs
	deployments cache.SharedIndexInformer // apps/v1 Deployments
	pods        cache.SharedIndexInformer

	descriptors *descriptors
	tasks       *taskMemo
	finished    *memory
	killing     *idSet // tasks KillTask deleted, until their pods are gone
	changed     *notifier
	// changes names every job and task an informer event touched, for
	// Observe; a pod's event names its job too, whose state follows its
	// pods once killed.
	changes *legacyapi.ChangeLog
}

// Cache indexes.
const (
	byJobID = "job-id"  // the job id label: a job's object and its pods
	byUID   = "pod-uid" // a task id without its prefix
)

// New wires the backend; nothing is read or written until Start.
func New(client kubernetes.Interface, cfg Config, log logrus.FieldLogger) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("kube backend config: %w", err)
	}
	b := &Backend{
		client:      client,
		cfg:         cfg,
		log:         log.WithFields(logrus.Fields{"backend": "kube", "namespace": cfg.Namespace}),
		descriptors: newDescriptors(),
		tasks:       newTaskMemo(),
		finished:    newMemory(cfg.FinishedTaskMemory),
		killing:     newIDSet(),
		changed:     newNotifier(),
		changes:     legacyapi.NewChangeLog(cfg.ChangeLog),
	}
	// Only objects this backend made: other workloads in the namespace
	// would cost memory and mean nothing to the job API.
	b.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelJobID }),
		informers.WithTransform(cachetrim.StripManagedFields))
	b.jobs = b.factory.Batch().V1().Jobs().Informer()
	b.deployments = b.factory.Apps().V1().Deployments().Informer()
	b.pods = b.factory.Core().V1().Pods().Informer()

	jobIndex := cache.Indexers{byJobID: indexByJobID}
	for _, inf := range []cache.SharedIndexInformer{b.jobs, b.deployments} {
		if err := inf.AddIndexers(jobIndex); err != nil {
			return nil, fmt.Errorf("job index: %w", err)
		}
		if _, err := inf.AddEventHandler(b.jobHandler()); err != nil {
			return nil, fmt.Errorf("job event handler: %w", err)
		}
	}
	if err := b.pods.AddIndexers(cache.Indexers{byJobID: indexByJobID, byUID: indexByUID}); err != nil {
		return nil, fmt.Errorf("pod indexes: %w", err)
	}
	if _, err := b.pods.AddEventHandler(b.podHandler()); err != nil {
		return nil, fmt.Errorf("pod event handler: %w", err)
	}
	return b, nil
}

// Start ensures the namespace, starts the informers (they stop with ctx)
// and returns once their caches are filled.
func (b *Backend) Start(ctx context.Context) error {
	if err := b.ensureNamespace(ctx); err != nil {
		return err
	}
	b.factory.Start(ctx.Done())
	for typ, ok := range b.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("kube backend: %v cache did not sync: %w", typ, context.Cause(ctx))
		}
	}
	b.log.Info("kube backend caches synced")
	return nil
}

// ensureNamespace creates the namespace if it is missing. A gateway whose
// role stops at its namespace (nothing cluster-wide) may not read
// namespaces: then the manifests own it, and a missing one shows as soon
// as a job is created.
func (b *Backend) ensureNamespace(ctx context.Context) error {
	_, err := b.client.CoreV1().Namespaces().Get(ctx, b.cfg.Namespace, metav1.GetOptions{})
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		b.log.WithError(err).Info("may not read namespaces; taking the namespace as given")
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get namespace %s: %w", b.cfg.Namespace, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: b.cfg.Namespace}}
	if _, err := b.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", b.cfg.Namespace, err)
	}
	b.log.Info("namespace created")
	return nil
}

func indexByJobID(obj any) ([]string, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, err
	}
	if id := m.GetLabels()[LabelJobID]; id != "" {
		return []string{id}, nil
	}
	return nil, nil
}

func indexByUID(obj any) ([]string, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, err
	}
	return []string{string(m.GetUID())}, nil
}

func metaOf(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// jobHandler forgets parsed descriptors no object holds any more, records
// the change for Observe and wakes the writers waiting for the cache.
func (b *Backend) jobHandler() cache.ResourceEventHandler {
	changed := func(obj any) {
		if m, err := metaOf(obj); err == nil {
			b.changes.Add(legacyapi.ChangeKey{ID: m.GetLabels()[LabelJobID]})
		}
		b.changed.broadcast()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		UpdateFunc: func(old, obj any) {
			before, err1 := metaOf(old)
			after, err2 := metaOf(obj)
			if err1 == nil && err2 == nil && before.GetAnnotations()[AnnotationDescriptor] != after.GetAnnotations()[AnnotationDescriptor] {
				b.descriptors.forget(before.GetAnnotations()[AnnotationDescriptor]) // UpdateJob rewrote it
			}
			changed(obj)
		},
		DeleteFunc: func(obj any) {
			obj = unwrapTombstone(obj)
			if m, err := metaOf(obj); err == nil {
				b.descriptors.forget(m.GetAnnotations()[AnnotationDescriptor])
			}
			changed(obj)
		},
	}
}

// podHandler keeps each pod's task ready, and the last record of deleted
// pods, which the cache drops; it records the change of the task and of
// its job for Observe.
func (b *Backend) podHandler() cache.ResourceEventHandler {
	changed := func(pod *corev1.Pod) {
		b.changes.Add(legacyapi.ChangeKey{Task: true, ID: legacyapi.KubePrefix + string(pod.UID)})
		b.changes.Add(legacyapi.ChangeKey{ID: pod.Labels[LabelJobID]})
		b.changed.broadcast()
	}
	put := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			b.tasks.put(pod)
			changed(pod)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    put,
		UpdateFunc: func(_, obj any) { put(obj) },
		DeleteFunc: func(obj any) {
			if pod, ok := unwrapTombstone(obj).(*corev1.Pod); ok {
				b.podDeleted(pod)
				changed(pod)
			}
		},
	}
}

// unwrapTombstone returns the last known object of a deletion the informer
// learnt of by relisting.
func unwrapTombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}
