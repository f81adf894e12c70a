package apiauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// presented is what a request carries to prove who sent it, and what it
// declares, read alike from HTTP and gRPC.
type presented struct {
	tls        *tls.ConnectionState // nil without TLS
	bearer     string               // "" without a bearer token
	callerID   string
	callReason string
}

func fromHTTP(r *http.Request) presented {
	return presented{
		tls:        r.TLS,
		bearer:     bearerToken(r.Header.Get("Authorization")),
		callerID:   declared(r.Header.Get(HeaderCallerID)),
		callReason: declared(r.Header.Get(HeaderCallReason)),
	}
}

func fromGRPC(ctx context.Context) presented {
	var p presented
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			p.tls = &ti.State
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(key string) string {
		if v := md.Get(key); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p.bearer = bearerToken(first("authorization"))
	p.callerID = declared(first(strings.ToLower(HeaderCallerID)))
	p.callReason = declared(first(strings.ToLower(HeaderCallReason)))
	return p
}

// bearerToken reads "Bearer <token>"; any other scheme is no token, as the
// API server has it.
func bearerToken(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticate tells who presented p. It returns the anonymous Identity
// when nothing was presented; an error wrapping ErrUnauthenticated when a
// credential was presented and refused (never a fall-back to anonymous),
// or ErrUnavailable when it could not be checked.
func (g *Guard) authenticate(ctx context.Context, p presented) (Identity, error) {
	var id Identity
	switch {
	case g.certs != nil && p.tls != nil && len(p.tls.PeerCertificates) > 0:
		// The apiserver's x509 authenticator wants a request; only its TLS
		// state is read.
		resp, ok, err := g.certs.AuthenticateRequest(&http.Request{TLS: p.tls})
		if err != nil || !ok {
			return Identity{}, fmt.Errorf("%w: client certificate not accepted", ErrUnauthenticated)
		}
		id = fromUser(resp.User, MethodX509)
	case p.bearer != "":
		var err error
		if id, err = g.tokens.authenticate(ctx, p.bearer); err != nil {
			return Identity{}, err
		}
	default:
		id = anonymous()
	}
	id.CallerID, id.CallReason = p.callerID, p.callReason
	return id, nil
}

// fromUser copies an apiserver user, adding system:authenticated as the
// API server does for every authenticated user.
func fromUser(u user.Info, method string) Identity {
	id := Identity{User: u.GetName(), UID: u.GetUID(), Groups: slices.Clone(u.GetGroups()), Method: method}
	if !slices.Contains(id.Groups, AuthenticatedGroup) {
		id.Groups = append(id.Groups, AuthenticatedGroup)
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		id.Extra = make(map[string][]string, len(extra))
		for k, v := range extra {
			id.Extra[k] = slices.Clone(v)
		}
	}
	return id
}

// tokens checks bearer tokens with TokenReview, caching the answers.
type tokens struct {
	client         authenticationv1client.TokenReviewsGetter
	cache          *reviews[tokenAnswer]
	okTTL, failTTL time.Duration
	log            logrus.FieldLogger
}

// tokenAnswer is a TokenReview's verdict; id is set when ok.
type tokenAnswer struct {
	ok     bool
	id     Identity
	reason string
}

func (t *tokens) authenticate(ctx context.Context, token string) (Identity, error) {
	sum := sha256.Sum256([]byte(token))
	a, err := t.cache.get(ctx, hex.EncodeToString(sum[:]), func(ctx context.Context) (tokenAnswer, time.Duration, error) {
		tr, err := t.client.TokenReviews().Create(ctx,
			&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			return tokenAnswer{}, 0, fmt.Errorf("%w: TokenReview: %w", ErrUnavailable, err)
		}
		if !tr.Status.Authenticated {
			return tokenAnswer{reason: tr.Status.Error}, t.failTTL, nil
		}
		u := tr.Status.User
		return tokenAnswer{ok: true, id: fromUser(&user.DefaultInfo{Name: u.Username, UID: u.UID, Groups: u.Groups,
			Extra: extraOf(u.Extra)}, MethodToken)}, t.okTTL, nil
	})
	if err != nil {
		return Identity{}, err
	}
	if !a.ok {
		// The API server's reason is for our logs, not for the caller.
		t.log.WithField("reason", a.reason).Debug("bearer token not accepted")
		return Identity{}, fmt.Errorf("%w: bearer token not accepted", ErrUnauthenticated)
	}
	// A copy: the cached Identity is shared by every request with the token.
	id := a.id
	id.Groups = slices.Clone(id.Groups)
	return id, nil
}

func extraOf(in map[string]authenticationv1.ExtraValue) map[string][]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string][]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
