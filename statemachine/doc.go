// Package statemachine is the lifecycle of a pod and of each of its legacy
// containers (one Mesos container per pod container run) as data.
//
// Kubernetes has no formal pod state machine and Mesos has a task state
// machine the kubelet never heard of; the bridge has to speak both and Titus
// on top. Rather than scattering that knowledge across handlers, every
// transition lives in two tables:
//
//   - the container table (Table): (state, event) → (next state, actions,
//     kubelet event to record);
//   - the pod table (PodTable): (pod state, pod event) → (next pod state,
//     what the pod asks of its containers): init containers one at a time in
//     order, native sidecars started and kept running, the app containers,
//     deletion, release, adoption. Progress derives the pod event from the
//     containers' states after each container transition.
//
// Step and StepPod are pure: they look the pair up and hand back what must be
// done, the caller performs it and feeds the results back as events (the way
// etcd's raft hands back a Ready). A pair that is not in a table is an error,
// so an unexpected event is visible instead of silently dropped.
//
// Invariant (TestDeleteKills checks it over every row): every state in which
// a container may exist on the agent (Info.MayRun) has, on deletion, a path
// through KILL (SIGTERM, the grace period, SIGKILL) and REMOVE, and no path
// ends such a container without a KILL or the agent's word that it ended.
// Lost means unknown, not ended: its deletion sends SIGKILL before REMOVE.
// Removed is entered only from Removing, and Removing only with a REMOVE: a
// REMOVE the agent did not take is sent again, so the pod is released only
// once nothing of it is left on the agent.
//
// The same package maps each state to what every consumer shows: the
// Kubernetes pod phase and container state, the Mesos TaskState and the Titus
// task state, so the provider and the legacy job API read one source. The
// package holds no state and takes no locks.
package statemachine
