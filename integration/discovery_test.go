package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests need the stack with legacy masters and three agents
// (make test-e2e brings it up so: MASTERS=2 AGENTS=3).
func needFleet(t *testing.T) {
	t.Helper()
	if env.Vars["MASTERS"] == "" || env.Vars["MASTERS"] == "0" || env.Vars["AGENTS"] != "3" {
		t.Fatalf("the discovery tests need `make up MASTERS=2 AGENTS=3` (have MASTERS=%q AGENTS=%q)", env.Vars["MASTERS"], env.Vars["AGENTS"])
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitNode(t *testing.T, name string, d time.Duration, what string, cond func(*corev1.Node, error) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if cond(n, err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: not %s within %s (err %v)", name, what, d, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func readyNode(n *corev1.Node, err error) bool { return err == nil && nodeReady(n) }

// masterPost sends JSON to a legacy master's internal task endpoint, with
// the stack's credential; a master that cannot be reached (or redirects to
// a dead leader) answers 0.
func masterPost(t *testing.T, master, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	res, err := env.MesosClient(30*time.Second).Post(master+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, map[string]any{"raw": err.Error()}
	}
	defer res.Body.Close()
	out := map[string]any{}
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	out["raw"] = string(raw)
	return res.StatusCode, out
}

// leader is the index of the leading master: the one that answers
// GET_MASTER itself (followers redirect, as Mesos masters do).
func leader(t *testing.T) int {
	t.Helper()
	cli := env.MesosClient(5 * time.Second)
	cli.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var answers []string
	for i := 0; i < 2; i++ {
		res, err := cli.Post(env.Vars[fmt.Sprintf("LEGACY_MASTER_%d", i)]+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_MASTER"}`))
		if err != nil {
			answers = append(answers, fmt.Sprintf("master-%d: %v", i, err))
			continue
		}
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			return i
		}
		answers = append(answers, fmt.Sprintf("master-%d: %s", i, res.Status))
	}
	t.Fatalf("no leading master (GET_MASTER: %s)", strings.Join(answers, "; "))
	return -1
}

// masterDelete deletes a legacy task through a master, with the stack's
// credential; errors are ignored (a clean-up).
func masterDelete(t *testing.T, master, path string) {
	req, _ := http.NewRequest(http.MethodDelete, master+path, nil)
	if res, err := env.MesosClient(30 * time.Second).Do(req); err == nil {
		res.Body.Close()
	}
}

func allocatableCPU(t *testing.T, node string) int64 {
	n, err := client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", node, err)
	}
	return n.Status.Allocatable.Cpu().MilliValue()
}

func TestThreeAgentsThreeNodes(t *testing.T) {
	needFleet(t)
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("agent-%d", i)
		waitNode(t, name, 60*time.Second, "Ready", readyNode)
		n, _ := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if got := n.Labels["legacy.vk-titus.io/zone"]; got != fmt.Sprintf("zone-%d", i) {
			t.Errorf("%s zone label %q", name, got)
		}
		if n.Labels["legacy.vk-titus.io/instance_type"] != "m5.large" {
			t.Errorf("%s labels %v", name, n.Labels)
		}
	}
}

func TestNodeSelectorOnAgentAttribute(t *testing.T) {
	needFleet(t)
	pod := virtualPod("zoned", "sleep 600")
	pod.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": "zone-1"}
	create(t, pod)
	p := waitPod(t, "zoned", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	if p.Spec.NodeName != "agent-1" {
		t.Errorf("scheduled on %s, want agent-1", p.Spec.NodeName)
	}
	kubectl(t, "delete", "pod", "-n", ns, "zoned", "--wait=false")
}

// A legacy task placed by the master takes its room away from the
// scheduler; when it ends the room comes back.
func TestLegacyTaskLowersAllocatable(t *testing.T) {
	needFleet(t)
	master := env.Vars["LEGACY_MASTER"]
	before := allocatableCPU(t, "agent-2")
	code, out := masterPost(t, master, "/internal/tasks", map[string]any{
		"name": "legacy-e2e", "command": "sleep 600",
		"resources": map[string]float64{"cpus": 1.5, "mem": 512}, "constraints": map[string]string{"zone": "zone-2"}})
	if code != http.StatusCreated {
		t.Fatalf("legacy launch: %d %v", code, out["raw"])
	}
	id, _ := out["id"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for allocatableCPU(t, "agent-2") != before-1500 {
		if time.Now().After(deadline) {
			t.Fatalf("agent-2 allocatable cpu %dm, want %dm", allocatableCPU(t, "agent-2"), before-1500)
		}
		time.Sleep(time.Second)
	}
	masterDelete(t, master, "/internal/tasks/"+id)
	deadline = time.Now().Add(30 * time.Second)
	for allocatableCPU(t, "agent-2") != before {
		if time.Now().After(deadline) {
			t.Fatalf("agent-2 allocatable cpu %dm after the task ended, want %dm", allocatableCPU(t, "agent-2"), before)
		}
		time.Sleep(time.Second)
	}
}

// Pods hold room on a shared agent as far as the legacy master is
// concerned: it refuses a legacy task that no longer fits.
func TestPodsFillAgentForLegacyPath(t *testing.T) {
	needFleet(t)
	// agent-1 offers 4 cpus.
	pod := virtualPod("filler", "sleep 600")
	pod.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": "zone-1"}
	pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("3800m")
	create(t, pod)
	waitPod(t, "filler", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	master := env.Vars["LEGACY_MASTER"]
	var code int
	var out map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out = masterPost(t, master, "/internal/tasks", map[string]any{
			"name": "wont-fit", "command": "sleep 600",
			"resources": map[string]float64{"cpus": 1, "mem": 64}, "constraints": map[string]string{"zone": "zone-1"}})
		if code != http.StatusCreated || time.Now().After(deadline) {
			break
		}
		masterDelete(t, master, "/internal/tasks/"+fmt.Sprint(out["id"]))
		time.Sleep(time.Second)
	}
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(out["raw"]), "room") {
		t.Errorf("legacy launch onto a full agent: %d %v", code, out["raw"])
	}
	kubectl(t, "delete", "pod", "-n", ns, "filler", "--wait=false")
}

// An agent that dies: its node goes NotReady, then (once the master declares
// the agent gone) its pods fail as NodeLost and the node is removed; the
// agent coming back brings its node back.
func TestAgentDeparture(t *testing.T) {
	needFleet(t)
	pod := virtualPod("doomed", "sleep 600")
	pod.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": "zone-2"}
	create(t, pod)
	waitPod(t, "doomed", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	if err := env.Kill("agent-2"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitNode(t, "agent-2", 40*time.Second, "NotReady", func(n *corev1.Node, err error) bool { return err == nil && !nodeReady(n) })
	t.Logf("NotReady %s after the agent died", time.Since(start).Round(time.Second))
	p := waitPod(t, "doomed", 90*time.Second, "Failed NodeLost", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "NodeLost"
	})
	t.Logf("NodeLost %s after the agent died: %s", time.Since(start).Round(time.Second), p.Status.Message)
	waitNode(t, "agent-2", 60*time.Second, "removed", func(_ *corev1.Node, err error) bool { return apierrors.IsNotFound(err) })
	if err := env.Start("agent-2"); err != nil {
		t.Fatal(err)
	}
	waitNode(t, "agent-2", 60*time.Second, "back and Ready", readyNode)
}

// Killing the leading master: the other leads, vk-titus follows it, and
// nothing that runs is launched again.
func TestMasterFailover(t *testing.T) {
	needFleet(t)
	token := fmt.Sprintf("vkt-e2e-failover-%d", time.Now().UnixNano())
	pod := virtualPod("survivor", "sleep 600; : "+token)
	pod.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": "zone-0"}
	create(t, pod)
	waitPod(t, "survivor", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	before := processesWith(token)
	launchesBefore := metricValue(scrape(t), `vktitus_agent_calls_total{call="launch_container",outcome="ok"}`)

	lead := leader(t)
	if err := env.Kill(fmt.Sprintf("master-%d", lead)); err != nil {
		t.Fatal(err)
	}
	// The follower takes over once the leader's ZooKeeper session expires;
	// then a legacy task placed through it shows on the nodes.
	other := env.Vars[fmt.Sprintf("LEGACY_MASTER_%d", 1-lead)]
	start := time.Now()
	var code int
	var out map[string]any
	for time.Since(start) < 60*time.Second {
		code, out = masterPost(t, other, "/internal/tasks", map[string]any{
			"name": "after-failover", "command": "sleep 600",
			"resources": map[string]float64{"cpus": 1, "mem": 64}, "constraints": map[string]string{"zone": "zone-0"}})
		if code == http.StatusCreated {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != http.StatusCreated {
		t.Fatalf("master-1 never took over: %d %v", code, out["raw"])
	}
	t.Logf("master-%d leads %s after master-%d died", 1-lead, time.Since(start).Round(100*time.Millisecond), lead)
	base := allocatableCPU(t, "agent-0")
	deadline := time.Now().Add(40 * time.Second)
	for allocatableCPU(t, "agent-0") == base {
		if time.Now().After(deadline) {
			t.Fatalf("vk-titus did not follow the new leader: agent-0 allocatable unchanged")
		}
		time.Sleep(time.Second)
	}
	t.Logf("vk-titus followed the new leader %s after the old one died", time.Since(start).Round(time.Second))
	masterDelete(t, other, "/internal/tasks/"+fmt.Sprint(out["id"]))
	if after := processesWith(token); len(after) != 1 || len(before) != 1 || after[0] != before[0] {
		t.Errorf("the pod's process changed across the failover: %v -> %v", before, after)
	}
	if got := metricValue(scrape(t), `vktitus_agent_calls_total{call="launch_container",outcome="ok"}`); got != launchesBefore {
		t.Errorf("launches during the failover: %v -> %v", launchesBefore, got)
	}
	waitNode(t, "agent-0", 5*time.Second, "Ready", readyNode)
	if err := env.Start(fmt.Sprintf("master-%d", lead)); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "delete", "pod", "-n", ns, "survivor", "--wait=false")
}

// With ZooKeeper gone for a while vk-titus keeps serving the nodes it knows,
// and it follows the masters again once ZooKeeper is back.
func TestZooKeeperOutage(t *testing.T) {
	needFleet(t)
	if err := env.Stop("zookeeper"); err != nil {
		t.Fatal(err)
	}
	create(t, virtualPod("during-outage", "exit 0"))
	waitPod(t, "during-outage", 60*time.Second, "Succeeded", phaseIs(corev1.PodSucceeded))
	time.Sleep(5 * time.Second)
	for i := 0; i < 3; i++ {
		waitNode(t, "agent-"+strconv.Itoa(i), 5*time.Second, "Ready during the outage", readyNode)
	}
	if err := env.Start("zookeeper"); err != nil {
		t.Fatal(err)
	}
	// Following the masters again: a legacy task shows on a node (agent-2,
	// the roomiest, so nothing earlier tests left behind can crowd it).
	master := env.Vars["LEGACY_MASTER"]
	before := allocatableCPU(t, "agent-2")
	var id, last string
	deadline := time.Now().Add(120 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		for _, m := range []string{master, env.Vars["LEGACY_MASTER_1"]} {
			code, out := masterPost(t, m, "/internal/tasks", map[string]any{
				"name": "after-zk", "command": "sleep 600",
				"resources": map[string]float64{"cpus": 0.5, "mem": 64}, "constraints": map[string]string{"zone": "zone-2"}})
			if code == http.StatusCreated {
				id, master = fmt.Sprint(out["id"]), m
				break
			}
			last = fmt.Sprintf("%s: %d %v", m, code, out["raw"])
		}
		time.Sleep(time.Second)
	}
	if id == "" {
		t.Fatalf("no master took a legacy task after ZooKeeper came back; last answer %s", last)
	}
	for allocatableCPU(t, "agent-2") == before {
		if time.Now().After(deadline) {
			t.Fatal("vk-titus did not follow the masters after ZooKeeper came back")
		}
		time.Sleep(time.Second)
	}
	masterDelete(t, master, "/internal/tasks/"+id)
}
