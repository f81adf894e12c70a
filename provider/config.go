package provider

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// Config is the provider config file (--provider-config), YAML or JSON.
type Config struct {
	// Agents are the legacy agents this process serves, one virtual node
	// each (the static mode).
	Agents []AgentConfig `json:"agents,omitempty"`
	// Master, instead of Agents, finds the agents through the legacy
	// masters: zk://host:port[,host:port]/mesos (the leader is followed in
	// ZooKeeper) or http://host:port. Agents come and go as the master
	// lists them.
	Master string `json:"master,omitempty"`
	// AgentPollInterval is how often the leading master's agent list is read
	// (default 5s).
	AgentPollInterval Duration `json:"agentPollInterval,omitempty"`
	// Resources, when set, replace what the agent reports (e.g. to offer a
	// share of a shared agent to Kubernetes).
	Resources *ResourceOverride `json:"resources,omitempty"`
	// MaxPods is the node's pod capacity (default 10000).
	MaxPods int `json:"maxPods,omitempty"`
	// MaxWaits bounds concurrent WAIT_CONTAINER long polls per agent (each
	// holds a connection on both ends); containers beyond it are followed by
	// one shared GET_CONTAINERS sweep instead (default 4096).
	MaxWaits int `json:"maxWaits,omitempty"`
	// MaxLaunches bounds concurrent LAUNCH_CONTAINER calls per agent for
	// newly admitted pods (default 32, the reference agent's concurrent
	// spawns). Launches run off the pod controller's sync workers, so a slow
	// fork on the agent does not hold back admitting the next pods.
	MaxLaunches int      `json:"maxLaunches,omitempty"`
	Timeouts    Timeouts `json:"timeouts,omitempty"`
}

// AgentConfig is one legacy agent.
type AgentConfig struct {
	// Endpoint is the agent's base URL, e.g. http://10.0.0.5:5051.
	Endpoint string `json:"endpoint"`
	// NodeName defaults to --nodename for the first agent and
	// <nodename>-<index> for the others.
	NodeName string `json:"nodeName,omitempty"`
	// Address is the node's InternalIP and the pods' host/pod IP; defaults
	// to the endpoint's host.
	Address string `json:"address,omitempty"`
}

// ResourceOverride replaces the agent's reported capacity.
type ResourceOverride struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

// Timeouts of the bridge's dealings with an agent.
type Timeouts struct {
	AgentCall      Duration `json:"agentCall,omitempty"`      // one non-WAIT call (10s)
	HealthInterval Duration `json:"healthInterval,omitempty"` // between health checks (5s)
	RestartBackoff Duration `json:"restartBackoff,omitempty"` // first CrashLoop back-off, doubling (10s, as the kubelet)
	AgentGone      Duration `json:"agentGone,omitempty"`      // unreachable this long, the agent counts as gone (5m)
	Reconcile      Duration `json:"reconcile,omitempty"`      // between reconciliation sweeps, one GET_CONTAINERS each (60s)
	MaxBackoff     Duration `json:"maxBackoff,omitempty"`     // cap of the back-off (5m, as the kubelet)
}

// Duration reads "10s"-style strings.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d Duration) or(def time.Duration) time.Duration {
	if d.Duration > 0 {
		return d.Duration
	}
	return def
}

// LoadConfig reads and validates a provider config file. Unknown fields are
// errors, so a typo does not silently fall back to a default.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provider config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("provider config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("provider config %s: %w", path, err)
	}
	return &c, nil
}

// Validate checks the config and names the field at fault.
func (c *Config) Validate() error {
	switch {
	case len(c.Agents) == 0 && c.Master == "":
		return fmt.Errorf("agents: at least one agent is required (or master: to discover them)")
	case len(c.Agents) > 0 && c.Master != "":
		return fmt.Errorf("master: give either agents (static) or master (discovery), not both")
	case c.Master != "":
		u, err := url.Parse(c.Master)
		if err != nil || (u.Scheme != "zk" && u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("master: %q is not a zk://host:port/path or http://host:port URL", c.Master)
		}
	}
	seen := map[string]bool{}
	for i, a := range c.Agents {
		u, err := url.Parse(a.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agents[%d].endpoint: %q is not an http(s)://host:port URL", i, a.Endpoint)
		}
		if a.NodeName != "" {
			if seen[a.NodeName] {
				return fmt.Errorf("agents[%d].nodeName: %q used twice", i, a.NodeName)
			}
			seen[a.NodeName] = true
		}
	}
	if r := c.Resources; r != nil {
		for field, v := range map[string]string{"resources.cpu": r.CPU, "resources.memory": r.Memory} {
			if v == "" {
				continue
			}
			if _, err := resource.ParseQuantity(v); err != nil {
				return fmt.Errorf("%s: %q: %w", field, v, err)
			}
		}
	}
	if c.MaxPods < 0 {
		return fmt.Errorf("maxPods: must not be negative")
	}
	if c.MaxWaits < 0 {
		return fmt.Errorf("maxWaits: must not be negative")
	}
	if c.MaxLaunches < 0 {
		return fmt.Errorf("maxLaunches: must not be negative")
	}
	return nil
}

// NodeNames assigns each agent its node name.
func (c *Config) NodeNames(base string) []string {
	out := make([]string, len(c.Agents))
	for i, a := range c.Agents {
		switch {
		case a.NodeName != "":
			out[i] = a.NodeName
		case i == 0:
			out[i] = base
		default:
			out[i] = fmt.Sprintf("%s-%d", base, i)
		}
	}
	return out
}

// address is the node and pod IP for an agent.
func (a AgentConfig) address() string {
	if a.Address != "" {
		return a.Address
	}
	u, err := url.Parse(a.Endpoint)
	if err != nil {
		return ""
	}
	return strings.Trim(u.Hostname(), "[]")
}
