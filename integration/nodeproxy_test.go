package integration

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// The API server's nodes/proxy reaches every virtual node's kubelet API at
// the node's InternalIP: the stack puts it in a network namespace of its own
// (scripts/stack.sh setup_netns), since the API server refuses to proxy to a
// loopback address.
func TestNodeProxyStatsSummaryAndPods(t *testing.T) {
	nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "type=virtual-kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) == 0 {
		t.Fatal("no virtual nodes")
	}
	for _, n := range nodes.Items {
		ip := internalIP(&n)
		if a := net.ParseIP(ip); a == nil || a.IsLoopback() {
			t.Fatalf("node %s: InternalIP %q, want the stack's namespace address (.local/env NODE_IP=%s; `make up` logs why it fell back to loopback)",
				n.Name, ip, env.Vars["NODE_IP"])
		}
		if ip != env.Vars["NODE_IP"] {
			t.Errorf("node %s: InternalIP %s, want NODE_IP %s", n.Name, ip, env.Vars["NODE_IP"])
		}
	}

	create(t, virtualPod("proxied", "sleep 600"))
	waitPod(t, "proxied", 60*time.Second, "Running", phaseIs(corev1.PodRunning))

	// Every node answers /pods through the API server: each has a kubelet
	// port of its own, all reached at the same address.
	for _, n := range nodes.Items {
		var pods corev1.PodList
		raw := kubectl(t, "get", "--raw", "/api/v1/nodes/"+n.Name+"/proxy/pods")
		if err := json.Unmarshal([]byte(raw), &pods); err != nil {
			t.Fatalf("node %s /pods: %v: %s", n.Name, err, raw)
		}
		found := false
		for _, p := range pods.Items {
			if p.Spec.NodeName != n.Name {
				t.Errorf("node %s /pods lists %s/%s of node %q", n.Name, p.Namespace, p.Name, p.Spec.NodeName)
			}
			found = found || p.Namespace == ns && p.Name == "proxied"
		}
		if want := n.Name == env.NodeName; found != want {
			t.Errorf("node %s /pods lists pod proxied: %v, want %v", n.Name, found, want)
		}
	}

	// The summary lists the pod once the agent has measured it.
	path := "/api/v1/nodes/" + env.NodeName + "/proxy/stats/summary"
	deadline := time.Now().Add(60 * time.Second)
	for {
		var sum statsv1alpha1.Summary
		raw := kubectl(t, "get", "--raw", path)
		if err := json.Unmarshal([]byte(raw), &sum); err != nil {
			t.Fatalf("%s: %v: %s", path, err, raw)
		}
		if sum.Node.NodeName != env.NodeName {
			t.Fatalf("%s: summary of node %q", path, sum.Node.NodeName)
		}
		listed := false
		for _, p := range sum.Pods {
			listed = listed || p.PodRef.Namespace == ns && p.PodRef.Name == "proxied"
		}
		if listed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed pod proxied:\n%s", path, raw)
		}
		time.Sleep(time.Second)
	}
	kubectl(t, "delete", "pod", "-n", ns, "proxied", "--wait=false")
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
