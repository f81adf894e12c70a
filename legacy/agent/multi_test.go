//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"

	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

func TestAgentsDerivation(t *testing.T) {
	root := t.TempDir()
	one := Config{WorkDir: root, Listen: "127.0.0.1:5051", AgentID: "a", Resources: "cpus:1|cpus:2", Attributes: "zone:x"}
	cfgs, err := one.Agents()
	if err != nil || len(cfgs) != 1 {
		t.Fatal(cfgs, err)
	}
	// Count 1 changes nothing but picking the first alternative.
	if c := cfgs[0]; c.WorkDir != root || c.Listen != "127.0.0.1:5051" || c.AgentID != "a" || c.Resources != "cpus:1" ||
		c.Attributes != "zone:x" || c.supRoot != "" {
		t.Fatalf("count 1: %+v", c)
	}

	three := Config{
		WorkDir: root, Listen: "127.0.0.1:26000", AgentID: "fleet", Count: 3, Endpoint: "http://node-1:27000",
		Resources: "cpus:1;mem:128|cpus:2;mem:256", Attributes: "zone:a|zone:b",
	}
	cfgs, err = three.Agents()
	if err != nil || len(cfgs) != 3 {
		t.Fatal(cfgs, err)
	}
	for i, c := range cfgs {
		if want := filepath.Join(root, fmt.Sprintf("agent-%d", i)); c.WorkDir != want || c.supRoot != root {
			t.Errorf("agent %d work dir %s under %s", i, c.WorkDir, c.supRoot)
		}
		if want := fmt.Sprintf("127.0.0.1:%d", 26000+i); c.Listen != want {
			t.Errorf("agent %d listens on %s, want %s", i, c.Listen, want)
		}
		if want := fmt.Sprintf("fleet-%d", i); c.AgentID != want {
			t.Errorf("agent %d id %s", i, c.AgentID)
		}
		if want := fmt.Sprintf("http://node-1:%d", 27000+i); c.Endpoint != want {
			t.Errorf("agent %d advertises %s", i, c.Endpoint)
		}
		if want := []string{"cpus:1;mem:128", "cpus:2;mem:256"}[i%2]; c.Resources != want {
			t.Errorf("agent %d resources %s", i, c.Resources)
		}
		if want := fmt.Sprintf("zone:%s;agent_index:%d", []string{"a", "b"}[i%2], i); c.Attributes != want {
			t.Errorf("agent %d attributes %s", i, c.Attributes)
		}
		if c.supStart != cfgs[0].supStart || c.supStart == nil {
			t.Errorf("agent %d does not share the supervisor starter", i)
		}
	}

	for name, bad := range map[string]Config{
		"agent_index given":    {WorkDir: root, Count: 2, Attributes: "agent_index:7"},
		"ports overflow":       {WorkDir: root, Count: 3, Listen: "127.0.0.1:65534"},
		"advertise, no port":   {WorkDir: root, Count: 2, Endpoint: "http://node-1"},
		"too many":             {WorkDir: root, Count: MaxCount + 1},
		"no work dir":          {Count: 2},
		"unparsable listen":    {WorkDir: root, Count: 2, Listen: "nowhere"},
		"unparsable attribute": {WorkDir: root, Count: 2, Attributes: "zone"},
	} {
		if _, err := bad.Agents(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fakeMaster records the latest registration of each agent, and demands
// cred when set.
type fakeMaster struct {
	*httptest.Server
	mu      sync.Mutex
	regs    map[string]protocol.RegisterRequest
	refused int
}

func newFakeMaster(t *testing.T, cred *mesosauth.Credential) *fakeMaster {
	f := &fakeMaster{regs: map[string]protocol.RegisterRequest{}}
	var auth *mesosauth.Authenticator
	if cred != nil {
		auth, _ = mesosauth.NewAuthenticator(mesosauth.Flags{ReadWrite: true, Credentials: mesosauth.Credentials{*cred}})
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.RegisterPath {
			http.NotFound(w, r)
			return
		}
		if !auth.Permits(r, mesosauth.ReadWrite) {
			f.mu.Lock()
			f.refused++
			f.mu.Unlock()
			mesosauth.Refuse(w)
			return
		}
		var req protocol.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		_, known := f.regs[req.AgentInfo.ID.Value]
		f.regs[req.AgentInfo.ID.Value] = req
		f.mu.Unlock()
		json.NewEncoder(w).Encode(protocol.RegisterResponse{MasterID: "fake", AgentID: req.AgentInfo.ID.Value, Registered: !known})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeMaster) reset() {
	f.mu.Lock()
	f.regs = map[string]protocol.RegisterRequest{}
	f.mu.Unlock()
}

// registration waits for a registration of id that satisfies ok.
func (f *fakeMaster) registration(t *testing.T, id string, ok func(protocol.RegisterRequest) bool) protocol.RegisterRequest {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		r, found := f.regs[id]
		f.mu.Unlock()
		if found && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching registration of %s (last: %+v)", id, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func anyReg(protocol.RegisterRequest) bool { return true }

func containerIDs(r protocol.RegisterRequest) string {
	var ids []string
	for _, c := range r.Containers {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// runFleet runs cfg (Count agents) until the returned stop is called, and
// returns a harness per agent, reached with c at the endpoint it registered.
func runFleet(t *testing.T, cfg Config, m *fakeMaster, c *mesosauth.Credential) (hs []*harness, stop func()) {
	t.Helper()
	m.reset()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	for i := range cfg.Count {
		r := m.registration(t, fmt.Sprintf("%s-%d", cfg.AgentID, i), anyReg)
		hs = append(hs, &harness{t: t, sender: credSender(r.Endpoint, c)})
	}
	return hs, stop
}

// TestFleetInOneProcess: three agents served by one process, under one
// supervisor: each answers with its own id and attributes, registers on
// its own (with the agents' credential), keeps its containers to itself,
// and recovers them after the process restarts.
func TestFleetInOneProcess(t *testing.T) {
	dir := recoveryWorkDir(t)
	cred := &mesosauth.Credential{Principal: "agent", Secret: "s3cret"}
	m := newFakeMaster(t, cred)
	cfg := Config{
		WorkDir: dir, Listen: "127.0.0.1:0", AgentID: "fleet", Count: 3, Master: m.URL,
		Resources: "cpus:1;mem:128|cpus:2;mem:256", Attributes: "zone:a|zone:b",
		HeartbeatInterval: 200 * time.Millisecond, Recover: RecoverReconnect, Logger: quietLogger(),
		Credential: cred, HTTPAuth: mesosauth.Flags{ReadWrite: true, Credentials: mesosauth.Credentials{*opsCred}},
	}
	hs, stop := runFleet(t, cfg, m, opsCred)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	for i, h := range hs {
		if _, err := h.get(calls.GetHealth()); err != nil {
			t.Fatalf("agent %d GET_HEALTH: %v", i, err)
		}
		info := h.mustGet(calls.GetAgent()).GetAgent.AgentInfo
		attrs := map[string]string{}
		for _, a := range info.Attributes {
			attrs[a.Name] = a.Text.GetValue()
			if a.Scalar != nil {
				attrs[a.Name] = fmt.Sprint(a.Scalar.Value)
			}
		}
		cpus := 0.0
		for _, r := range info.Resources {
			if r.Name == "cpus" {
				cpus = r.Scalar.GetValue()
			}
		}
		if info.ID.Value != fmt.Sprintf("fleet-%d", i) || attrs["agent_index"] != fmt.Sprint(i) ||
			attrs["zone"] != []string{"a", "b"}[i%2] || cpus != float64(1+i%2) {
			t.Fatalf("agent %d GET_AGENT: id %s attributes %v cpus %v", i, info.ID.Value, attrs, cpus)
		}
	}

	hs[1].mustLaunch("only-on-1", shellCmd("echo one; exec sleep 100"), nil)
	hs[1].waitForFile("/sandboxes/only-on-1/stdout", "one")
	for i, h := range hs {
		pids := containerPids(t, h)
		if _, has := pids["only-on-1"]; has != (i == 1) {
			t.Fatalf("agent %d lists %v", i, pids)
		}
		if i != 1 {
			if _, err := h.get(calls.WaitContainer(mesos.ContainerID{Value: "only-on-1"})); !apierrors.CodeNotFound.Matches(err) {
				t.Fatalf("agent %d WAIT for another agent's container: %v", i, err)
			}
		}
	}
	// Each registered with its own containers.
	m.registration(t, "fleet-1", func(r protocol.RegisterRequest) bool { return containerIDs(r) == "only-on-1" })
	for _, id := range []string{"fleet-0", "fleet-2"} {
		if r := m.registration(t, id, anyReg); containerIDs(r) != "" {
			t.Fatalf("%s reports %s", id, containerIDs(r))
		}
	}
	// One supervisor, rooted at the work dir; each agent's checkpoints and
	// launch log in its own work dir.
	if supervisorPid(dir) == 0 {
		t.Fatal("no supervisor.pid in the work dir")
	}
	for i := range 3 {
		sub := filepath.Join(dir, fmt.Sprintf("agent-%d", i))
		if supervisorPid(sub) != 0 {
			t.Fatalf("agent %d has a supervisor of its own", i)
		}
		ckpts, _ := readCkpts(sub)
		if (len(ckpts) == 1) != (i == 1) {
			t.Fatalf("agent %d checkpoints: %d", i, len(ckpts))
		}
	}
	if ls := readLaunchLog(t, filepath.Join(dir, "agent-1")); len(ls) != 1 || ls[0].ID != "only-on-1" {
		t.Fatalf("agent-1 launches.log: %+v", ls)
	}
	pid := containerPids(t, hs[1])["only-on-1"]

	// The process restarts: the container is recovered by its agent only.
	stop()
	stopped = true
	if !pidAlive(pid) {
		t.Fatal("the container died with the agents")
	}
	hs, stop = runFleet(t, cfg, m, opsCred)
	defer stop()
	for i, h := range hs {
		pids := containerPids(t, h)
		if got, has := pids["only-on-1"]; has != (i == 1) || (has && got != pid) {
			t.Fatalf("after the restart agent %d lists %v (pid was %d)", i, pids, pid)
		}
	}
	if err := hs[1].send(killCall("only-on-1", nil)); err != nil {
		t.Fatal(err)
	}
	if w := hs[1].wait("only-on-1"); w.GetState() != mesos.TASK_KILLED {
		t.Fatalf("WAIT after KILL: %v", w)
	}
	m.mu.Lock()
	refused := m.refused
	m.mu.Unlock()
	if refused != 0 {
		t.Fatalf("the master refused %d registrations", refused)
	}
}

func TestRegistrationNeedsTheCredential(t *testing.T) {
	m := newFakeMaster(t, &mesosauth.Credential{Principal: "agent", Secret: "s3cret"})
	a, err := New(Config{WorkDir: t.TempDir(), Master: m.URL, Logger: quietLogger(), AgentID: "lone",
		Credential: &mesosauth.Credential{Principal: "agent", Secret: "wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	reg, err := a.NewRegistrar()
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.register(context.Background(), m.URL)
	if err == nil || !strings.Contains(err.Error(), "unauthorized (401): check --credential") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("registration with a wrong secret: %v", err)
	}
}

// TestFleetSupervisorRestartsOnce: when the supervisor of three agents
// dies, the agents, which all lose it at once, start one new supervisor
// between them; it kills the orphan it cannot reattach and serves all.
func TestFleetSupervisorRestartsOnce(t *testing.T) {
	dir := recoveryWorkDir(t)
	m := newFakeMaster(t, nil)
	cfg := Config{
		WorkDir: dir, Listen: "127.0.0.1:0", AgentID: "fleet", Count: 3, Master: m.URL,
		HeartbeatInterval: time.Second, Recover: RecoverReconnect, Logger: quietLogger(),
	}
	hs, stop := runFleet(t, cfg, m, nil)
	defer stop()
	hs[2].mustLaunch("orphan", shellCmd("exec sleep 100"), nil)
	old := supervisorPid(dir)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w := hs[2].wait("orphan")
	if w.GetState() != mesos.TASK_KILLED || !strings.Contains(w.GetMessage(), "killed during agent recovery") {
		t.Fatalf("WAIT orphan = %v", w)
	}
	// Exactly one process is left working in the root: the new supervisor
	// (a spare one would log that another owns the dir, then exit).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var inRoot []int
		for _, pid := range processesUnder(dir) {
			if cwd, ok := processCwd(pid); ok && cwd == dir {
				inRoot = append(inRoot, pid)
			}
		}
		if len(inRoot) == 1 && inRoot[0] == supervisorPid(dir) && inRoot[0] != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes in the root: %v (supervisor.pid %d, old %d)", inRoot, supervisorPid(dir), old)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, supervisorLogFile)); strings.Contains(string(b), "another supervisor owns") {
		t.Fatalf("more than one supervisor was started:\n%s", b)
	}
	for i, h := range hs {
		id := fmt.Sprintf("after-%d", i)
		h.mustLaunch(id, shellCmd("exit 3"), nil)
		if w := h.wait(id); w.GetState() != mesos.TASK_FAILED {
			t.Fatalf("agent %d after the restart: %v", i, w)
		}
	}
}
