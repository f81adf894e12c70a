package apiauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
)

// Why a request was refused. Errors from a Guard wrap one of them.
var (
	// ErrUnauthenticated: no acceptable credentials (401, UNAUTHENTICATED):
	// a presented credential was refused, or an anonymous caller asked for
	// what anonymous callers may not do.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller is known but may not do this (403,
	// PERMISSION_DENIED), or no rule maps the request.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the API server could not be asked (503, UNAVAILABLE);
	// the caller may retry.
	ErrUnavailable = errors.New("credentials cannot be checked now")
)

// Defaults of the Config fields left zero. The TTLs are short so that a
// revoked token or a removed RoleBinding stops working within a minute.
const (
	DefaultReviewTimeout   = 10 * time.Second
	DefaultTokenTTL        = time.Minute
	DefaultTokenFailureTTL = 10 * time.Second
	DefaultAllowTTL        = time.Minute
	DefaultDenyTTL         = 10 * time.Second
	DefaultCacheSize       = 4096
)

// Config is how a Guard authenticates and authorizes.
type Config struct {
	// Client sends the TokenReviews and SubjectAccessReviews. Required.
	// Build it with explicit QPS and Burst: every uncached request costs
	// one call or two.
	Client kubernetes.Interface
	// ClientCAFile verifies client certificates (CN user, O groups); ""
	// accepts none. Pass the same file to ServerTLS.
	ClientCAFile string
	// AllowAnonymousReads lets callers without credentials get, list and
	// watch, for old tools that cannot send any. Writes stay refused.
	AllowAnonymousReads bool
	// ReviewTimeout bounds each TokenReview and SubjectAccessReview.
	ReviewTimeout time.Duration
	// TokenTTL and TokenFailureTTL: how long an accepted or refused token
	// is remembered.
	TokenTTL, TokenFailureTTL time.Duration
	// AllowTTL and DenyTTL: how long an authorization decision is
	// remembered.
	AllowTTL, DenyTTL time.Duration
	// CacheSize bounds each cache (tokens, decisions), in entries.
	CacheSize int
	// Log gets one line per refusal and per write (debug for reads).
	Log logrus.FieldLogger
}

// Guard authenticates and authorizes the requests of the job API, as an
// http.Handler wrapper (Handler) and as gRPC interceptors. It is safe for
// concurrent use.
type Guard struct {
	certs     authenticator.Request // nil without a client CA
	tokens    *tokens
	access    *access
	anonReads bool
	log       logrus.FieldLogger
}

// New checks cfg and builds a Guard. It reads the client CA once.
func New(cfg Config) (*Guard, error) {
	if cfg.Client == nil {
		return nil, errors.New("apiauth: Config.Client is required (TokenReview, SubjectAccessReview)")
	}
	durations := []*time.Duration{&cfg.ReviewTimeout, &cfg.TokenTTL, &cfg.TokenFailureTTL, &cfg.AllowTTL, &cfg.DenyTTL}
	defaults := []time.Duration{DefaultReviewTimeout, DefaultTokenTTL, DefaultTokenFailureTTL, DefaultAllowTTL, DefaultDenyTTL}
	for i, d := range durations {
		if *d < 0 {
			return nil, fmt.Errorf("apiauth: negative timeout or TTL %v", *d)
		}
		if *d == 0 {
			*d = defaults[i]
		}
	}
	switch {
	case cfg.CacheSize < 0:
		return nil, fmt.Errorf("apiauth: negative cache size %d", cfg.CacheSize)
	case cfg.CacheSize == 0:
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		cfg.Log = l
	}
	g := &Guard{
		tokens: &tokens{client: cfg.Client.AuthenticationV1(), cache: newReviews[tokenAnswer](cfg.CacheSize, cfg.ReviewTimeout),
			okTTL: cfg.TokenTTL, failTTL: cfg.TokenFailureTTL, log: cfg.Log},
		access: &access{client: cfg.Client.AuthorizationV1(), cache: newReviews[decision](cfg.CacheSize, cfg.ReviewTimeout),
			allowTTL: cfg.AllowTTL, denyTTL: cfg.DenyTTL},
		anonReads: cfg.AllowAnonymousReads,
		log:       cfg.Log,
	}
	if cfg.ClientCAFile != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("job-api-client-ca", cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("apiauth: client CA %s: %w", cfg.ClientCAFile, err)
		}
		g.certs = x509.NewDynamic(ca.VerifyOptions, x509.CommonNameUserConversion)
	}
	return g, nil
}

// openPaths and openGRPC are the health checks: open to anyone.
var openPaths = map[string]bool{"/healthz": true, "/livez": true, "/readyz": true}

const openGRPC = "/grpc.health.v1.Health/"

// check decides one request: who presented p, and whether they may do
// act (mapped false: no rule covers the request, which is refused). what
// names the request in logs.
func (g *Guard) check(ctx context.Context, p presented, act Action, mapped bool, what string) (Identity, error) {
	log := g.log.WithFields(logrus.Fields{"request": what, "caller": p.callerID})
	id, err := g.authenticate(ctx, p)
	if err != nil {
		log.WithError(err).Info("job API request refused")
		return Identity{}, err
	}
	log = log.WithFields(logrus.Fields{"user": id.User, "auth": id.Method,
		"verb": act.Verb, "resource": act.Resource, "name": act.Name})
	switch {
	case id.Anonymous() && (!mapped || !act.Read() || !g.anonReads):
		err = fmt.Errorf("%w: anonymous requests are refused: present a client certificate or a bearer token", ErrUnauthenticated)
	case !mapped:
		err = fmt.Errorf("%w: no authorization rule covers %s", ErrForbidden, what)
	case id.Anonymous():
		// An anonymous read, allowed by configuration.
	default:
		d, rerr := g.access.review(ctx, id, act)
		switch {
		case rerr != nil:
			err = rerr
		case !d.allowed:
			err = fmt.Errorf("%w: user %q cannot %s resource %q in API group %q%s",
				ErrForbidden, id.User, act.Verb, act.Resource, Group, nameSuffix(act.Name))
			log = log.WithField("reason", d.reason)
		}
	}
	if err != nil {
		log.WithError(err).Info("job API request refused")
		return Identity{}, err
	}
	if act.Read() {
		log.Debug("job API request allowed")
	} else {
		log.WithField("call_reason", id.CallReason).Info("job API write allowed")
	}
	return id, nil
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (name %q)", name)
}

// Handler guards next: a refused request gets Titus's error body
// {"statusCode":N,"message":"..."}; an accepted one reaches next with its
// Identity in the context (From) and without its Authorization header.
// Health checks pass untouched.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		act, mapped := RESTAction(r.Method, r.URL.EscapedPath())
		id, err := g.check(r.Context(), fromHTTP(r), act, mapped, r.Method+" "+r.URL.Path)
		if err != nil {
			refuseHTTP(w, err)
			return
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// UnaryServerInterceptor guards unary calls: a refused call fails with
// UNAUTHENTICATED, PERMISSION_DENIED or UNAVAILABLE; an accepted one runs
// with its Identity in the context. grpc.health.v1 passes untouched.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, openGRPC) {
			return handler(ctx, req)
		}
		act, mapped := GRPCAction(info.FullMethod, req)
		id, err := g.check(ctx, fromGRPC(ctx), act, mapped, info.FullMethod)
		if err != nil {
			return nil, status.Error(grpcCode(err), clientMessage(err))
		}
		return handler(NewContext(ctx, id), req)
	}
}

// StreamServerInterceptor guards streams as UnaryServerInterceptor does
// unary calls, before the first message: a stream is authorized on the
// collection (see GRPCAction).
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, openGRPC) {
			return handler(srv, ss)
		}
		act, mapped := GRPCAction(info.FullMethod, nil)
		id, err := g.check(ss.Context(), fromGRPC(ss.Context()), act, mapped, info.FullMethod)
		if err != nil {
			return status.Error(grpcCode(err), clientMessage(err))
		}
		return handler(srv, identified{ss, NewContext(ss.Context(), id)})
	}
}

// identified is a stream whose context carries the caller's Identity.
type identified struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identified) Context() context.Context { return s.ctx }

// clientMessage is what a refused caller is told: the refusal, but not
// why the API server could not be asked (its address, its errors).
func clientMessage(err error) string {
	if errors.Is(err, ErrUnavailable) {
		return ErrUnavailable.Error() + "; retry later"
	}
	return err.Error()
}

func grpcCode(err error) codes.Code {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrForbidden):
		return codes.PermissionDenied
	}
	return codes.Unavailable
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusServiceUnavailable
}

// refuseHTTP writes a refusal in Titus's error shape. apiauth writes its
// own (rather than use the job API's) because it sits in front of every
// API, the migration API included.
func refuseHTTP(w http.ResponseWriter, err error) {
	code := httpStatus(err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vk-titus"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
	}{code, clientMessage(err)})
}
