package apiauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// access asks the API server, in SubjectAccessReviews, whether an
// Identity may perform an Action, caching the decisions.
type access struct {
	client            authorizationv1client.SubjectAccessReviewsGetter
	cache             *reviews[decision]
	allowTTL, denyTTL time.Duration
}

// decision is a SubjectAccessReview's verdict; reason is the API server's
// explanation of a denial, if any.
type decision struct {
	allowed bool
	reason  string
}

func (a *access) review(ctx context.Context, id Identity, act Action) (decision, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(id.Extra))
	for k, v := range id.Extra {
		extra[k] = v
	}
	spec := authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: Group, Resource: act.Resource, Verb: act.Verb, Name: act.Name,
		},
		User: id.User, UID: id.UID, Groups: id.Groups, Extra: extra,
	}
	// The question itself is the key: the same user, groups and action get
	// the same answer (json sorts map keys, so the encoding is stable).
	b, err := json.Marshal(spec)
	if err != nil {
		return decision{}, fmt.Errorf("%w: SubjectAccessReview: %w", ErrUnavailable, err)
	}
	sum := sha256.Sum256(b)
	return a.cache.get(ctx, hex.EncodeToString(sum[:]), func(ctx context.Context) (decision, time.Duration, error) {
		sar, err := a.client.SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return decision{}, 0, fmt.Errorf("%w: SubjectAccessReview: %w", ErrUnavailable, err)
		}
		if sar.Status.Allowed && !sar.Status.Denied {
			return decision{allowed: true}, a.allowTTL, nil
		}
		reason := sar.Status.Reason
		if reason == "" {
			reason = sar.Status.EvaluationError
		}
		return decision{reason: reason}, a.denyTTL, nil
	})
}
