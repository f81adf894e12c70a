package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// reservedCPUs is what the leading master lists as reserved for the
// bridge's role (vk-titus) on agent, from GET_AGENTS' total_resources.
func reservedCPUs(t *testing.T, agent string) float64 {
	t.Helper()
	res, err := env.MesosClient(10*time.Second).Post(env.Vars["LEGACY_MASTER"]+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_AGENTS"}`))
	if err != nil {
		t.Fatalf("GET_AGENTS: %v", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET_AGENTS: %s %s", res.Status, raw)
	}
	var out struct {
		GetAgents struct {
			Agents []struct {
				AgentInfo struct {
					ID struct{ Value string } `json:"id"`
				} `json:"agent_info"`
				TotalResources []struct {
					Name   string
					Scalar struct{ Value float64 }
					// Reservations are in the refined format.
					Reservations []struct{ Role string }
				} `json:"total_resources"`
			} `json:"agents"`
		} `json:"get_agents"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("GET_AGENTS: %v", err)
	}
	sum := 0.0
	for _, a := range out.GetAgents.Agents {
		if a.AgentInfo.ID.Value != agent {
			continue
		}
		for _, r := range a.TotalResources {
			if n := len(r.Reservations); r.Name == "cpus" && n > 0 && r.Reservations[n-1].Role == "vk-titus" {
				sum += r.Scalar.Value
			}
		}
	}
	return sum
}

func waitReserved(t *testing.T, agent string, d time.Duration, what string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := reservedCPUs(t, agent)
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %g cpus reserved for vk-titus, not %s within %s", agent, got, what, d)
		}
		time.Sleep(time.Second)
	}
}

// legacyOnZone0 asks the master for a legacy task of cpus on agent-0; it
// answers the status, and deletes the task if it was placed.
func legacyOnZone0(t *testing.T, name string, cpus float64) (int, string) {
	t.Helper()
	master := env.Vars["LEGACY_MASTER"]
	code, out := masterPost(t, master, "/internal/tasks", map[string]any{
		"name": name, "command": "sleep 600",
		"resources": map[string]float64{"cpus": cpus, "mem": 64}, "constraints": map[string]string{"zone": "zone-0"}})
	if code == http.StatusCreated {
		masterDelete(t, master, "/internal/tasks/"+fmt.Sprint(out["id"]))
	}
	return code, fmt.Sprint(out["raw"])
}

// TestReservationsFollowPods: a pod's room is reserved for the bridge's
// role on its agent, so the legacy path refuses an agent full of
// reservations; a bridge restart keeps the reservation of the running pod;
// the reservation shrinks once the pod goes.
func TestReservationsFollowPods(t *testing.T) {
	needFleet(t)
	// agent-0 offers 8 cpus; the pod takes 7 of them.
	pod := virtualPod("reserved", "sleep 600")
	pod.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": "zone-0"}
	pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("7")
	create(t, pod)
	waitPod(t, "reserved", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	if got := reservedCPUs(t, "agent-0"); got < 7 {
		t.Fatalf("a running pod of 7 cpus with %g cpus reserved: its room was not reserved before its launch", got)
	}
	if code, raw := legacyOnZone0(t, "over-reserved", 1.5); code != http.StatusConflict || !strings.Contains(raw, "room") {
		t.Fatalf("legacy task onto an agent full of reservations: %d %s, want 409", code, raw)
	}

	if err := env.Stop("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	waitNode(t, "agent-0", 60*time.Second, "Ready", readyNode)
	waitPod(t, "reserved", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	// Once the restarted bridge has its pods back, what is reserved still
	// covers the running pod: it was never given back.
	if code, raw := legacyOnZone0(t, "after-restart", 1.5); code != http.StatusConflict {
		t.Fatalf("legacy task after the bridge restarted: %d %s, want 409 (the reservation kept)", code, raw)
	}
	during := reservedCPUs(t, "agent-0")
	if during < 7 {
		t.Fatalf("after the bridge restarted: %g cpus reserved for a running pod of 7", during)
	}

	kubectl(t, "delete", "pod", "-n", ns, "reserved", "--wait=true", "--timeout=60s")
	// The pod's 7 cpus are given back, but for a quantum's rounding (other
	// tests' pods may hold room on agent-0 too, and one spare quantum is
	// kept). A restarted bridge gives room back only once its first sweep
	// after every pod was admitted has run (the reconciliation interval,
	// a minute).
	waitReserved(t, "agent-0", 2*time.Minute, fmt.Sprintf("down by the pod's cpus from %g", during), func(c float64) bool { return c <= during-6 })
	if code, raw := legacyOnZone0(t, "fits-again", 1.5); code != http.StatusCreated {
		t.Fatalf("legacy task once the pod went: %d %s, want 201", code, raw)
	}
}
