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
// The package is pure: no clients, no clock, no I/O. What a pod references
// by name (config maps, secrets) comes through a Resolver, and only ever
// lands in the Launch handed to the agent, never in the annotation: the
// annotation holds Mesos secret REFERENCEs with names this package owns,
//
//	configmap:<namespace>/<name>[?optional]
//	secret:<namespace>/<name>[?optional]
//	downward:<fieldPath>
//
// which PodLaunches resolves into secret VALUEs in a copy. A reference
// without a key stands for every key of the object, one file per key under
// the volume's container path. References with other names are left for the
// agent's own secret resolver.
//
// This package and the agent client are the only parts of the bridge that
// import mesos-go; everyone else passes Launch through untouched.
package translate
