package ownership

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Names, labels and annotations of the Leases (all in the bridge's
// namespace) and of the Node objects.
const (
	// LabelLease marks the Leases this package reads: "replica" for a
	// membership lease, "node" for a node's ownership lease. The informer
	// selects on it.
	LabelLease = "vk-titus.io/lease"
	// AnnotationOwner, on a Node object, names the replica serving it. The
	// owner writes it; `vk-titus fleet status` compares it with the lease.
	AnnotationOwner = "vk-titus.io/owner"

	kindReplica = "replica"
	kindNode    = "node"

	replicaPrefix = "vk-titus-replica-"
	nodePrefix    = "vk-titus-node-"

	// The lease name cannot hold every node name (the prefix takes room),
	// so the node and replica are also annotated: they are what is read.
	annotationNode    = "vk-titus.io/node"
	annotationReplica = "vk-titus.io/replica"
	// A replica's node set, as a hash and a count: a replica hands a node
	// over only to one that serves the same set (it knows the node).
	annotationNodesHash  = "vk-titus.io/nodes-hash"
	annotationNodesCount = "vk-titus.io/nodes-count"
	// The writing process, so that a restarted replica (same identity)
	// tells its predecessor's leases, which it adopts, from its own.
	annotationIncarnation = "vk-titus.io/incarnation"
)

// NodeLeaseName is the name of node's ownership lease.
func NodeLeaseName(node string) string { return nodePrefix + node }

// ReplicaLeaseName is the name of a replica's membership lease.
func ReplicaLeaseName(identity string) string { return replicaPrefix + identity }

// validName checks that prefix+name is a valid Lease name (and so that name
// is usable as a node name or identity).
func validName(prefix, name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if errs := validation.IsDNS1123Subdomain(prefix + name); len(errs) > 0 {
		return fmt.Errorf("%q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// lease is a Lease as this replica observed it. Its expiry (core.expiry)
// is judged on the local clock from observedAt, the local time at which its
// content last changed (a new resourceVersion), never from the holder's
// timestamps: the holder's clock may be off, the local one is what this
// replica acts on.
type lease struct {
	obj         *coordinationv1.Lease // as observed; the base of the next write; never modified
	kind        string                // kindReplica or kindNode
	key         string                // identity or node name
	holder      string
	duration    time.Duration
	observedAt  time.Time
	incarnation string
	nodesHash   string // replicas only
}

// parseLease reads what the core needs from a Lease; ok is false for a
// Lease that is not one of this package's.
func parseLease(l *coordinationv1.Lease, observedAt time.Time) (*lease, bool) {
	o := &lease{obj: l, kind: l.Labels[LabelLease], observedAt: observedAt,
		incarnation: l.Annotations[annotationIncarnation], nodesHash: l.Annotations[annotationNodesHash]}
	switch o.kind {
	case kindNode:
		o.key = l.Annotations[annotationNode]
		if o.key == "" {
			o.key = strings.TrimPrefix(l.Name, nodePrefix)
		}
	case kindReplica:
		o.key = l.Annotations[annotationReplica]
		if o.key == "" {
			o.key = strings.TrimPrefix(l.Name, replicaPrefix)
		}
	default:
		return nil, false
	}
	if l.Spec.HolderIdentity != nil {
		o.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseDurationSeconds != nil {
		o.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return o, true
}

// leaseWriter builds the Leases this replica writes. Writes start from the
// last observed or written object (its resourceVersion makes the write
// conditional) and never modify it.
type leaseWriter struct {
	namespace   string
	identity    string
	incarnation string
	duration    time.Duration
}

func (w leaseWriter) seconds() *int32 {
	s := int32(w.duration / time.Second)
	return &s
}

// acquire makes node's lease held by this replica, from base (nil: a new
// lease).
func (w leaseWriter) acquire(node string, base *coordinationv1.Lease, now time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(now)
	l := base.DeepCopy()
	if l == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: NodeLeaseName(node), Namespace: w.namespace}}
	}
	w.meta(l, kindNode)
	l.Annotations[annotationNode] = node
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != w.identity {
		n := int32(0)
		if l.Spec.LeaseTransitions != nil {
			n = *l.Spec.LeaseTransitions + 1
		}
		l.Spec.LeaseTransitions = &n
	}
	id := w.identity
	l.Spec.HolderIdentity = &id
	l.Spec.LeaseDurationSeconds = w.seconds()
	l.Spec.AcquireTime = &t
	l.Spec.RenewTime = &t
	return l
}

// release clears the holder, keeping the duration: others see a free lease
// and may take it at once.
func (w leaseWriter) release(base *coordinationv1.Lease) *coordinationv1.Lease {
	l := base.DeepCopy()
	l.Spec.HolderIdentity = nil
	return l
}

// member is this replica's membership lease, from base (nil: a new one),
// announcing the node set it serves by hash and count.
func (w leaseWriter) member(base *coordinationv1.Lease, hash string, count int, now time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(now)
	l := base.DeepCopy()
	if l == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: ReplicaLeaseName(w.identity), Namespace: w.namespace}}
	}
	w.meta(l, kindReplica)
	l.Annotations[annotationReplica] = w.identity
	l.Annotations[annotationNodesHash] = hash
	l.Annotations[annotationNodesCount] = strconv.Itoa(count)
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != w.identity || l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &t
	}
	id := w.identity
	l.Spec.HolderIdentity = &id
	l.Spec.LeaseDurationSeconds = w.seconds()
	l.Spec.RenewTime = &t
	return l
}

// leave is the membership lease without holder: the others stop counting
// this replica, while the node leases it still holds live on.
func (w leaseWriter) leave(base *coordinationv1.Lease, hash string, count int, now time.Time) *coordinationv1.Lease {
	l := w.member(base, hash, count, now)
	l.Spec.HolderIdentity = nil
	return l
}

func (w leaseWriter) meta(l *coordinationv1.Lease, kind string) {
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Labels[LabelLease] = kind
	l.Annotations[annotationIncarnation] = w.incarnation
}

// nodesHash identifies a node set (sorted, no duplicates): equal sets, equal
// hashes.
func nodesHash(sorted []string) string {
	h := sha256.New()
	for _, n := range sorted {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sortedSet returns names sorted, without duplicates.
func sortedSet(names []string) []string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	out := s[:0]
	for i, n := range s {
		if i == 0 || n != s[i-1] {
			out = append(out, n)
		}
	}
	return out
}
