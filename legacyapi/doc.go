// Package legacyapi is the Titus v3 job API as the tools that predate
// Kubernetes call it, in one implementation of its semantics that both
// wire forms share: REST (/api/v3/jobs, /api/v3/tasks, NewHandler) here,
// gRPC in gateway/grpcapi. Both read and write the generated Titus
// messages (api/titus) — REST as proto3 JSON, strictly, with defaults in
// its answers — and convert them to the types here (proto.go), which is
// what a Backend works on.
//
// What a call means is decided once, here or in a Backend:
//   - descriptors: Limits.Sanitize raises resources to Titus's minimums
//     and fills its defaults, Limits.Validate refuses what no world can
//     run; fields of the definitions no world acts on are kept as proto3
//     JSON and returned as given;
//   - queries: ParseCriteria reads Titus's filtering criteria (every key,
//     an unknown one refused), MatchJob and MatchTask apply them, Project
//     applies field projections;
//   - updates: JobUpdate.Apply and TaskUpdate.Apply, Shrink for a kill with
//     shrink; Backend errors are the sentinels of backend.go, mapped onto
//     Titus's codes by StatusOf (REST) and grpcapi.Code.
//
// The reference legacy master serves the REST form over its own tasks (the
// old world), the gateway over Kubernetes Jobs and Deployments and, by
// migration stage, over both. Client speaks it over HTTP and is itself a
// Backend, which is how the gateway reaches the legacy master; it also
// follows the master's change feed (feed.go, ChangeLog): a snapshot, then
// every change, which the gateway's event streams are built from.
//
// Paging uses one cursor shape everywhere: the (creation time, id) key of
// the last item returned. Every backend orders by that key, so the gateway
// can hand one cursor to both worlds and merge what they answer (Merge)
// without either knowing of the other.
package legacyapi
