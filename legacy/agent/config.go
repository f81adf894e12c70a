package agent

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
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

	// HTTPAuth is --authenticate_http_readonly, --authenticate_http_readwrite
	// and --http_credentials: which operator calls need HTTP Basic
	// credentials (doc.go has the mapping). Zero: none.
	HTTPAuth mesosauth.Flags
	// Credential is sent with every registration (--credential), for a
	// master that demands authentication. Nil: none.
	Credential *mesosauth.Credential

	// Count is how many agents Run serves from this process (--count;
	// default 1). Agents derives each one's config from the fields above.
	Count int

	// supRoot, when set, is the work dir of the supervisor this agent's
	// containers run under, shared with the other agents of the process
	// (Agents sets it; WorkDir is then a directory inside it). Empty: the
	// agent's own WorkDir.
	supRoot string
	// supStart, shared by the agents of one supRoot, makes them start one
	// supervisor between them, not one each.
	supStart *supStarter
}

// MaxCount bounds Config.Count: every agent costs a listener, a supervisor
// stream and a few descriptors, and the ports are base+i.
const MaxCount = 4096

// alternative picks agent i's entry of a "|"-separated list of
// alternatives (Resources and Attributes): entry i mod their number.
func alternative(s string, i int) string {
	alts := strings.Split(s, "|")
	return strings.TrimSpace(alts[i%len(alts)])
}

// Agents returns the configs of the agents Run serves, in index order.
// Resources and Attributes may list "|"-separated alternatives: agent i
// takes alternative i mod their number (with Count 1, the first). With
// Count 1 (or 0) nothing else changes. With Count N > 1, agent i
// (0 ≤ i < N) is:
//
//   - WorkDir <WorkDir>/agent-<i>, its own checkpoints, sandboxes, locks
//     and launch log; one supervisor, rooted at WorkDir, runs every
//     agent's containers.
//   - Listen on the port of Listen + i (port 0: an ephemeral port each);
//     Port, reported by GET_AGENT, is that listener's.
//   - AgentID "<AgentID>-<i>", or without AgentID the default derived from
//     the host name and its own port.
//   - Endpoint (--advertise-url) with its port + i; it must name a port.
//   - Attributes with agent_index:<i> added (the given set must not have
//     agent_index).
//   - Logger with the field agent=<agent id>.
//
// Hostname, Master, HeartbeatInterval, Recover, ImageCatalog, HTTPAuth and
// Credential are the same for all.
func (c Config) Agents() ([]Config, error) {
	n := max(c.Count, 1)
	if n > MaxCount {
		return nil, fmt.Errorf("agent: --count %d: at most %d agents per process", c.Count, MaxCount)
	}
	if n == 1 {
		one := c
		one.Count = 1
		one.Resources = alternative(c.Resources, 0)
		one.Attributes = alternative(c.Attributes, 0)
		return []Config{one}, nil
	}
	if c.WorkDir == "" {
		return nil, errors.New("agent: WorkDir is required")
	}
	root, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("agent: work dir: %w", err)
	}
	listen := c.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("agent: --listen %q: %w", listen, err)
	}
	base, err := strconv.Atoi(portStr)
	if err != nil || base < 0 || base > 65535 {
		return nil, fmt.Errorf("agent: --listen %q: bad port", listen)
	}
	if base > 0 && base+n-1 > 65535 {
		return nil, fmt.Errorf("agent: --listen %q with --count %d: ports %d-%d do not exist", listen, n, base, base+n-1)
	}
	var adv *url.URL
	advPort := 0
	if c.Endpoint != "" {
		if adv, err = url.Parse(c.Endpoint); err != nil || adv.Host == "" {
			return nil, fmt.Errorf("agent: --advertise-url %q: not a URL", c.Endpoint)
		}
		if advPort, err = strconv.Atoi(adv.Port()); err != nil || advPort <= 0 || advPort+n-1 > 65535 {
			return nil, fmt.Errorf("agent: --advertise-url %q with --count %d: needs an explicit port, and room for %d ports from it", c.Endpoint, n, n)
		}
	}
	for _, alt := range strings.Split(c.Attributes, "|") {
		attrs, err := ParseAttributes(alt)
		if err != nil {
			return nil, fmt.Errorf("agent: --attributes: %w", err)
		}
		for _, at := range attrs {
			if at.Name == AgentIndexAttribute {
				return nil, fmt.Errorf("agent: --attributes: %s is set per agent by --count", AgentIndexAttribute)
			}
		}
	}
	logger := c.Logger
	if logger == nil {
		logger = logrus.StandardLogger()
	}
	start := &supStarter{}
	out := make([]Config, n)
	for i := range n {
		a := c
		a.Count = 1
		a.supRoot, a.supStart = root, start
		a.WorkDir = filepath.Join(root, fmt.Sprintf("agent-%d", i))
		a.Port = 0
		if base > 0 {
			a.Listen = net.JoinHostPort(host, strconv.Itoa(base+i))
		}
		if c.AgentID != "" {
			a.AgentID = fmt.Sprintf("%s-%d", c.AgentID, i)
		}
		if adv != nil {
			u := *adv
			u.Host = net.JoinHostPort(adv.Hostname(), strconv.Itoa(advPort+i))
			a.Endpoint = u.String()
		}
		a.Resources = alternative(c.Resources, i)
		a.Attributes = alternative(c.Attributes, i)
		if a.Attributes != "" {
			a.Attributes += ";"
		}
		a.Attributes += fmt.Sprintf("%s:%d", AgentIndexAttribute, i)
		a.Logger = logger // withDefaults adds the agent field once the id is known
		out[i] = a
	}
	return out, nil
}

// AgentIndexAttribute is the attribute that tells the agents of one
// process (--count) apart: agent_index:<i>.
const AgentIndexAttribute = "agent_index"

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
	if c.supRoot != "" {
		c.Logger = c.Logger.WithField("agent", c.AgentID)
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
