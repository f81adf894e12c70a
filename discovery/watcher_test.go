package discovery_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/internal/zktest"
	"github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/master"
	"github.com/vk-titus/vk-titus/translate"
)

func logger(name string) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l.WithField("who", name)
}

type runningMaster struct {
	*master.Master
	url string
}

func runMaster(t *testing.T, id, zk string, mod ...func(*master.Config)) *runningMaster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := master.Config{
		Listen: ln.Addr().String(), ZK: zk, ID: id, AgentTimeout: 2 * time.Second,
		ZKSessionTimeout: 4 * time.Second, KillGrace: time.Second, Logger: logger(id),
	}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := master.New(cfg)
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
	t.Cleanup(func() { m.Stop(); srv.Close() })
	return &runningMaster{m, srv.URL}
}

type runningAgent struct {
	url  string
	stop func() // stops heartbeating
}

func runAgent(t *testing.T, id, masterURL, resources string, mod ...func(*agent.Config)) *runningAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		WorkDir: t.TempDir(), Listen: ln.Addr().String(), AgentID: id, Resources: resources,
		Attributes: "zone:" + id, Logger: logger(id), Master: masterURL,
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
	done := make(chan struct{})
	go func() { defer close(done); reg.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(func() { stop(); a.Close(); srv.Close() })
	return &runningAgent{url: srv.URL, stop: stop}
}

func until(t *testing.T, within time.Duration, what string, f func() bool) time.Duration {
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

// collector keeps every event a subscription delivers.
type collector struct {
	events chan discovery.AgentEvent
}

func collect(ch <-chan discovery.AgentUpdate) *collector {
	c := &collector{events: make(chan discovery.AgentEvent, 1000)}
	go func() {
		for u := range ch {
			for _, e := range u.Events {
				c.events <- e
			}
		}
	}()
	return c
}

func (c *collector) next(t *testing.T, within time.Duration, match func(discovery.AgentEvent) bool) discovery.AgentEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-c.events:
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no matching agent event within %v", within)
		}
	}
}

func (c *collector) noRemoval(t *testing.T, during time.Duration) {
	t.Helper()
	deadline := time.After(during)
	for {
		select {
		case e := <-c.events:
			if e.Type == discovery.AgentRemoved {
				t.Fatalf("agent %s removed", e.Agent.ID)
			}
		case <-deadline:
			return
		}
	}
}

func TestAgentWatcher(t *testing.T) {
	zks := zktest.StartServer(t)
	zkURL := "zk://" + zks.Addr + "/mesos"
	m1 := runMaster(t, "m1", zkURL)
	until(t, 10*time.Second, "m1 leads", m1.IsLeader)
	m2 := runMaster(t, "m2", zkURL)
	a0 := runAgent(t, "agent-0", zkURL, "cpus:4;mem:4096;disk:100")
	a1 := runAgent(t, "agent-1", zkURL, "cpus:2;mem:1024")

	w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{
		Master: zkURL, Interval: 200 * time.Millisecond, FailoverGrace: 5 * time.Second, Logger: logger("watcher"),
		Role: "vk-titus",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := collect(w.Subscribe())

	added := map[string]discovery.Agent{}
	for len(added) < 2 {
		e := c.next(t, 10*time.Second, func(e discovery.AgentEvent) bool { return e.Type == discovery.AgentAdded })
		added[e.Agent.ID] = e.Agent
	}
	g := added["agent-0"]
	if g.Endpoint != a0.url || g.Total != (discovery.Resources{CPUs: 4, MemMB: 4096, DiskMB: 100}) ||
		g.Attributes["zone"] != "agent-0" || g.Allocatable() != g.Total {
		t.Fatalf("agent-0: %+v", g)
	}

	// A legacy task counts as legacy and allocated; a bridge container not
	// at all (a Mesos master does not count standalone containers).
	if _, err := m1.LaunchTask(context.Background(), master.TaskSpec{
		Name: "legacy", Command: "sleep 30", Resources: master.Resources{"cpus": 1, "mem": 512},
	}); err != nil {
		t.Fatal(err)
	}
	cmd, shell := "sleep 30", true
	cl := agentclient.New(a0.url, agentclient.Options{})
	if _, err := cl.Launch(context.Background(), "vkt-x-c", &translate.Launch{
		Command:   &mesos.CommandInfo{Value: &cmd, Shell: &shell},
		Resources: master.Resources{"cpus": 0.5, "mem": 128}.Mesos(),
	}); err != nil {
		t.Fatal(err)
	}
	defer cl.Kill(context.Background(), "vkt-x-c", syscall.SIGKILL)
	e := c.next(t, 5*time.Second, func(e discovery.AgentEvent) bool {
		return e.Type == discovery.AgentChanged && e.Agent.ID == "agent-0" && e.Agent.Allocated.CPUs == 1
	})
	if e.Agent.Legacy != (discovery.Resources{CPUs: 1, MemMB: 512}) ||
		e.Agent.Allocatable() != (discovery.Resources{CPUs: 3, MemMB: 3584, DiskMB: 100}) {
		t.Fatalf("agent-0 after launches: %+v (allocatable %+v)", e.Agent, e.Agent.Allocatable())
	}

	// A reservation for the watcher's role, made through Operate, shows as
	// Reserved (the total is unchanged: reserved room is the agent's).
	typ, role := mesos.Resource_ReservationInfo_DYNAMIC, "vk-titus"
	res := master.Resources{"cpus": 1}.Mesos()
	res[0].Reservations = []mesos.Resource_ReservationInfo{{Type: &typ, Role: &role}}
	if err := w.Operate(context.Background(), calls.ReserveResources(mesos.AgentID{Value: "agent-0"}, res...)); err != nil {
		t.Fatalf("RESERVE through the watcher: %v", err)
	}
	e = c.next(t, 5*time.Second, func(e discovery.AgentEvent) bool {
		return e.Type == discovery.AgentChanged && e.Agent.ID == "agent-0" && e.Agent.Reserved.CPUs == 1
	})
	if e.Agent.Total.CPUs != 4 || e.Agent.Polled.IsZero() {
		t.Fatalf("agent-0 after the reservation: %+v", e.Agent)
	}

	// Leader failover: the set survives, no agent flaps.
	m1.Stop()
	until(t, 10*time.Second, "m2 leads", m2.IsLeader)
	c.noRemoval(t, 2*time.Second)
	if as, _ := w.Agents(); len(as) != 2 {
		t.Fatalf("%d agents after failover", len(as))
	}
	if a, _ := w.Agent("agent-0"); a.Legacy.CPUs != 1 {
		t.Fatalf("adopted legacy task not accounted after failover: %+v", a)
	}

	// ZooKeeper goes away for a while: the last known set stays.
	zks.Stop()
	c.noRemoval(t, 5*time.Second)
	if as, _ := w.Agents(); len(as) != 2 {
		t.Fatalf("%d agents during the ZooKeeper outage", len(as))
	}
	if _, err := w.LastSync(); err == nil {
		t.Log("note: polls still succeed during the ZooKeeper outage")
	}
	zks.Restart()
	until(t, time.Minute, "polls to succeed again", func() bool { _, err := w.LastSync(); return err == nil })

	// An agent that stops heartbeating is removed once the master drops it.
	a1.stop()
	e = c.next(t, 10*time.Second, func(e discovery.AgentEvent) bool { return e.Type == discovery.AgentRemoved })
	if e.Agent.ID != "agent-1" {
		t.Fatalf("removed %s", e.Agent.ID)
	}
}

func TestAgentWatcherFixedURLFollowsRedirect(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m1 := runMaster(t, "m1", zkURL)
	until(t, 10*time.Second, "m1 leads", m1.IsLeader)
	m2 := runMaster(t, "m2", zkURL)
	until(t, 10*time.Second, "m2 knows the leader", func() bool { _, ok := m2.Leader(); return ok })
	runAgent(t, "agent-0", m2.url, "cpus:1;mem:128") // registers through the follower's redirect

	w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{Master: m2.url, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	until(t, 10*time.Second, "the agent via the follower's redirect", func() bool {
		as, ok := w.Agents()
		return ok && len(as) == 1 && as[0].ID == "agent-0"
	})
}
