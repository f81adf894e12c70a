package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpmaster"
	mmaster "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/internal/testlog"
	"github.com/vk-titus/vk-titus/internal/zktest"
	"github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/translate"
)

func testLogger(name string) logrus.FieldLogger { return testlog.New().WithField("who", name) }

type testMaster struct {
	*Master
	url string
}

func startMaster(t *testing.T, name, zkURL string, mod ...func(*Config)) *testMaster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Listen:           ln.Addr().String(),
		ZK:               zkURL,
		ID:               name,
		AgentTimeout:     2 * time.Second,
		ZKSessionTimeout: 4 * time.Second,
		KillGrace:        time.Second,
		Logger:           testLogger(name),
	}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(m.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		srv.Close()
	})
	return &testMaster{Master: m, url: srv.URL}
}

type testAgent struct {
	a      *agent.Agent
	url    string
	cancel context.CancelFunc // stops heartbeating
	done   chan struct{}
}

func startAgent(t *testing.T, id, master, resources string, mod ...func(*agent.Config)) *testAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		WorkDir:           t.TempDir(),
		Listen:            ln.Addr().String(),
		AgentID:           id,
		Resources:         resources,
		Attributes:        "zone:zone-" + id + ";instance_type:m5.large",
		Logger:            testLogger(id),
		Master:            master,
		HeartbeatInterval: 300 * time.Millisecond,
	}
	for _, f := range mod {
		f(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := a.NewRegistrar()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(reg.Wrap(a.Handler()))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{a: a, url: srv.URL, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(ta.done); reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ta.done
		a.Close()
		srv.Close()
	})
	return ta
}

// operator is an operator API client of the master at url, sending cred
// (nil: none) with every call.
func operator(url string, cred ...*mesosauth.Credential) calls.Sender {
	var c *mesosauth.Credential
	if len(cred) > 0 {
		c = cred[0]
	}
	cli := httpcli.New(
		httpcli.Endpoint(url+"/api/v1"),
		httpcli.Do(httpcli.With(httpcli.Timeout(5*time.Second), httpcli.WrapRoundTripper(c.Wrap))),
	)
	return httpmaster.NewSender(cli.Send)
}

func call(t *testing.T, url string, c *mmaster.Call, cred ...*mesosauth.Credential) (*mmaster.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := operator(url, cred...).Send(ctx, calls.NonStreaming(c))
	if res != nil {
		defer res.Close()
	}
	if err != nil {
		return nil, err
	}
	var out mmaster.Response
	if err := res.Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

func getAgents(t *testing.T, url string) []mmaster.Response_GetAgents_Agent {
	t.Helper()
	res, err := call(t, url, calls.GetAgents())
	if err != nil {
		t.Fatalf("GET_AGENTS: %v", err)
	}
	return res.GetGetAgents().GetAgents()
}

func eventually(t *testing.T, within time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func scalar(rs []mesos.Resource, name string) float64 {
	return scalarsOf(rs)[name]
}

func leaders(ms ...*testMaster) []*testMaster {
	var out []*testMaster
	for _, m := range ms {
		if m.IsLeader() {
			out = append(out, m)
		}
	}
	return out
}

func TestElectionFailoverAndRedirect(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m1 := startMaster(t, "m1", zkURL)
	eventually(t, 10*time.Second, "m1 to lead", m1.IsLeader)
	m2 := startMaster(t, "m2", zkURL)

	d, err := discovery.NewDetector(zkURL, testLogger("detector"), discovery.WithSessionTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	eventually(t, 10*time.Second, "detector to see m1", func() bool { l, ok := d.Leader(); return ok && l.ID == "m1" })
	eventually(t, 10*time.Second, "m2 to know m1 leads", func() bool { l, ok := m2.Leader(); return ok && l.ID == "m1" })
	if l := leaders(m1, m2); len(l) != 1 {
		t.Fatalf("%d leaders", len(l))
	}

	// What the leader wrote is a Mesos MasterInfo.
	res, err := call(t, m1.url, calls.GetMaster())
	if err != nil {
		t.Fatal(err)
	}
	mi := res.GetGetMaster().GetMasterInfo()
	if mi.GetID() != "m1" || mi.GetIP() != 16777343 || mi.GetAddress().GetIP() != "127.0.0.1" {
		t.Fatalf("GET_MASTER: %+v", mi)
	}

	// A follower answers health itself and redirects the rest to the
	// leader; mesos-go reports the 307 as CodeNotLeader.
	if _, err := call(t, m2.url, calls.GetHealth()); err != nil {
		t.Fatalf("GET_HEALTH on the follower: %v", err)
	}
	if _, err := call(t, m2.url, calls.GetAgents()); !apierrors.CodeNotLeader.Matches(err) {
		t.Fatalf("GET_AGENTS on the follower: %v, want CodeNotLeader", err)
	}
	req, _ := http.NewRequest(http.MethodPost, m2.url+"/api/v1", strings.NewReader(`{"type":"GET_AGENTS"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != m1.url+"/api/v1" {
		t.Fatalf("follower answered %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The private endpoints redirect too; Go's client follows with the body
	// (the leader then says it has no agents).
	code, _, body := postTask(t, m2.url, protocol.TaskRequest{Name: "r", Command: "true", Resources: map[string]float64{"cpus": 0.1, "mem": 8}})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no agent is registered") {
		t.Fatalf("POST /internal/tasks via the follower: %d %s", code, body)
	}

	// The leader's session ends (as when it crashes): m2 leads, the
	// detector follows, and m1 contends again as a follower.
	start := time.Now()
	m1.contender.dropSession()
	eventually(t, 10*time.Second, "m2 to lead", m2.IsLeader)
	elected := time.Since(start)
	eventually(t, 10*time.Second, "detector to see m2", func() bool { l, ok := d.Leader(); return ok && l.ID == "m2" })
	detected := time.Since(start)
	t.Logf("failover: m2 elected %v after m1's session ended; detector followed after %v", elected, detected)
	eventually(t, 10*time.Second, "m1 to follow m2", func() bool { l, ok := m1.Leader(); return ok && l.ID == "m2" })
	if l := leaders(m1, m2); len(l) != 1 || l[0] != m2 {
		t.Fatalf("leaders after failover: %v", l)
	}
	if _, err := call(t, m1.url, calls.GetAgents()); !apierrors.CodeNotLeader.Matches(err) {
		t.Fatalf("GET_AGENTS on the old leader: %v, want CodeNotLeader", err)
	}

	// A graceful stop hands over at once too.
	m2.Stop()
	eventually(t, 10*time.Second, "m1 to lead again", m1.IsLeader)
	eventually(t, 10*time.Second, "detector to see m1", func() bool { l, ok := d.Leader(); return ok && l.ID == "m1" })
}

func TestAgentRegistrationAndFailover(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m1 := startMaster(t, "m1", zkURL)
	eventually(t, 10*time.Second, "m1 to lead", m1.IsLeader)
	m2 := startMaster(t, "m2", zkURL)

	ag := startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048;disk:1000;ports:[31000-32000]")
	var got mmaster.Response_GetAgents_Agent
	eventually(t, 10*time.Second, "the agent in GET_AGENTS", func() bool {
		as := getAgents(t, m1.url)
		if len(as) == 1 {
			got = as[0]
		}
		return len(as) == 1
	})
	info := got.AgentInfo
	if info.GetID().GetValue() != "agent-0" || info.Hostname != "127.0.0.1" || info.GetPort() == 0 {
		t.Fatalf("agent_info: %+v", info)
	}
	if scalar(got.TotalResources, "cpus") != 4 || scalar(got.TotalResources, "mem") != 2048 || scalar(info.Resources, "disk") != 1000 {
		t.Fatalf("total_resources: %v", got.TotalResources)
	}
	attrs := map[string]string{}
	for _, a := range info.Attributes {
		attrs[a.Name] = attributeValue(a)
	}
	if attrs["zone"] != "zone-agent-0" || attrs["instance_type"] != "m5.large" {
		t.Fatalf("attributes: %v", attrs)
	}
	if !got.Active || got.GetPID() != "slave(1)@"+strings.TrimPrefix(ag.url, "http://") || got.RegisteredTime == nil {
		t.Fatalf("agent: active %v pid %q registered %v", got.Active, got.GetPID(), got.RegisteredTime)
	}

	// Failover: the agent re-registers with the new leader.
	start := time.Now()
	m1.contender.dropSession()
	eventually(t, 10*time.Second, "m2 to lead", m2.IsLeader)
	took := eventually(t, 10*time.Second, "the agent at m2", func() bool { return len(getAgents(t, m2.url)) == 1 })
	t.Logf("agent re-registered with the new leader %v after the old one's session ended", time.Since(start))
	_ = took

	// It keeps heartbeating: still there after the agent timeout.
	time.Sleep(2500 * time.Millisecond)
	if n := len(getAgents(t, m2.url)); n != 1 {
		t.Fatalf("%d agents after the agent timeout; the heartbeat should keep it", n)
	}

	// It stops heartbeating: gone after the timeout (2 s).
	ag.cancel()
	<-ag.done
	stopped := time.Now()
	eventually(t, 5*time.Second, "the agent to be removed", func() bool { return len(getAgents(t, m2.url)) == 0 })
	t.Logf("silent agent removed %v after its last chance to heartbeat (timeout 2s)", time.Since(stopped))
}

func postTask(t *testing.T, url string, req protocol.TaskRequest) (int, protocol.TaskCreated, string) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := http.Post(url+protocol.TasksPath, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out protocol.TaskCreated
	json.Unmarshal(body, &out)
	return resp.StatusCode, out, string(body)
}

func TestLegacyLaunchPathAccountsLegacyTasks(t *testing.T) {
	// Standalone master: placement needs no ZooKeeper.
	m := startMaster(t, "m", "")
	ag := startAgent(t, "agent-0", m.url, "cpus:2;mem:1024")
	eventually(t, 5*time.Second, "agent registered", func() bool { return len(m.Agents()) == 1 })

	// A legacy task through the private endpoint.
	code, created, body := postTask(t, m.url, protocol.TaskRequest{
		Name: "batch-1", Command: "sleep 30", Resources: map[string]float64{"cpus": 1.5, "mem": 256},
	})
	if code != http.StatusCreated || !strings.HasPrefix(created.ID, "legacy-batch-1-") || created.AgentID != "agent-0" {
		t.Fatalf("POST /internal/tasks: %d %s", code, body)
	}
	id := TaskID(created.ID)
	if task, _ := m.Task(id); task.State != mesos.TASK_RUNNING {
		t.Fatalf("task state %v", task.State)
	}
	as := getAgents(t, m.url)
	if got := scalar(as[0].AllocatedResources, "cpus"); got != 1.5 {
		t.Fatalf("allocated cpus %v, want 1.5", got)
	}

	// A second one does not fit: refused with 409 and a reason.
	code, _, body = postTask(t, m.url, protocol.TaskRequest{
		Name: "batch-2", Command: "sleep 30", Resources: map[string]float64{"cpus": 1, "mem": 256},
	})
	if code != http.StatusConflict || !strings.Contains(body, "no agent has room") {
		t.Fatalf("second task: %d %s", code, body)
	}
	// Nor does one with a constraint no agent meets.
	if _, err := m.LaunchTask(context.Background(), TaskSpec{
		Name: "c", Command: "true", Resources: Resources{"cpus": 0.1, "mem": 8}, Constraints: map[string]string{"zone": "mars"},
	}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("constraint: %v", err)
	}

	// The agent itself runs it, under the task id.
	cl := agentclient.New(ag.url, agentclient.Options{})
	cs, err := cl.Containers(context.Background())
	if err != nil || len(cs) != 1 || cs[0].ID != string(id) {
		t.Fatalf("agent containers %v, %v", cs, err)
	}

	// A bridge container launched directly on the agent is not counted, as
	// a Mesos master does not count standalone containers (the bridge
	// reserves its room instead: reserve_test.go).
	cmd := "sleep 30"
	shell := true
	if _, err := cl.Launch(context.Background(), "vkt-pod-c1", &translate.Launch{
		Command:   &mesos.CommandInfo{Value: &cmd, Shell: &shell},
		Resources: Resources{"cpus": 0.25, "mem": 128}.Mesos(),
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the agent reports the bridge container", func() bool {
		v := m.Agents()
		return len(v) == 1 && len(v[0].Containers) == 2
	})
	if as := getAgents(t, m.url); scalar(as[0].AllocatedResources, "cpus") != 1.5 {
		t.Fatalf("allocated cpus %v, want 1.5 (the legacy task only)", scalar(as[0].AllocatedResources, "cpus"))
	}
	// GET_TASKS lists the legacy task only.
	res, err := call(t, m.url, calls.GetTasks())
	if err != nil {
		t.Fatal(err)
	}
	if ts := res.GetGetTasks().GetTasks(); len(ts) != 1 || ts[0].TaskID.Value != string(id) || ts[0].GetState() != mesos.TASK_RUNNING {
		t.Fatalf("GET_TASKS: %+v", ts)
	}

	// Killing the legacy task frees its resources.
	if err := m.KillTask(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "TASK_KILLED", func() bool { task, _ := m.Task(id); return task.State == mesos.TASK_KILLED })
	task, _ := m.Task(id)
	states := []string{}
	for _, h := range task.History {
		states = append(states, h.State)
	}
	if strings.Join(states, ",") != "TASK_STAGING,TASK_RUNNING,TASK_KILLING,TASK_KILLED" {
		t.Fatalf("history %v", states)
	}
	if _, err := m.LaunchTask(context.Background(), TaskSpec{
		Name: "fits-now", Command: "sleep 30", Resources: Resources{"cpus": 1, "mem": 64},
	}); err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	cl.Kill(context.Background(), "vkt-pod-c1", syscall.SIGKILL)
}

func TestTaskOutcomes(t *testing.T) {
	m := startMaster(t, "m", "")
	startAgent(t, "agent-0", m.url, "cpus:4;mem:1024")
	eventually(t, 5*time.Second, "agent registered", func() bool { return len(m.Agents()) == 1 })
	ctx := context.Background()
	ok, err := m.LaunchTask(ctx, TaskSpec{Name: "ok", Command: "true", Resources: Resources{"cpus": 0.1, "mem": 8}})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := m.LaunchTask(ctx, TaskSpec{Name: "bad", Command: "exit 3", Resources: Resources{"cpus": 0.1, "mem": 8}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both ended", func() bool {
		a, _ := m.Task(ok)
		b, _ := m.Task(bad)
		return isTerminal(a.State) && isTerminal(b.State)
	})
	a, _ := m.Task(ok)
	b, _ := m.Task(bad)
	if a.State != mesos.TASK_FINISHED || b.State != mesos.TASK_FAILED || b.ExitCode == nil || *b.ExitCode != 3 {
		t.Fatalf("ok: %v; bad: %v exit %v", a.State, b.State, b.ExitCode)
	}
	res, err := call(t, m.url, calls.GetTasks())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.GetGetTasks().GetCompletedTasks()); n != 2 {
		t.Fatalf("%d completed tasks", n)
	}
	if _, err := m.LaunchTask(ctx, TaskSpec{Name: "x", Command: "true"}); !errors.Is(err, ErrInvalidTask) {
		t.Fatalf("no resources: %v", err)
	}
}

func TestNoAgentsAnswers503(t *testing.T) {
	m := startMaster(t, "m", "")
	code, _, body := postTask(t, m.url, protocol.TaskRequest{Name: "a", Command: "true", Resources: map[string]float64{"cpus": 1, "mem": 1}})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no agent") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestTasksAdoptedAfterFailover(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m1 := startMaster(t, "m1", zkURL)
	eventually(t, 10*time.Second, "m1 to lead", m1.IsLeader)
	m2 := startMaster(t, "m2", zkURL)
	startAgent(t, "agent-0", zkURL, "cpus:2;mem:1024")
	eventually(t, 10*time.Second, "agent at m1", func() bool { return len(m1.Agents()) == 1 })

	id, err := m1.LaunchTask(context.Background(), TaskSpec{Name: "long", Command: "sleep 30", Resources: Resources{"cpus": 1, "mem": 64}})
	if err != nil {
		t.Fatal(err)
	}
	m1.Stop()
	eventually(t, 10*time.Second, "m2 to lead with the task adopted", func() bool {
		task, ok := m2.Task(id)
		return ok && task.State == mesos.TASK_RUNNING && task.Adopted
	})
	as := m2.Agents()
	if len(as) != 1 || as[0].Allocated["cpus"] != 1 {
		t.Fatalf("agents at m2: %+v", as)
	}
	// The new leader follows it: a kill ends it.
	if err := m2.KillTask(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "TASK_KILLED", func() bool { task, _ := m2.Task(id); return task.State == mesos.TASK_KILLED })
}

// A removed agent that comes back is refused, as Mesos shuts such an agent
// down: it kills and removes every container, then registers anew, empty.
func TestRemovedAgentComesBackEmpty(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m := startMaster(t, "m1", zkURL)
	eventually(t, 10*time.Second, "m1 to lead", m.IsLeader)
	ag := startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048;disk:1000")
	eventually(t, 10*time.Second, "the agent in GET_AGENTS", func() bool { return len(getAgents(t, m.url)) == 1 })

	cl := agentclient.New(ag.url, agentclient.Options{})
	cmd, shell := "sleep 300", true
	if _, err := cl.Launch(context.Background(), "vkt-pod-c1", &translate.Launch{
		Command: &mesos.CommandInfo{Value: &cmd, Shell: &shell}, Resources: Resources{"cpus": 0.25, "mem": 128}.Mesos(),
	}); err != nil {
		t.Fatal(err)
	}
	// Silent past the agent timeout: removed, its container still running.
	ag.cancel()
	<-ag.done
	eventually(t, 10*time.Second, "the agent to be removed", func() bool { return len(getAgents(t, m.url)) == 0 })
	if cs, err := cl.Containers(context.Background()); err != nil || len(cs) != 1 {
		t.Fatalf("containers before it comes back: %v, %v", cs, err)
	}

	reg, err := ag.a.NewRegistrar()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var back []mmaster.Response_GetAgents_Agent
	eventually(t, 45*time.Second, "the agent back", func() bool {
		back = getAgents(t, m.url)
		return len(back) == 1
	})
	if _, err := cl.Wait(context.Background(), "vkt-pod-c1"); !errors.Is(err, agentclient.ErrNotFound) {
		t.Fatalf("the container of the removed agent is still known: WAIT answered %v", err)
	}
	if cpus := scalar(back[0].AllocatedResources, "cpus"); cpus != 0 {
		t.Fatalf("the agent came back with %v cpus allocated, want none", cpus)
	}
}
