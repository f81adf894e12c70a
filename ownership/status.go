package ownership

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Status is the fleet as its Leases (and Node objects) say, for operators.
// Ages are the reader's clock minus the writer's renewTime: unlike the
// replicas' own judgement, they include the clock skew between the two.
type Status struct {
	Namespace string
	Replicas  []ReplicaStatus
	Nodes     []NodeStatus
}

// ReplicaStatus is one membership lease.
type ReplicaStatus struct {
	Identity string
	Age      time.Duration // since its last renewal
	Expired  bool
	Leaving  bool // shutting down: its lease has no holder

	Nodes  int    // node leases it holds
	Serves string // node-set size it announced
}

// NodeStatus is one node lease. A node lease is written only when its
// ownership changes: a held one lives as long as its holder's membership
// lease, so Age is that lease's renewal age (the node lease's own if its
// holder has none, or it is free).
type NodeStatus struct {
	Node        string
	Holder      string // "" free
	Age         time.Duration
	Changed     time.Duration // since the node lease was last written
	Expired     bool
	Transitions int32
	NodeOwner   string // the Node object's vk-titus.io/owner annotation; "-": no Node
}

// ReadStatus lists the Leases of namespace and the virtual nodes, and
// reports them as of now.
func ReadStatus(ctx context.Context, client kubernetes.Interface, namespace string, now time.Time) (*Status, error) {
	leases, err := client.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelLease})
	if err != nil {
		return nil, fmt.Errorf("listing leases in %s: %w", namespace, err)
	}
	// vknode labels its nodes type=virtual-kubelet.
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=virtual-kubelet"})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	owners := make(map[string]string, len(nodes.Items))
	for _, n := range nodes.Items {
		owners[n.Name] = n.Annotations[AnnotationOwner]
	}
	s := &Status{Namespace: namespace}
	held := map[string]int{}
	members := map[string]*coordinationv1.Lease{}
	for i := range leases.Items {
		if l, ok := parseLease(&leases.Items[i], now); ok && l.kind == kindReplica {
			members[l.key] = &leases.Items[i]
		}
	}
	for i := range leases.Items {
		l, ok := parseLease(&leases.Items[i], now)
		if !ok {
			continue
		}
		age, expired := remoteAge(&leases.Items[i], now)
		switch l.kind {
		case kindReplica:
			s.Replicas = append(s.Replicas, ReplicaStatus{Identity: l.key, Age: age, Expired: expired,
				Leaving: l.holder == "", Serves: leases.Items[i].Annotations[annotationNodesCount]})
		case kindNode:
			owner, found := owners[l.key]
			if !found {
				owner = "-"
			}
			changed := age
			if m := members[l.holder]; l.holder != "" && m != nil {
				mAge, mExpired := remoteAge(m, now)
				age, expired = mAge, mExpired && expired
			}
			ns := NodeStatus{Node: l.key, Holder: l.holder, Age: age, Changed: changed, Expired: expired, NodeOwner: owner}
			if t := leases.Items[i].Spec.LeaseTransitions; t != nil {
				ns.Transitions = *t
			}
			s.Nodes = append(s.Nodes, ns)
			if l.holder != "" && !expired {
				held[l.holder]++
			}
		}
	}
	for i := range s.Replicas {
		s.Replicas[i].Nodes = held[s.Replicas[i].Identity]
	}
	slices.SortFunc(s.Replicas, func(a, b ReplicaStatus) int { return cmp.Compare(a.Identity, b.Identity) })
	slices.SortFunc(s.Nodes, func(a, b NodeStatus) int {
		return cmp.Or(cmp.Compare(a.Holder, b.Holder), cmp.Compare(a.Node, b.Node))
	})
	return s, nil
}

// remoteAge is how long ago l was renewed, and whether its duration has
// passed since.
func remoteAge(l *coordinationv1.Lease, now time.Time) (time.Duration, bool) {
	if l.Spec.RenewTime == nil {
		return 0, true
	}
	age := now.Sub(l.Spec.RenewTime.Time)
	d := time.Duration(0)
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return age, age >= d
}

// WriteTable prints the replicas, then the node leases grouped by holder.
// A held node's HOLDER RENEWED is its holder's membership lease age (node
// leases are not renewed); CHANGED is the node lease's own age.
func (s *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "REPLICA\tLEASE AGE\tSTATE\tNODES\tSERVES\n")
	for _, r := range s.Replicas {
		st := state(r.Expired, "live")
		if r.Leaving && !r.Expired {
			st = "leaving"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Identity, age(r.Age), st, r.Nodes, dash(r.Serves))
	}
	fmt.Fprintf(tw, "\nNODE\tHOLDER\tHOLDER RENEWED\tSTATE\tCHANGED\tTRANSITIONS\tNODE OWNER\n")
	for _, n := range s.Nodes {
		st, renewed := state(n.Expired, "held"), age(n.Age)
		if n.Holder == "" {
			st, renewed = "free", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.Node, dash(n.Holder), renewed, st, age(n.Changed), n.Transitions, dash(n.NodeOwner))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing fleet status: %w", err)
	}
	return nil
}

func age(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func state(expired bool, live string) string {
	if expired {
		return "expired"
	}
	return live
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
