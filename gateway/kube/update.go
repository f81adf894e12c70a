package kube

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// errUnchanged, from a mutation, means the object is already as wanted.
var errUnchanged = errors.New("unchanged")

// objectClient is the typed client of one kind (Jobs, Deployments).
type objectClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// update reads the object from the API server, mutates and writes it,
// again on a conflict, then waits until inf's cache shows the write.
// mutate decides on the fresh object, so a check it makes (the job not
// killed yet, say) holds at the moment of the write.
func update[T metav1.Object](ctx context.Context, b *Backend, c objectClient[T], inf cache.SharedIndexInformer, name string, mutate func(T) error) error {
	var written T
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := mutate(obj); err != nil {
			return err
		}
		written, err = c.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	switch {
	case errors.Is(err, errUnchanged):
		return nil
	case err != nil:
		return asAPIError(err, "update %s/%s", b.cfg.Namespace, name)
	}
	b.awaitVersion(ctx, inf, written)
	return nil
}

func setAnnotation(obj metav1.Object, key, value string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	obj.SetAnnotations(a)
}
