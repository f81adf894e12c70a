package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/vk-titus/vk-titus/translate"
)

// Annotator writes the container-info annotation onto pods that came
// without one, off the launch path: a fixed set of workers drains a queue,
// so a 1,000-pod burst costs a bounded number of goroutines and never delays
// a launch.
type Annotator struct {
	client kubernetes.Interface
	queue  workqueue.TypedRateLimitingInterface[annotation]
	log    *logrus.Entry
}

type annotation struct{ namespace, name, value string }

// NewAnnotator returns an annotator; Run starts its workers.
func NewAnnotator(client kubernetes.Interface, log *logrus.Entry) *Annotator {
	return &Annotator{
		client: client,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[annotation]()),
		log:    log,
	}
}

// Enqueue asks for the annotation to be written; it does not block.
func (a *Annotator) Enqueue(namespace, name, value string) {
	a.queue.Add(annotation{namespace, name, value})
}

// Run drains the queue with n workers until ctx ends.
func (a *Annotator) Run(ctx context.Context, n int) {
	for i := 0; i < n; i++ {
		go func() {
			for a.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	a.queue.ShutDown()
}

func (a *Annotator) next(ctx context.Context) bool {
	item, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(item)
	err := a.write(ctx, item)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		a.queue.Forget(item)
	case a.queue.NumRequeues(item) < 5:
		a.queue.AddRateLimited(item)
	default:
		a.log.WithError(err).WithField("pod", item.namespace+"/"+item.name).Warn("giving up writing the container-info annotation")
		a.queue.Forget(item)
	}
	return true
}

func (a *Annotator) write(ctx context.Context, item annotation) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{translate.AnnotationContainerInfo: item.value}}})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Pods(item.namespace).Patch(ctx, item.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("annotating pod %s/%s: %w", item.namespace, item.name, err)
	}
	return nil
}
