package master

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	mmaster "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"

	"github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

var (
	opsCred   = &mesosauth.Credential{Principal: "ops", Secret: "ops-secret"}
	agentCred = &mesosauth.Credential{Principal: "agent", Secret: "agent-secret"}
	wrongCred = &mesosauth.Credential{Principal: "ops", Secret: "wrong"}
	// masterCred is what the master sends to agents.
	masterCred = &mesosauth.Credential{Principal: "master", Secret: "master-secret"}
)

func authFlags(rw, ro bool) mesosauth.Flags {
	return mesosauth.Flags{ReadWrite: rw, ReadOnly: ro, Credentials: mesosauth.Credentials{*opsCred, *agentCred}}
}

// do sends method path (JSON body) with cred (nil: none) and returns the
// status.
func do(t *testing.T, method, url string, body any, cred *mesosauth.Credential) int {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Transport: cred.Wrap(nil), Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") != `Basic realm="mesos"` {
		t.Errorf("%s %s: 401 without the challenge", method, url)
	}
	return res.StatusCode
}

// TestHTTPAuthReadWrite: with --authenticate_http_readwrite every endpoint
// but /health and GET_HEALTH demands credentials, agents register with
// theirs, and the master sends its own to agents that demand them.
func TestHTTPAuthReadWrite(t *testing.T) {
	m := startMaster(t, "m", "", func(c *Config) {
		c.HTTPAuth = authFlags(true, false)
		c.AgentClient.Credential = masterCred
	})
	if _, err := call(t, m.url, calls.GetHealth()); err != nil {
		t.Fatalf("GET_HEALTH without credentials: %v", err)
	}
	if code := do(t, http.MethodGet, m.url+"/health", nil, nil); code != http.StatusOK {
		t.Fatalf("/health: %d", code)
	}
	for _, c := range []*mesosauth.Credential{nil, wrongCred} {
		for _, mc := range []func() *callT{calls.GetAgents, calls.GetTasks, calls.GetMaster, calls.GetVersion} {
			if _, err := call(t, m.url, mc(), c); !apierrors.CodeNotAuthenticated.Matches(err) {
				t.Errorf("%s with %v: %v, want 401", mc().Type, c, err)
			}
		}
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/api/v3/jobs"}, {http.MethodPost, "/api/v3/jobs"},
			{http.MethodGet, protocol.TasksPath}, {http.MethodPost, protocol.TasksPath},
			{http.MethodDelete, protocol.TasksPath + "/x"}, {http.MethodPost, protocol.RegisterPath},
		} {
			if code := do(t, r.method, m.url+r.path, map[string]string{}, c); code != http.StatusUnauthorized {
				t.Errorf("%s %s with %v: %d, want 401", r.method, r.path, c, code)
			}
		}
	}
	if code := do(t, http.MethodGet, m.url+"/api/v3/jobs", nil, opsCred); code != http.StatusOK {
		t.Errorf("GET /api/v3/jobs with credentials: %d", code)
	}

	// An agent without its credential is refused; with it, it registers.
	startAgent(t, "anonymous", m.url, "cpus:1;mem:256")
	startAgent(t, "agent-0", m.url, "cpus:2;mem:1024", func(c *agent.Config) {
		c.Credential = agentCred
		c.HTTPAuth = mesosauth.Flags{ReadWrite: true, Credentials: mesosauth.Credentials{*masterCred}}
	})
	eventually(t, 10*time.Second, "agent-0 registered", func() bool {
		res, err := call(t, m.url, calls.GetAgents(), opsCred)
		return err == nil && len(res.GetGetAgents().GetAgents()) == 1
	})
	if as := m.Agents(); len(as) != 1 || as[0].Info.ID.Value != "agent-0" {
		t.Fatalf("registered agents: %+v", as)
	}

	// The legacy launch path reaches the agent, which demands credentials
	// too, with the master's.
	tid, err := m.LaunchTask(context.Background(), TaskSpec{Name: "auth", Command: "sleep 30", Resources: Resources{"cpus": 0.5, "mem": 64}})
	if err != nil {
		t.Fatalf("launch through an authenticating agent: %v", err)
	}
	if task, _ := m.Task(tid); task.State != mesos.TASK_RUNNING {
		t.Fatalf("task %v: %s", task.State, task.Message)
	}
	if err := m.KillTask(context.Background(), tid); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "TASK_KILLED", func() bool { task, _ := m.Task(tid); return task.State == mesos.TASK_KILLED })
}

// TestHTTPAuthReadOnly: --authenticate_http_readonly alone protects reads;
// writes, registrations included, stay open.
func TestHTTPAuthReadOnly(t *testing.T) {
	m := startMaster(t, "m", "", func(c *Config) { c.HTTPAuth = authFlags(false, true) })
	if _, err := call(t, m.url, calls.GetAgents()); !apierrors.CodeNotAuthenticated.Matches(err) {
		t.Fatalf("GET_AGENTS without credentials: %v, want 401", err)
	}
	if code := do(t, http.MethodGet, m.url+"/api/v3/jobs", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /api/v3/jobs without credentials: %d", code)
	}
	startAgent(t, "agent-0", m.url, "cpus:2;mem:1024")
	eventually(t, 10*time.Second, "agent-0 registered without credentials", func() bool { return len(m.Agents()) == 1 })
	if _, err := call(t, m.url, calls.GetAgents(), opsCred); err != nil {
		t.Fatalf("GET_AGENTS with credentials: %v", err)
	}
}

func TestMasterCallRealms(t *testing.T) {
	if r := callRealm(calls.GetHealth().Type); r != mesosauth.Open {
		t.Errorf("GET_HEALTH: %s", r)
	}
	for _, c := range []*callT{calls.GetAgents(), calls.GetTasks(), calls.GetMaster(), calls.GetVersion()} {
		if r := callRealm(c.Type); r != mesosauth.ReadOnly {
			t.Errorf("%s: %s", c.Type, r)
		}
	}
	for _, name := range []string{"RESERVE_RESOURCES", "TEARDOWN", "MARK_AGENT_GONE", "UPDATE_QUOTA", "UNKNOWN"} {
		if r := callRealm(callType(t, name)); r != mesosauth.ReadWrite {
			t.Errorf("%s: %s", name, r)
		}
	}
}

type callT = mmaster.Call

func callType(t *testing.T, name string) mmaster.Call_Type {
	v, ok := mmaster.Call_Type_value[name]
	if !ok {
		t.Fatalf("no call type %s", name)
	}
	return mmaster.Call_Type(v)
}
