package mesosauth

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrUnauthorized: a server answered 401, refusing the credential sent or
// demanding one where none is configured. Retrying the same call cannot
// help until an operator fixes the configuration.
var ErrUnauthorized = errors.New("unauthorized (401)")

// Unauthorized words a 401 from server ("agent 127.0.0.1:5051") for the
// operator: which server refused, and flag, the option that configures
// the credential ("--mesos-credentials"). c is the credential sent, nil
// when none was. The result wraps ErrUnauthorized.
func Unauthorized(server, flag string, c *Credential) error {
	if c == nil {
		return fmt.Errorf("%s: %w: check %s (no credential is configured)", server, ErrUnauthorized, flag)
	}
	return fmt.Errorf("%s: %w: check %s (principal %q was refused)", server, ErrUnauthorized, flag, c.Principal)
}

// Wrap returns rt sending c as HTTP Basic authentication on every request.
// A nil c returns rt unchanged; a nil rt stands for
// http.DefaultTransport. The request is cloned, never modified, as
// RoundTripper's contract asks; its body (a stream, for ATTACH_CONTAINER_INPUT)
// is passed along as is.
func (c *Credential) Wrap(rt http.RoundTripper) http.RoundTripper {
	if c == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &basicAuth{rt: rt, cred: *c}
}

// basicAuth is Wrap's RoundTripper.
type basicAuth struct {
	rt   http.RoundTripper
	cred Credential
}

func (b *basicAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.SetBasicAuth(b.cred.Principal, b.cred.Secret)
	return b.rt.RoundTrip(r)
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on to the
// wrapped transport.
func (b *basicAuth) CloseIdleConnections() {
	if ci, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
