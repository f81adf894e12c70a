package apiauth

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Users of the fake cluster.
const (
	writerSA    = "system:serviceaccount:jobs:writer"
	readerSA    = "system:serviceaccount:jobs:reader"
	writerToken = "writer-token"
	readerToken = "reader-token"
)

// cluster is a fake API server's authentication and RBAC, answering
// TokenReviews and SubjectAccessReviews through client-go's fake clientset.
type cluster struct {
	client *fake.Clientset
	// tokens maps a token to its user; grants maps a user to what it may
	// do: "verb resource" or "verb resource name".
	tokens map[string]string
	grants map[string][]string

	tokenReviews, accessReviews atomic.Int32
	down                        atomic.Bool // every review fails, as with an unreachable API server
	// gate, when set, holds every TokenReview until it is closed;
	// reviewing receives a value as each one starts.
	gate, reviewing chan struct{}

	mu   sync.Mutex
	asks []authorizationv1.SubjectAccessReviewSpec
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		client: fake.NewClientset(),
		tokens: map[string]string{writerToken: writerSA, readerToken: readerSA},
		grants: map[string][]string{
			writerSA: {"create jobs", "list jobs", "get jobs", "update migrations", "watch jobs"},
			readerSA: {"list jobs", "get jobs", "watch jobs", "list tasks", "list migrations"},
		},
	}
	c.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.tokenReviews.Add(1)
		if c.gate != nil {
			c.reviewing <- struct{}{}
			<-c.gate
		}
		if c.down.Load() {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if u, ok := c.tokens[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{
				Username: u, UID: "uid-" + u, Groups: []string{"system:serviceaccounts", "system:authenticated"}}}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid token"}
		}
		return true, tr, nil
	})
	c.client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.accessReviews.Add(1)
		if c.down.Load() {
			return true, nil, errors.New("connection refused")
		}
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		c.mu.Lock()
		c.asks = append(c.asks, sar.Spec)
		c.mu.Unlock()
		ra := sar.Spec.ResourceAttributes
		if ra != nil && ra.Group == Group {
			for _, g := range c.grants[sar.Spec.User] {
				if g == ra.Verb+" "+ra.Resource || g == strings.TrimSpace(ra.Verb+" "+ra.Resource+" "+ra.Name) {
					sar.Status.Allowed = true
				}
			}
		}
		if !sar.Status.Allowed {
			sar.Status.Reason = "no RBAC policy matched"
		}
		return true, sar, nil
	})
	return c
}

// lastAsk is the last SubjectAccessReview sent.
func (c *cluster) lastAsk(t *testing.T) authorizationv1.SubjectAccessReviewSpec {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.asks) == 0 {
		t.Fatal("no SubjectAccessReview was sent")
	}
	return c.asks[len(c.asks)-1]
}
