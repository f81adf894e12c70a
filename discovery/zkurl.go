package discovery

import (
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"
)

// ZKURL is a parsed Mesos-style ZooKeeper URL:
// zk://[user:password@]host:port[,host:port...]/path.
type ZKURL struct {
	Servers []string // host:port
	Path    string   // absolute, no trailing slash
	// Auth is "user:password" for ZooKeeper digest authentication, as
	// Mesos' --zk accepts it; empty for none.
	Auth string
}

// ParseZKURL parses a zk:// URL. net/url cannot: a server list such as
// "a:2181,b:2181" is not a valid URL host.
func ParseZKURL(s string) (ZKURL, error) {
	rest, ok := strings.CutPrefix(s, "zk://")
	if !ok {
		return ZKURL{}, fmt.Errorf("discovery: %q: expecting zk://host:port[,host:port]/path", s)
	}
	hosts, p, ok := strings.Cut(rest, "/")
	if !ok || strings.Trim(p, "/") == "" {
		return ZKURL{}, fmt.Errorf("discovery: %q: missing znode path (e.g. zk://127.0.0.1:2181/mesos)", s)
	}
	var u ZKURL
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		u.Auth, hosts = hosts[:at], hosts[at+1:]
		if !strings.Contains(u.Auth, ":") {
			return ZKURL{}, fmt.Errorf("discovery: %q: credentials must be user:password", s)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "2181")
		}
		u.Servers = append(u.Servers, h)
	}
	if len(u.Servers) == 0 {
		return ZKURL{}, fmt.Errorf("discovery: %q: no ZooKeeper servers", s)
	}
	u.Path = path.Clean("/" + p)
	return u, nil
}

// String renders the URL back (without credentials).
func (u ZKURL) String() string { return "zk://" + strings.Join(u.Servers, ",") + u.Path }

// DefaultSessionTimeout is the ZooKeeper session timeout asked for; Mesos
// uses 10 s for masters and detectors alike.
const DefaultSessionTimeout = 10 * time.Second

// Conn is one ZooKeeper session with its state changes turned into a
// coalescing wake-up signal: go-zookeeper drops session events when its
// small event channel is full, so callers must not depend on seeing every
// event; they get a kick and read conn.State()/SessionID() themselves.
type Conn struct {
	*zk.Conn
	// Kick receives a value (coalesced) whenever the session state changes.
	Kick <-chan struct{}
	// Done is closed once the connection is closed for good (Close).
	Done <-chan struct{}
}

// Dial opens a session to u's servers. It does not wait for the session:
// go-zookeeper connects (and reconnects, forever) in the background.
func Dial(u ZKURL, sessionTimeout time.Duration, log logrus.FieldLogger) (*Conn, error) {
	if sessionTimeout <= 0 {
		sessionTimeout = DefaultSessionTimeout
	}
	kick := make(chan struct{}, 1)
	cb := func(zk.Event) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	c, events, err := zk.Connect(u.Servers, sessionTimeout,
		zk.WithLogger(zkLogger{log}), zk.WithLogInfo(false), zk.WithEventCallback(cb))
	if err != nil {
		return nil, fmt.Errorf("discovery: zookeeper %s: %w", u, err)
	}
	if u.Auth != "" {
		// Queued until the session exists, and resent by go-zookeeper on
		// every reconnect.
		go func() {
			if err := c.AddAuth("digest", []byte(u.Auth)); err != nil {
				log.WithError(err).Warn("zookeeper digest authentication failed")
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for range events { //nolint:revive // drained: state is read via Kick
		}
		close(done)
	}()
	return &Conn{Conn: c, Kick: kick, Done: done}, nil
}

// EnsurePath creates p and its parents as persistent znodes.
func EnsurePath(c *zk.Conn, p string) error {
	if p == "/" || p == "" {
		return nil
	}
	if ok, _, err := c.Exists(p); err != nil {
		return err
	} else if ok {
		return nil
	}
	if err := EnsurePath(c, path.Dir(p)); err != nil {
		return err
	}
	_, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll))
	if err == zk.ErrNodeExists {
		return nil
	}
	return err
}

// zkLogger sends go-zookeeper's chatter (every reconnect attempt) to debug.
type zkLogger struct{ log logrus.FieldLogger }

func (l zkLogger) Printf(format string, args ...any) {
	if l.log == nil {
		return
	}
	l.log.WithField("component", "zookeeper").Debugf(format, args...)
}

func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
