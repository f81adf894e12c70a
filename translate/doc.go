// Package translate maps Kubernetes pods to the payloads a Mesos agent runs
// (CommandInfo, ContainerInfo, Resources) and carries the legacy container
// spec in a pod annotation.
//
// The story, as Titus told it: the legacy platform described a container as a
// Mesos ContainerInfo, and many tools still produce one. Kubernetes has no
// field for it, so the ContainerInfo travels base64-encoded in the pod
// annotation AnnotationContainerInfo. When a pod carries that annotation it
// is authoritative for the pod's main container; when it does not, the
// ContainerInfo is derived from the pod spec and handed back so the caller
// can write it onto the pod, making the next translation (after a restart of
// the bridge, say) reproduce exactly the same container.
//
// Authoritative, but never beyond the spec: admission (PodSecurity, image
// policies, the node authorizer's view of which secrets a pod may read) sees
// the pod spec and not the annotation. So every launch, annotated or
// derived, passes the policy (policy.go) before anything is resolved: a
// host path, a privilege, a capability, a host namespace, a user, an image
// or a secret reference must each be granted by the matching spec field,
// and what no spec field can grant is refused outright. A refusal is a
// *PolicyError naming the field; it wraps ErrInvalidSpec, so the caller
// fails the pod. docs/security.md holds the mapping table.
//
// Invariants:
//   - every Launch returned by PodLaunches was validated (the rules of
//     DecodeContainerInfo) and passed the policy against its own
//     container's spec, before its references were resolved;
//   - an annotation this package writes holds references only, never
//     secret data;
//   - container and volume names are DNS-1123 labels, unique, as the API
//     server requires: container ids and sandbox paths are built from them.
//
// The package is pure: no clients, no clock, no I/O, no locks. Its only
// package state is the wire schema, built once under a sync.Once and read
// only after that. What a pod
// references by name (config maps, secrets) comes through a Resolver, and
// only ever lands in the Launch handed to the agent, never in the
// annotation: the annotation holds Mesos secret REFERENCEs with names this
// package owns,
//
//	configmap:<namespace>/<name>[?optional]
//	secret:<namespace>/<name>[?optional]
//	downward:<fieldPath>
//
// which PodLaunches resolves into secret VALUEs in a copy. A reference
// without a key stands for every key of the object, one file per key under
// the volume's container path. The policy refuses references with other
// names: they would reach a secret store outside Kubernetes, which no pod
// spec can name.
//
// This package and the agent client are the only parts of the bridge that
// import mesos-go; everyone else passes Launch through untouched.
package translate
