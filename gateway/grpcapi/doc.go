// Package grpcapi serves Titus's gRPC job API, com.netflix.titus.
// JobManagementService, as Spinnaker's clouddriver and titus-cli call it on
// port 7104: the second wire form of the gateway, beside REST.
//
// It holds no semantics of its own. Every unary call turns its request
// into the legacyapi call the REST handler makes for the same thing
// (legacyapi.CreateJob, JobUpdate.Check, ParseCriteria, ...) on the same
// legacyapi.Backend, the gateway's router, and its answer into the same
// messages REST writes as JSON; Backend errors map onto Titus's status
// codes (Code). The event streams, ObserveJobs, ObserveJob and
// ObserveJobsWithKeepAlive, read an observe.Hub.
//
// A stream sends its snapshot, then snapshotEnd, then changes. Its sends
// run on a goroutine of their own while the handler waits for them to end
// or for the hub to drop the subscription: a client that stops reading
// cannot hold the handler, which then ends the stream with
// RESOURCE_EXHAUSTED (the blocked send fails as the stream closes).
package grpcapi
