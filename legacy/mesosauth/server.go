package mesosauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
)

// Realm is how much an endpoint or call needs protecting (see doc.go).
type Realm int

// Realms, from least to most protected by the flags.
const (
	// Open is never authenticated: liveness probes.
	Open Realm = iota
	// ReadOnly is authenticated under --authenticate_http_readonly or
	// --authenticate_http_readwrite.
	ReadOnly
	// ReadWrite is authenticated under --authenticate_http_readwrite.
	ReadWrite
)

func (r Realm) String() string {
	switch r {
	case Open:
		return "open"
	case ReadOnly:
		return "readonly"
	case ReadWrite:
		return "readwrite"
	}
	return "unknown"
}

// Flags are a server's authentication flags, named as Mesos names them.
type Flags struct {
	// ReadOnly is --authenticate_http_readonly.
	ReadOnly bool
	// ReadWrite is --authenticate_http_readwrite.
	ReadWrite bool
	// Credentials are the --http_credentials: who may call.
	Credentials Credentials
}

// String words the flags for logs: what is protected, never the
// credentials.
func (f Flags) String() string {
	switch {
	case f.ReadWrite:
		return fmt.Sprintf("readwrite (%d principals)", len(f.Credentials))
	case f.ReadOnly:
		return fmt.Sprintf("readonly (%d principals)", len(f.Credentials))
	}
	return "off"
}

// Authenticator checks HTTP Basic credentials against a server's
// --http_credentials for the realms its flags protect. A nil
// *Authenticator protects nothing.
type Authenticator struct {
	readOnly, readWrite bool
	// creds hold digests, so every comparison takes the same time whatever
	// the lengths.
	creds []digest
}

type digest struct {
	principal [sha256.Size]byte
	secret    [sha256.Size]byte
}

// NewAuthenticator builds an Authenticator from f. It answers nil (no
// authentication) when neither flag is set, and fails when a flag is set
// without credentials: a server that could let nobody in is a mistake to
// report at start, not a 401 for every caller.
func NewAuthenticator(f Flags) (*Authenticator, error) {
	if !f.ReadOnly && !f.ReadWrite {
		return nil, nil
	}
	if len(f.Credentials) == 0 {
		return nil, errors.New("--authenticate_http_readonly/--authenticate_http_readwrite need --http_credentials")
	}
	a := &Authenticator{readOnly: f.ReadOnly, readWrite: f.ReadWrite}
	for _, c := range f.Credentials {
		if err := c.validate(); err != nil {
			return nil, err
		}
		a.creds = append(a.creds, digest{
			principal: sha256.Sum256([]byte(c.Principal)),
			secret:    sha256.Sum256([]byte(c.Secret)),
		})
	}
	return a, nil
}

// Protects reports whether requests of realm r must be authenticated.
func (a *Authenticator) Protects(r Realm) bool {
	if a == nil {
		return false
	}
	switch r {
	case ReadOnly:
		return a.readOnly || a.readWrite
	case ReadWrite:
		return a.readWrite
	}
	return false
}

// valid reports whether the request carries HTTP Basic credentials of a
// known principal with its secret. Every known credential is compared, in
// constant time.
func (a *Authenticator) valid(r *http.Request) bool {
	user, pass, found := r.BasicAuth()
	if !found || a == nil {
		return false
	}
	p, s := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	match := 0
	for i := range a.creds {
		match |= subtle.ConstantTimeCompare(p[:], a.creds[i].principal[:]) &
			subtle.ConstantTimeCompare(s[:], a.creds[i].secret[:])
	}
	return match == 1
}

// Permits reports whether a request of realm may be served: its realm is
// not protected, or it carries valid credentials. As in Mesos, credentials
// sent to an unprotected endpoint are not looked at.
func (a *Authenticator) Permits(r *http.Request, realm Realm) bool {
	return !a.Protects(realm) || a.valid(r)
}

// Allow is Permits, answering 401 (Refuse) when it is false; the caller
// then just returns.
func (a *Authenticator) Allow(w http.ResponseWriter, r *http.Request, realm Realm) bool {
	if a.Permits(r, realm) {
		return true
	}
	Refuse(w)
	return false
}

// Refuse answers 401 with Mesos' Basic challenge and a plain-text body
// (mesos-go puts the body into its error).
func Refuse(w http.ResponseWriter) {
	const msg = "Unauthorized: this endpoint needs HTTP Basic credentials (--http_credentials)"
	h := w.Header()
	h.Set("WWW-Authenticate", `Basic realm="mesos"`)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(msg))
}

// Guard serves h behind a: realmOf says which realm each request is in
// (by method or path; calls whose realm depends on the body check Allow
// themselves).
func (a *Authenticator) Guard(realmOf func(*http.Request) Realm, h http.Handler) http.Handler {
	if a == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Allow(w, r, realmOf(r)) {
			h.ServeHTTP(w, r)
		}
	})
}

// ByMethod is a realmOf for Guard: GET and HEAD read, anything else
// writes.
func ByMethod(r *http.Request) Realm {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return ReadOnly
	}
	return ReadWrite
}
