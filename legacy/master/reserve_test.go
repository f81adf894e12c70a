package master

import (
	"context"
	"errors"
	"net/http"
	"strings"
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

// operate sends a call answered with no data (RESERVE, UNRESERVE) and
// returns its error.
func operate(t *testing.T, url string, c *mmaster.Call, cred ...*mesosauth.Credential) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := operator(url, cred...).Send(ctx, calls.NonStreaming(c))
	if res != nil {
		res.Close()
	}
	return err
}

// code is the HTTP status an operator call's error stands for (0: none
// of those asked about).
func code(err error) int {
	for _, c := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict} {
		if apierrors.Code(c).Matches(err) {
			return c
		}
	}
	return 0
}

func forRole(role, principal string, r Resources) []mesos.Resource {
	return reservations{{Role: role, Principal: principal}: r}.mesos()
}

// reservedIn sums GET_AGENTS' total_resources reserved for role.
func reservedIn(rs []mesos.Resource, role string) Resources {
	out := Resources{}
	for _, r := range rs {
		if n := len(r.Reservations); n > 0 && r.Reservations[n-1].GetRole() == role && r.Scalar != nil {
			out[r.Name] += r.Scalar.Value
		}
	}
	return out
}

// TestReserveUnreserve: RESERVE takes unreserved room not held by legacy
// tasks (409 otherwise), shows in GET_AGENTS, keeps the legacy path off it;
// UNRESERVE gives back what is reserved (409 for more).
func TestReserveUnreserve(t *testing.T) {
	m := startMaster(t, "m", "")
	startAgent(t, "agent-0", m.url, "cpus:4;mem:1024")
	eventually(t, 5*time.Second, "agent registered", func() bool { return len(m.Agents()) == 1 })
	agentID := mesos.AgentID{Value: "agent-0"}
	if _, err := m.LaunchTask(context.Background(), TaskSpec{Name: "legacy", Command: "sleep 30", Resources: Resources{"cpus": 1, "mem": 128}}); err != nil {
		t.Fatal(err)
	}

	if err := operate(t, m.url, calls.ReserveResources(agentID, forRole("vk-titus", "", Resources{"cpus": 2, "mem": 512})...)); err != nil {
		t.Fatalf("RESERVE: %v", err)
	}
	as := getAgents(t, m.url)
	if got := reservedIn(as[0].TotalResources, "vk-titus"); got.String() != "cpus:2;mem:512" {
		t.Fatalf("reserved in GET_AGENTS: %s", got)
	}
	if got := scalar(as[0].TotalResources, "cpus"); got != 4 {
		t.Fatalf("total cpus %v, want 4 (reserved and unreserved)", got)
	}
	// 1 cpu is left: held neither by the reservation nor by the legacy task.
	err := operate(t, m.url, calls.ReserveResources(agentID, forRole("vk-titus", "", Resources{"cpus": 2})...))
	if code(err) != http.StatusConflict {
		t.Fatalf("RESERVE beyond the free room: %v, want 409", err)
	}
	if _, err := m.LaunchTask(context.Background(), TaskSpec{Name: "big", Command: "true", Resources: Resources{"cpus": 1.5, "mem": 64}}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("legacy task on reserved room: %v, want ErrNoCapacity", err)
	}
	err = operate(t, m.url, calls.UnreserveResources(agentID, forRole("vk-titus", "", Resources{"cpus": 3})...))
	if code(err) != http.StatusConflict {
		t.Fatalf("UNRESERVE beyond the reservation: %v, want 409", err)
	}
	err = operate(t, m.url, calls.UnreserveResources(agentID, forRole("other", "", Resources{"cpus": 1})...))
	if code(err) != http.StatusConflict {
		t.Fatalf("UNRESERVE of another role: %v, want 409", err)
	}
	if err := operate(t, m.url, calls.UnreserveResources(agentID, forRole("vk-titus", "", Resources{"cpus": 2, "mem": 512})...)); err != nil {
		t.Fatalf("UNRESERVE: %v", err)
	}
	if got := reservedIn(getAgents(t, m.url)[0].TotalResources, "vk-titus"); len(got) != 0 {
		t.Fatalf("reserved after UNRESERVE: %s", got)
	}
	if _, err := m.LaunchTask(context.Background(), TaskSpec{Name: "big", Command: "true", Resources: Resources{"cpus": 1.5, "mem": 64}}); err != nil {
		t.Fatalf("legacy task after UNRESERVE: %v", err)
	}
}

// TestReserveValidation: malformed reservations are 400s, as in Mesos.
func TestReserveValidation(t *testing.T) {
	m := startMaster(t, "m", "")
	startAgent(t, "agent-0", m.url, "cpus:4;mem:1024")
	eventually(t, 5*time.Second, "agent registered", func() bool { return len(m.Agents()) == 1 })
	agentID := mesos.AgentID{Value: "agent-0"}
	unreserved := Resources{"cpus": 1}.Mesos()
	star := "*"
	legacyRole := "vk-titus"
	preRefinement := Resources{"cpus": 1}.Mesos()
	preRefinement[0].Role = &legacyRole
	for name, c := range map[string]*mmaster.Call{
		"no reservation":  calls.ReserveResources(agentID, unreserved...),
		"pre-refinement":  calls.ReserveResources(agentID, preRefinement...),
		"role *":          calls.ReserveResources(agentID, forRole(star, "", Resources{"cpus": 1})...),
		"unknown agent":   calls.ReserveResources(mesos.AgentID{Value: "nope"}, forRole("vk-titus", "", Resources{"cpus": 1})...),
		"no resources":    calls.ReserveResources(agentID),
		"bad role":        calls.UnreserveResources(agentID, forRole("a b", "", Resources{"cpus": 1})...),
		"empty unreserve": calls.UnreserveResources(agentID),
	} {
		if err := operate(t, m.url, c); code(err) != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
}

// TestReserveNeedsTheCallersPrincipal: with read-write authentication,
// RESERVE needs credentials and the reservation names the caller.
func TestReserveNeedsTheCallersPrincipal(t *testing.T) {
	m := startMaster(t, "m", "", func(c *Config) { c.HTTPAuth = authFlags(true, false) })
	startAgent(t, "agent-0", m.url, "cpus:4;mem:1024", func(c *agent.Config) { c.Credential = agentCred })
	eventually(t, 5*time.Second, "agent registered", func() bool { return len(m.Agents()) == 1 })
	agentID := mesos.AgentID{Value: "agent-0"}
	res := forRole("vk-titus", "ops", Resources{"cpus": 1})
	if err := operate(t, m.url, calls.ReserveResources(agentID, res...)); code(err) != http.StatusUnauthorized {
		t.Fatalf("without credentials: %v, want 401", err)
	}
	if err := operate(t, m.url, calls.ReserveResources(agentID, forRole("vk-titus", "someone", Resources{"cpus": 1})...), opsCred); code(err) != http.StatusBadRequest {
		t.Fatalf("another principal: %v, want 400", err)
	}
	if err := operate(t, m.url, calls.ReserveResources(agentID, res...), opsCred); err != nil {
		t.Fatalf("as ops: %v", err)
	}
}

// TestReservationsSurviveFailover: a master that does not know an agent
// (a new leader) takes the reservations the agent reports; one that knows
// it keeps its own; a fresh agent and a report beyond the total bring none.
func TestReservationsSurviveFailover(t *testing.T) {
	m := startMaster(t, "m", "")
	info := mesos.AgentInfo{ID: &mesos.AgentID{Value: "a1"}, Hostname: "h", Resources: Resources{"cpus": 4, "mem": 1024}.Mesos()}
	req := func(r Resources, fresh bool) *protocol.RegisterRequest {
		return &protocol.RegisterRequest{AgentInfo: info, Endpoint: "http://127.0.0.1:1", Reservations: forRole("vk-titus", "", r), Fresh: fresh}
	}
	resp, err := m.register(req(Resources{"cpus": 2}, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := reservedIn(resp.Reservations, "vk-titus"); got.String() != "cpus:2" {
		t.Fatalf("answer's reservations after a new leader's registration: %s", got)
	}
	// Known now: its view stands, whatever the agent reports.
	resp, err = m.register(req(Resources{"cpus": 3}, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := reservedIn(resp.Reservations, "vk-titus"); got.String() != "cpus:2" {
		t.Fatalf("a known agent's report replaced the master's view: %s", got)
	}
	for name, r := range map[string]*protocol.RegisterRequest{
		"beyond the total": req(Resources{"cpus": 5}, false),
		"fresh":            req(Resources{"cpus": 1}, true),
	} {
		m.mu.Lock()
		delete(m.agents, "a1")
		m.mu.Unlock()
		resp, err := m.register(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Reservations) != 0 {
			t.Errorf("%s: reservations %v, want none", name, resp.Reservations)
		}
	}
}

func TestValidRole(t *testing.T) {
	for role, ok := range map[string]bool{"vk-titus": true, "a.b": true, "": false, "*": false, ".": false, "-x": false, "a/b": false} {
		if err := validRole(role); (err == nil) != ok {
			t.Errorf("%q: %v", role, err)
		}
	}
	if !strings.Contains(validRole("a b").Error(), "whitespace") {
		t.Error("whitespace not named")
	}
}
