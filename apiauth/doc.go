// Package apiauth decides who may call the job API (Titus's REST and gRPC
// job and migration APIs) and what they may do, with the machinery the
// kubelet API uses, so that a platform team grants rights with ordinary
// RBAC and no second user database exists.
//
// # The story of one request
//
//  1. Credentials. A client certificate verified against the client CA
//     (TLS asks for one but does not demand it, as the kubelet does: see
//     ServerTLS) names the user by its CN and the groups by its O. A bearer
//     token (the Authorization header, or gRPC's "authorization" metadata)
//     is sent to the API server in a TokenReview. With neither, the caller
//     is anonymous: system:anonymous in group system:unauthenticated. A
//     credential that is presented but not accepted is a 401, never a
//     fall-back to anonymous.
//  2. The action. RESTAction and GRPCAction turn a request into a verb on a
//     virtual resource of group titus.vk-titus.io: jobs, tasks or
//     migrations (see Action). A request no rule maps is refused: a route
//     added to a server without a rule here stays closed.
//  3. The decision. Anonymous callers are refused (401) unless
//     Config.AllowAnonymousReads is set and the verb is get, list or watch:
//     writes are never anonymous. Everyone else is asked about in a
//     SubjectAccessReview; a denial is a 403 (gRPC PERMISSION_DENIED).
//  4. The context. An accepted request reaches the server with its
//     Identity in the context (From): the authenticated user beside the
//     caller it declared in Titus's X-Titus-CallerId and X-Titus-CallReason
//     headers, which nothing verifies and which are therefore kept apart.
//
// Health checks (/healthz, /livez, /readyz and gRPC's grpc.health.v1
// service) are open to anyone: a load balancer has no credentials.
//
// # Invariants
//
//   - Writes (create, update, delete) are never served to an anonymous
//     caller, whatever the configuration.
//   - Every answer the API server gives is cached at most Config.CacheSize
//     times per kind (tokens, decisions), each for a short TTL; an error is
//     never cached. However many requests carry the same token or ask the
//     same question at once, one review is in flight for them.
//   - Bearer tokens are never kept or logged: the token cache is keyed by
//     the token's SHA-256.
//
// # Locks
//
// Guard holds no lock of its own: its caches (an LRU with its own mutex)
// and its in-flight reviews (a singleflight group) are safe for concurrent
// use, and everything else is read-only after New.
package apiauth
