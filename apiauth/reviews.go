package apiauth

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
)

// reviews caches the answers of one kind of review sent to the API server
// (TokenReview or SubjectAccessReview): at most size answers, each kept
// for the TTL its review chose, and one review in flight per key however
// many requests ask at once.
type reviews[T any] struct {
	cache   *utilcache.LRUExpireCache
	flight  singleflight.Group
	timeout time.Duration
}

func newReviews[T any](size int, timeout time.Duration) *reviews[T] {
	return &reviews[T]{cache: utilcache.NewLRUExpireCache(size), timeout: timeout}
}

// review is one call to the API server. It returns the answer and how
// long to keep it (0: not at all); an error is never kept.
type review[T any] func(ctx context.Context) (T, time.Duration, error)

// get answers from the cache, or joins (or starts) the review in flight
// for key. The review runs under its own timeout, detached from ctx's
// cancellation: one caller that goes away must not fail the others
// waiting on the same review. get itself returns when ctx ends.
func (r *reviews[T]) get(ctx context.Context, key string, do review[T]) (T, error) {
	var zero T
	if v, ok := r.cache.Get(key); ok {
		return v.(T), nil
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		v, ttl, err := do(rctx)
		if err == nil && ttl > 0 {
			r.cache.Add(key, v, ttl)
		}
		return v, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return zero, res.Err
		}
		return res.Val.(T), nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
