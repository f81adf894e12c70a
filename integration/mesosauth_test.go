package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/chaos"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// mesosCall posts a JSON operator call through cli and returns the status,
// the WWW-Authenticate challenge and the body.
func mesosCall(t *testing.T, cli *http.Client, url, body string) (int, string, []byte) {
	t.Helper()
	res, err := cli.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s %s: %v", url, body, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("WWW-Authenticate"), b
}

// TestMesosAuth (issue 13, "the agent refuses unauthenticated calls, and
// the bridge works with credentials"): with the stack's MESOS_AUTH the
// agents and masters answer 401 to a call without credentials or with a
// wrong secret, a refused LAUNCH_CONTAINER starts nothing, the stack's
// credential is let in (through a follower master's redirect too), and a
// pod still runs to completion on the virtual node.
func TestMesosAuth(t *testing.T) {
	if !env.MesosAuth || env.MesosCredential == nil {
		t.Fatal("the stack runs without Mesos authentication (MESOS_AUTH=0 in .local/env): " +
			"restart it with authentication, the default: scripts/stack.sh down; AGENTS=3 MASTERS=2 scripts/stack.sh up")
	}
	if env.LegacyAgent == "" {
		t.Fatal("the stack runs no legacy agent (make up AGENTS=3 MASTERS=2)")
	}
	masters, _ := strconv.Atoi(env.Vars["MASTERS"])
	if masters == 0 {
		t.Fatal("the stack runs no legacy master (make up AGENTS=3 MASTERS=2)")
	}
	const timeout = 30 * time.Second
	agentAPI := env.LegacyAgent + "/api/v1"
	var masterAPIs []string
	for i := 0; i < masters; i++ {
		masterAPIs = append(masterAPIs, env.Vars[fmt.Sprintf("LEGACY_MASTER_%d", i)]+"/api/v1")
	}

	// Liveness stays open, whatever the flags: the probes poll it.
	if code, _, b := mesosCall(t, &http.Client{Timeout: timeout}, agentAPI, `{"type":"GET_HEALTH"}`); code != http.StatusOK {
		t.Errorf("anonymous GET_HEALTH on agent-0: %d %s, want 200 (liveness is never authenticated)", code, b)
	}

	token := fmt.Sprintf("vkt-e2e-mesosauth-%d", time.Now().UnixNano())
	id := "e2e-" + token
	launch := fmt.Sprintf(`{"type":"LAUNCH_CONTAINER","launch_container":{"container_id":{"value":%q},`+
		`"command":{"shell":true,"value":%q},"resources":[`+
		`{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}},{"name":"mem","type":"SCALAR","scalar":{"value":32}}]}}`,
		id, "sleep 600; : "+token)
	wrong := &mesosauth.Credential{Principal: env.MesosCredential.Principal, Secret: env.MesosCredential.Secret + "-wrong"}
	refused := []struct {
		who string
		cli *http.Client
	}{
		{"anonymous", &http.Client{Timeout: timeout}},
		{"wrong secret", &http.Client{Timeout: timeout, Transport: wrong.Wrap(http.DefaultTransport)}},
	}
	type call struct{ what, url, body string }
	calls := []call{
		{"agent-0 GET_AGENT", agentAPI, `{"type":"GET_AGENT"}`},
		{"agent-0 LAUNCH_CONTAINER", agentAPI, launch},
	}
	for i, u := range masterAPIs {
		calls = append(calls, call{fmt.Sprintf("master-%d GET_AGENTS", i), u, `{"type":"GET_AGENTS"}`})
	}
	for _, r := range refused {
		for _, c := range calls {
			code, challenge, b := mesosCall(t, r.cli, c.url, c.body)
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s: %d %s, want 401", r.who, c.what, code, b)
			} else if challenge != `Basic realm="mesos"` {
				t.Errorf("%s %s: 401 with WWW-Authenticate %q, want Basic realm=\"mesos\"", r.who, c.what, challenge)
			}
		}
	}

	// The refused launches started nothing: the agent lists no such
	// container, no process carries the token, no sandbox or launch was
	// made.
	if slices.Contains(agentContainers(t), id) {
		t.Errorf("agent-0 lists container %s, launched without valid credentials", id)
	}
	if pids := processesWith(token); len(pids) > 0 {
		t.Errorf("processes %v run the refused launch", pids)
	}
	if _, err := os.Stat(filepath.Join(env.AgentWorkDir(0), "sandboxes", id)); !os.IsNotExist(err) {
		t.Errorf("the refused launch left a sandbox (stat: %v)", err)
	}
	if runs, err := chaos.ReadLaunchLogs(env.AgentWorkDir(0)); err == nil {
		for _, r := range runs {
			if r.ID == id {
				t.Errorf("agent-0's launch log shows the refused launch: %v", r)
			}
		}
	}

	// The stack's credential is let in. The masters' answers follow a
	// follower's redirect to the leader, so the credential survives it.
	cli := env.MesosClient(timeout)
	if code, _, b := mesosCall(t, cli, agentAPI, `{"type":"GET_AGENT"}`); code != http.StatusOK {
		t.Errorf("GET_AGENT on agent-0 as %s: %d %s, want 200", env.MesosCredential.Principal, code, b)
	}
	for i, u := range masterAPIs {
		code, _, b := mesosCall(t, cli, u, `{"type":"GET_AGENTS"}`)
		if code != http.StatusOK {
			t.Errorf("GET_AGENTS on master-%d as %s: %d %s, want 200", i, env.MesosCredential.Principal, code, b)
			continue
		}
		var out struct {
			GetAgents struct {
				Agents []json.RawMessage `json:"agents"`
			} `json:"get_agents"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.GetAgents.Agents) == 0 {
			t.Errorf("GET_AGENTS on master-%d lists no agent (the agents' registration needs their credential): %v %s", i, err, b)
		}
	}

	// The bridge works with credentials: a pod runs to completion.
	create(t, virtualPod("mesos-auth", "echo authenticated; exit 0"))
	t.Cleanup(func() { kubectl(t, "delete", "pod", "-n", ns, "mesos-auth", "--wait=false") })
	p := waitPod(t, "mesos-auth", 120*time.Second, "Succeeded", phaseIs(corev1.PodSucceeded))
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("container %s: %+v, want terminated with exit code 0", cs.Name, cs.State)
		}
	}
}
