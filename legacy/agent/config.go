package agent

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"
)

// Config describes one reference agent. Zero values are replaced by the
// defaults documented on each field.
type Config struct {
	// Listen is the TCP address Run listens on. Default 127.0.0.1:5051.
	// New only uses it to learn the port when Port is zero.
	Listen string
	// WorkDir holds DIR/sandboxes/<container-id>. Required.
	WorkDir string
	// AgentID is reported by GET_AGENT. Default: a stable id derived from the
	// host name and the port, shaped like a Mesos agent id ("<uuid>-S0").
	AgentID string
	// Hostname is reported by GET_AGENT. Default 127.0.0.1.
	Hostname string
	// Port is reported by GET_AGENT. Default: the port of Listen, else 5051.
	Port int32
	// Resources in Mesos resource string form. Default
	// "cpus:4;mem:8192;disk:20480;gpus:0".
	Resources string
	// Attributes in Mesos attribute string form, e.g.
	// "zone:us-east-1a;instance_type:m5.large". Default: none.
	Attributes string
	// ImageCatalog is the path of a JSON image catalog. Empty means the
	// embedded catalog.default.json.
	ImageCatalog string
	// Logger receives the agent's structured logs. Default logrus.StandardLogger().
	Logger logrus.FieldLogger
	// MaxConcurrentSpawns bounds launches that hold transient file
	// descriptors (stdout, stderr, the exec status pipe) at the same time.
	// Default 32.
	MaxConcurrentSpawns int

	// Master, when set, makes Run register the agent with the
	// leading master: "zk://host:port[,host:port]/path" (the leader is
	// found in ZooKeeper as Mesos agents find it) or "http://host:port" (a
	// fixed master; a non-leading one redirects). Empty: standalone.
	Master string
	// Endpoint is the base URL the agent advertises to the master. Default
	// http://<Hostname>:<Port>.
	Endpoint string
	// HeartbeatInterval bounds the time between re-registrations; the
	// master may ask for a shorter one. Default 15 s.
	HeartbeatInterval time.Duration

	// Recover selects agent recovery (doc.go): "" keeps containers as
	// children of this process, killed by Close; RecoverReconnect runs them
	// under a supervisor process that outlives the agent, and a restarted
	// agent on the same WorkDir re-attaches to them; RecoverCleanup does the
	// same but kills every checkpointed container at start. Needs
	// MaybeSupervise at the start of main.
	Recover string
}

// DefaultResources is the resource string used when Config.Resources is empty.
const DefaultResources = "cpus:4;mem:8192;disk:20480;gpus:0"

// DefaultListen is the address used when Config.Listen is empty.
const DefaultListen = "127.0.0.1:5051"

// DefaultHeartbeatInterval is used when Config.HeartbeatInterval is zero.
const DefaultHeartbeatInterval = 15 * time.Second

func (c Config) withDefaults() (Config, error) {
	if c.WorkDir == "" {
		return c, errors.New("agent: WorkDir is required")
	}
	abs, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return c, fmt.Errorf("agent: work dir: %w", err)
	}
	c.WorkDir = abs
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Hostname == "" {
		c.Hostname = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 5051
		if _, p, err := net.SplitHostPort(c.Listen); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
				c.Port = int32(n)
			}
		}
	}
	if c.AgentID == "" {
		c.AgentID = defaultAgentID(c.Port)
	}
	if c.Resources == "" {
		c.Resources = DefaultResources
	}
	if c.Logger == nil {
		c.Logger = logrus.StandardLogger()
	}
	if c.MaxConcurrentSpawns <= 0 {
		c.MaxConcurrentSpawns = 32
	}
	if c.Endpoint == "" {
		c.Endpoint = "http://" + net.JoinHostPort(c.Hostname, strconv.Itoa(int(c.Port)))
	}
	switch c.Recover {
	case RecoverNone, RecoverReconnect, RecoverCleanup:
	default:
		return c, fmt.Errorf("agent: --recover=%q: want %q or %q", c.Recover, RecoverReconnect, RecoverCleanup)
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return c, nil
}

// defaultAgentID is stable across restarts of the same agent so that a bridge
// that keys state by agent id does not see a "new" agent after every restart;
// the containers themselves are not preserved, which the bridge learns from
// WAIT/GET_CONTAINERS answering 404/empty.
func defaultAgentID(port int32) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	sum := sha1.Sum([]byte(fmt.Sprintf("%s:%d", host, port)))
	return fmt.Sprintf("%x-%x-%x-%x-%x-S0", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// ParseResources parses the Mesos agent --resources string form:
// "name[(role)]:value;..." where value is a scalar ("4"), ranges
// ("[31000-32000,33000-33100]") or a set ("{a,b}").
func ParseResources(s string) ([]mesos.Resource, error) {
	var out []mesos.Resource
	for _, item := range splitItems(s) {
		name, value, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("resource %q: expecting name:value", item)
		}
		name = strings.TrimSpace(name)
		var role *string
		if i := strings.IndexByte(name, '('); i >= 0 {
			if !strings.HasSuffix(name, ")") {
				return nil, fmt.Errorf("resource %q: unterminated role", item)
			}
			r := name[i+1 : len(name)-1]
			name = name[:i]
			if r != "" && r != "*" {
				role = &r
			}
		}
		if name == "" {
			return nil, fmt.Errorf("resource %q: empty name", item)
		}
		v, err := parseValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", item, err)
		}
		if v.Type == mesos.TEXT {
			return nil, fmt.Errorf("resource %q: text values are not allowed for resources", item)
		}
		t := v.Type
		out = append(out, mesos.Resource{
			Name:   name,
			Type:   &t,
			Scalar: v.Scalar,
			Ranges: v.Ranges,
			Set:    v.Set,
			Role:   role,
		})
	}
	return out, nil
}

// ParseAttributes parses the Mesos agent --attributes string form:
// "name:value;..." where value is a scalar, ranges or text (sets are not
// valid attribute values in Mesos).
func ParseAttributes(s string) ([]mesos.Attribute, error) {
	var out []mesos.Attribute
	for _, item := range splitItems(s) {
		name, value, ok := strings.Cut(item, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("attribute %q: expecting name:value", item)
		}
		v, err := parseValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", item, err)
		}
		if v.Type == mesos.SET {
			return nil, fmt.Errorf("attribute %q: sets are not valid attribute values", item)
		}
		out = append(out, mesos.Attribute{
			Name:   name,
			Type:   v.Type,
			Scalar: v.Scalar,
			Ranges: v.Ranges,
			Text:   v.Text,
		})
	}
	return out, nil
}

func splitItems(s string) []string {
	var out []string
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseValue follows Mesos' values::parse: brackets mean ranges, braces a
// set, a number a scalar, anything else text.
func parseValue(s string) (mesos.Value, error) {
	switch {
	case strings.HasPrefix(s, "["):
		if !strings.HasSuffix(s, "]") {
			return mesos.Value{}, fmt.Errorf("unterminated ranges %q", s)
		}
		var rs []mesos.Value_Range
		for _, part := range strings.Split(s[1:len(s)-1], ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			b, e, ok := strings.Cut(part, "-")
			if !ok {
				e = b
			}
			begin, err1 := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
			end, err2 := strconv.ParseUint(strings.TrimSpace(e), 10, 64)
			if err1 != nil || err2 != nil || end < begin {
				return mesos.Value{}, fmt.Errorf("bad range %q", part)
			}
			rs = append(rs, mesos.Value_Range{Begin: begin, End: end})
		}
		return mesos.Value{Type: mesos.RANGES, Ranges: &mesos.Value_Ranges{Range: rs}}, nil
	case strings.HasPrefix(s, "{"):
		if !strings.HasSuffix(s, "}") {
			return mesos.Value{}, fmt.Errorf("unterminated set %q", s)
		}
		var items []string
		for _, it := range strings.Split(s[1:len(s)-1], ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		return mesos.Value{Type: mesos.SET, Set: &mesos.Value_Set{Item: items}}, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return mesos.Value{Type: mesos.SCALAR, Scalar: &mesos.Value_Scalar{Value: f}}, nil
	}
	if s == "" {
		return mesos.Value{}, errors.New("empty value")
	}
	return mesos.Value{Type: mesos.TEXT, Text: &mesos.Value_Text{Value: s}}, nil
}
