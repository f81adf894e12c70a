// Package legacyapi is the Titus v3 job management REST API (/api/v3/jobs,
// /api/v3/tasks) as the tools that predate Kubernetes call it: proto3 JSON
// (lowerCamelCase fields, enums as strings, 64-bit integers as strings),
// the same paths, the same paging.
//
// The HTTP side (NewHandler) and the wire types live here once; what a call
// does is a Backend's business. The reference legacy master serves it over
// its own tasks (the old world), the gateway over Kubernetes Jobs and
// Deployments and, by migration stage, over both. Client speaks it over
// HTTP and is itself a Backend, which is how the gateway reaches the legacy
// master.
//
// Paging uses one cursor shape everywhere: the (creation time, id) key of
// the last item returned. Every backend orders by that key, so the gateway
// can hand one cursor to both worlds and merge what they answer (Merge)
// without either knowing of the other.
package legacyapi
