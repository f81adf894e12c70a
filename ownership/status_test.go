package ownership

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestReadStatus(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := leaseWriter{namespace: "vk-titus", identity: "vk-titus-0", incarnation: "1", duration: 12 * time.Second}
	b := leaseWriter{namespace: "vk-titus", identity: "vk-titus-1", incarnation: "2", duration: 12 * time.Second}
	dead := leaseWriter{namespace: "vk-titus", identity: "vk-titus-9", incarnation: "3", duration: 12 * time.Second}
	client := fake.NewSimpleClientset(
		a.member(nil, "h", 3, now.Add(-2*time.Second)),
		b.member(nil, "h", 3, now.Add(-time.Second)),
		dead.member(nil, "h", 3, now.Add(-time.Minute)),
		a.acquire("agent-1", nil, now.Add(-3*time.Second)),
		b.acquire("agent-2", nil, now.Add(-time.Second)),
		a.release(a.acquire("agent-3", nil, now.Add(-5*time.Second))),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "agent-1", Labels: map[string]string{"type": "virtual-kubelet"},
			Annotations: map[string]string{AnnotationOwner: "vk-titus-0"}}},
	)
	s, err := ReadStatus(context.Background(), client, "vk-titus", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Replicas) != 3 || s.Replicas[0].Identity != "vk-titus-0" || s.Replicas[0].Nodes != 1 ||
		s.Replicas[0].Age != 2*time.Second || s.Replicas[0].Expired || !s.Replicas[2].Expired {
		t.Fatalf("replicas %+v", s.Replicas)
	}
	if len(s.Nodes) != 3 || s.Nodes[0].Node != "agent-3" || s.Nodes[0].Holder != "" ||
		s.Nodes[1].Node != "agent-1" || s.Nodes[1].NodeOwner != "vk-titus-0" || s.Nodes[2].NodeOwner != "-" {
		t.Fatalf("nodes %+v", s.Nodes)
	}
	var out strings.Builder
	if err := s.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	// agent-1's lease was written 3s ago, its holder's membership 2s ago.
	if n := s.Nodes[1]; n.Age != 2*time.Second || n.Changed != 3*time.Second || n.Expired {
		t.Fatalf("agent-1: %+v, want its holder's renewal age 2s, changed 3s ago", n)
	}
	for _, want := range []string{"REPLICA", "vk-titus-9", "expired", "agent-1", "vk-titus-0", "3s", "free", "HOLDER RENEWED"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
}
