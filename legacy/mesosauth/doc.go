// Package mesosauth is HTTP authentication with Mesos' semantics, for both
// ends of the legacy platform's HTTP APIs: the reference agent and master
// enforce it, and the bridge's clients (legacy/agentclient, discovery) and
// the reference agent's registration send it. It is the one place that
// reads credential files, puts HTTP Basic credentials on requests and
// checks them, so no other package handles a secret.
//
// Files, in Mesos' formats:
//
//   - LoadCredentials reads what --http_credentials names:
//     {"credentials": [{"principal": "...", "secret": "..."}, ...]}.
//   - LoadCredential reads what --credential (an agent's credential
//     towards its master) and the bridge's --mesos-credentials name: one
//     {"principal": "...", "secret": "..."}, or Mesos' plain-text form, a
//     single line "principal secret".
//
// Clients: Credential.Wrap puts the credential on every request a
// RoundTripper sends, streaming and long-poll requests and redirected hops
// included (Go's http.Client drops an Authorization header it was given on
// a redirect to another port; a transport-level wrapper never loses it).
// A 401 is an error wrapping ErrUnauthorized, worded by Unauthorized so the
// operator learns which server refused and which flag to check.
//
// Servers: an Authenticator is built from the two Mesos flags and the
// credentials. Every endpoint (and, on /api/v1, every call type) belongs
// to one Realm:
//
//   - Open: never authenticated (liveness: GET /health, GET_HEALTH), so
//     probes keep working whatever the flags.
//   - ReadOnly: authenticated when --authenticate_http_readonly or
//     --authenticate_http_readwrite is set (Mesos puts all of /api/v1 in its
//     read-write realm, so read-write protection covers the reads too).
//   - ReadWrite: authenticated when --authenticate_http_readwrite is set.
//
// A request in a protected realm without valid credentials (none, an
// unknown principal, a wrong secret) gets 401 with
// `WWW-Authenticate: Basic realm="mesos"`; as in Mesos, credentials sent
// to an unprotected endpoint are not looked at.
//
// Invariants: secrets are compared in constant time (subtle on SHA-256
// digests, against every known credential, so neither the secret's length
// nor which principal matched shows in the timing); no secret is ever
// formatted: Credential's String and GoString print the principal only,
// and errors about credential files never quote the file's content. An
// Authenticator is immutable after NewAuthenticator and safe for
// concurrent use; a nil *Authenticator and a nil *Credential mean "no
// authentication".
package mesosauth
