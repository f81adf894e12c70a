// Package discovery finds the legacy platform's control plane for the
// bridge: which Mesos master leads (Detector, from ZooKeeper, exactly as
// Mesos masters record it: the lowest "json.info_" sequence under the
// path, its data MasterInfo JSON) and which agents it knows, with what
// resources (AgentWatcher, polling the leader's operator API with mesos-go's
// httpmaster client).
//
// Both ride out outages of what they watch: the Detector keeps reporting
// the last leader while ZooKeeper is unreachable and re-reads as soon as it
// has a session again; the AgentWatcher keeps the last agent set while the
// master (or ZooKeeper) cannot be asked, and after a leader change keeps
// agents the new leader does not list yet for FailoverGrace, so a failover
// never makes the bridge's virtual nodes flap.
//
// What the bridge gets per agent: id, hostname, the operator API endpoint,
// attributes, total and allocated resources, and Legacy: what the legacy
// platform's live tasks hold (GET_TASKS), so that a node's allocatable can
// be "total − legacy" whether the master is the reference one or a real
// Mesos master. Container ids starting with "vkt-" are the bridge's; every
// other container on an agent is the legacy platform's.
//
// Only this package, translate/ and legacy/agentclient/ import mesos-go on
// the bridge's side.
package discovery
