// Package statemachine is the lifecycle of one legacy container (one Mesos
// task, one pod container) as data.
//
// Kubernetes has no formal pod state machine and Mesos has a task state
// machine the kubelet never heard of; the bridge has to speak both and Titus
// on top. Rather than scattering that knowledge across handlers, every
// transition lives in one table (Table): (state, event) → (next state,
// actions, kubelet event to record). Step is pure: it looks the pair up and
// hands back what must be done, the caller performs it (the way etcd's raft
// hands back a Ready). A pair that is not in the table is an error, so an
// unexpected event is visible instead of silently dropped.
//
// The same package maps each state to what every consumer shows: the
// Kubernetes pod phase and container state, the Mesos TaskState and the Titus
// task state, so the provider and the legacy job API read one source.
package statemachine
