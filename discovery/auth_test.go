package discovery_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/master"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// TestAgentWatcherCredentials: a master that demands credentials lists its
// agents to a watcher that sends them; one that sends none (or a wrong
// secret) learns why it is refused, and polls on at its interval.
func TestAgentWatcherCredentials(t *testing.T) {
	bridge := &mesosauth.Credential{Principal: "vk-titus", Secret: "bridge-secret"}
	agentCred := &mesosauth.Credential{Principal: "agent", Secret: "agent-secret"}
	m := runMaster(t, "m", "", func(c *master.Config) {
		c.HTTPAuth = mesosauth.Flags{ReadWrite: true, Credentials: mesosauth.Credentials{*bridge, *agentCred}}
	})
	runAgent(t, "agent-0", m.url, "cpus:2;mem:1024", func(c *agent.Config) { c.Credential = agentCred })

	w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{
		Master: m.url, Interval: 50 * time.Millisecond, Credential: bridge, Logger: logger("watcher"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	until(t, 10*time.Second, "agent-0 listed", func() bool {
		as, synced := w.Agents()
		return synced && len(as) == 1 && as[0].ID == "agent-0"
	})

	u, _ := url.Parse(m.url)
	for name, c := range map[string]*mesosauth.Credential{"none": nil, "wrong secret": {Principal: "vk-titus", Secret: "wrong"}} {
		w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{
			Master: m.url, Interval: 50 * time.Millisecond, Credential: c, Logger: logger("anonymous"),
		})
		if err != nil {
			t.Fatal(err)
		}
		var last error
		until(t, 10*time.Second, name+": the refusal", func() bool { _, last = w.LastSync(); return last != nil })
		want := "master " + u.Host + ": unauthorized (401): check --mesos-credentials"
		if !errors.Is(last, mesosauth.ErrUnauthorized) || !strings.Contains(last.Error(), want) || strings.Contains(last.Error(), "wrong") {
			t.Errorf("%s: %v; want ErrUnauthorized naming %q", name, last, want)
		}
		if _, synced := w.Agents(); synced {
			t.Errorf("%s: synced without credentials", name)
		}
		w.Close()
	}
}
