package provider

import (
	"context"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/workqueue"
)

// releaser finishes a deletion as the kubelet does: once every container of
// a deleted pod has stopped, the pod object is removed (grace 0, guarded by
// its UID). virtual-kubelet's pod controller would otherwise wait out the
// whole grace period, since a status change alone does not wake it.
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
				opts := metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: metav1.NewUIDPreconditions(string(ref.uid))}
				err := r.pods.Pods(ref.namespace).Delete(ctx, ref.name, opts)
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					// The pod controller's own delayed deletion still follows.
					r.log.WithError(err).WithField("pod", ref.namespace+"/"+ref.name).Warn("removing the stopped pod failed")
				}
				r.queue.Done(ref)
			}
		}()
	}
	<-ctx.Done()
	r.queue.ShutDown()
}
