// Package kube is the Kubernetes world behind the legacy job API: a
// legacyapi.Backend whose jobs are Kubernetes objects, so the tools that
// speak Titus v3 keep working while their applications move to pods.
//
// A batch job is an Indexed batch/v1 Job (one completion index per task
// slot, each retry a new pod); a service job is an apps/v1 Deployment. Both
// carry the descriptor they were submitted with in an annotation, so a job
// reads back exactly as it was given, and every job record lives in the
// API server: a restarted gateway loses nothing but the memory of pods that
// were already deleted.
//
// A task is one pod, its id the pod's UID. Its Titus state is the one the
// vk-titus provider publishes on the pod (the state machine's word), read
// through statemachine.TitusOf; where the provider has not spoken yet, the
// pod's own status stands in. Pods vanish when they are deleted (scale-down,
// kill), so the last record of each is kept for a while in memory.
//
// Reads come from informer caches, never from list calls per request, and
// every write waits until the cache shows it, so a client that creates a
// job and reads it back at once finds it. The informers' events also name
// what changed in a ChangeLog, from which Observe feeds the gateway's
// event streams the jobs and tasks as the caches show them.
//
// Updates go to the job's object, read fresh: the descriptor annotation
// holds what the job API shows (attributes, disruption budget, processes),
// a Deployment's replicas and annotations its live capacity and flag; a
// task's attributes live in an annotation of its pod.
package kube
