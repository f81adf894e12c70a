package provider

import (
	"context"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/workqueue"
)

// releaser finishes a deletion as the kubelet does, once every container of
// a deleted pod has stopped and been removed: the bridge's finalizer comes
// off, and the pod object is deleted (grace 0, guarded by its UID) unless
// that already ended it. virtual-kubelet's pod controller would otherwise
// wait out the whole grace period, since a status change alone does not wake
// it.
type releaser struct {
	pods  corev1client.PodsGetter
	queue workqueue.TypedInterface[podRef]
	log   *logrus.Entry
}

type podRef struct {
	namespace, name string
	uid             types.UID
}

const releaseWorkers = 8

func newReleaser(pods corev1client.PodsGetter, log *logrus.Entry) *releaser {
	return &releaser{pods: pods, queue: workqueue.NewTyped[podRef](), log: log}
}

func (r *releaser) run(ctx context.Context) {
	for i := 0; i < releaseWorkers; i++ {
		go func() {
			for {
				ref, quit := r.queue.Get()
				if quit {
					return
				}
				if err := r.release(ctx, ref); err != nil {
					// The pod controller's own delayed deletion still follows;
					// a finalizer left on is stripped by the next release (a
					// restarted bridge admits the deleted pod again).
					r.log.WithError(err).WithField("pod", ref.namespace+"/"+ref.name).Warn("releasing the stopped pod failed")
				}
				r.queue.Done(ref)
			}
		}()
	}
	<-ctx.Done()
	r.queue.ShutDown()
}

// release takes the finalizer off first: a pod already deleted with grace 0
// (by virtual-kubelet, or by the API server for a finished pod) is then gone
// with that one write. The UID in the patch is its precondition: a successor
// of the same name fails it (UID is immutable) and is left alone.
func (r *releaser) release(ctx context.Context, ref podRef) error {
	pod, err := unfinalize(ctx, r.pods, ref)
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err):
		return nil // gone, or a successor holds the name
	case err != nil:
		return fmt.Errorf("removing the finalizer: %w", err)
	case pod.DeletionTimestamp != nil && pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds == 0:
		return nil // that was the last thing holding it
	}
	opts := metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: metav1.NewUIDPreconditions(string(ref.uid))}
	err = r.pods.Pods(ref.namespace).Delete(ctx, ref.name, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting: %w", err)
	}
	return nil
}

// ForgetNode takes the bridge's finalizer off every pod bound to a node whose
// agent is gone for good: nothing of them is left to remove, and the pod
// garbage collector must be able to delete them once the node is gone.
func ForgetNode(ctx context.Context, pods corev1client.PodsGetter, node string) error {
	opts := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node, Limit: 500}
	for {
		list, err := pods.Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing the pods of node %s: %w", node, err)
		}
		for i := range list.Items {
			pod := &list.Items[i]
			if !slices.Contains(pod.Finalizers, Finalizer) {
				continue
			}
			_, err := unfinalize(ctx, pods, podRef{pod.Namespace, pod.Name, pod.UID})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
				return fmt.Errorf("pod %s/%s: removing the finalizer: %w", pod.Namespace, pod.Name, err)
			}
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

// unfinalize takes the bridge's finalizer off a pod, the UID as precondition.
func unfinalize(ctx context.Context, pods corev1client.PodsGetter, ref podRef) (*corev1.Pod, error) {
	patch := fmt.Sprintf(`{"metadata":{"uid":%q,"$deleteFromPrimitiveList/finalizers":[%q]}}`, ref.uid, Finalizer)
	return pods.Pods(ref.namespace).Patch(ctx, ref.name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
}
