package apiauth

import (
	"context"
	"strings"
	"unicode"
)

// How an Identity was established.
const (
	MethodX509      = "x509"
	MethodToken     = "token"
	MethodAnonymous = "anonymous"
)

// The user and group of callers without credentials, as Kubernetes names
// them.
const (
	AnonymousUser        = "system:anonymous"
	UnauthenticatedGroup = "system:unauthenticated"
	AuthenticatedGroup   = "system:authenticated"
)

// Titus's caller headers: what a client says about itself. gRPC metadata
// keys are their lower-case forms.
const (
	HeaderCallerID   = "X-Titus-CallerId"
	HeaderCallReason = "X-Titus-CallReason"
)

// MaxDeclared bounds a declared caller or reason (bytes); longer values are
// cut. They end up in logs and in the migration history.
const MaxDeclared = 200

// Identity is who made a request: the authenticated user, and beside it
// what the caller declared about itself. Treat it as read-only.
type Identity struct {
	User   string              `json:"user"`
	UID    string              `json:"uid,omitempty"`
	Groups []string            `json:"groups,omitempty"`
	Extra  map[string][]string `json:"extra,omitempty"`
	// Method is MethodX509, MethodToken or MethodAnonymous.
	Method string `json:"method"`
	// CallerID and CallReason are X-Titus-CallerId and X-Titus-CallReason
	// as sent (trimmed, control characters removed, at most MaxDeclared
	// bytes): declared, not verified.
	CallerID   string `json:"callerId,omitempty"`
	CallReason string `json:"callReason,omitempty"`
}

// Anonymous tells whether the request carried no credentials.
func (i Identity) Anonymous() bool { return i.Method == MethodAnonymous }

// IsZero tells whether there is no identity at all: the request did not go
// through a Guard.
func (i Identity) IsZero() bool { return i.User == "" }

func anonymous() Identity {
	return Identity{User: AnonymousUser, Groups: []string{UnauthenticatedGroup}, Method: MethodAnonymous}
}

type ctxKey struct{}

// NewContext returns ctx carrying id: what a Guard does for every request
// it lets through, and what tests and in-process callers do to act as
// someone.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the Identity a Guard put in ctx; the zero Identity (IsZero)
// when the request did not go through one.
func From(ctx context.Context) Identity {
	id, _ := ctx.Value(ctxKey{}).(Identity)
	return id
}

// declared cleans a caller-supplied header value for logs and records.
func declared(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > MaxDeclared {
		v = strings.ToValidUTF8(v[:MaxDeclared], "")
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, v)
}
