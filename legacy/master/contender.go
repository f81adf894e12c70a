package master

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
)

// contender takes part in leader election as a Mesos master does: one
// ephemeral sequential znode "json.info_<seq>" holding the MasterInfo JSON;
// the lowest sequence leads; every other contender watches only its
// predecessor (no herd effect when the leader goes), and when that one
// vanishes looks again. A contender that loses its session (expiry, or its
// connection closed) steps down and contends again in a fresh session, with
// a new, higher sequence.
type contender struct {
	url            discovery.ZKURL
	data           []byte
	masterID       string
	sessionTimeout time.Duration
	log            logrus.FieldLogger
	onLeading      func(bool)

	mu      sync.Mutex
	conn    *discovery.Conn
	node    string // our znode's full path, once created in this session
	leading bool
}

// run contends until ctx is done. On return the session is closed, so the
// znode is gone and the next contender leads at once.
func (c *contender) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := discovery.Dial(c.url, c.sessionTimeout, c.log)
		if err != nil {
			c.log.WithError(err).Error("cannot connect to ZooKeeper")
		} else {
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			if c.session(ctx, conn) {
				backoff = 100 * time.Millisecond
			}
			c.setLeading(false)
			c.mu.Lock()
			c.node = ""
			c.mu.Unlock()
			conn.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// dropSession closes the current ZooKeeper connection, ending the session:
// what a crashed master's session looks like to the others (its znode goes
// at once). The contender then joins again with a new session. For tests.
func (c *contender) dropSession() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// fence returns the current session's connection and this contender's
// znode in it. The job store writes through that connection in multi-ops
// that first check the znode exists: once the session that won the
// election is gone (and another master may lead), the check fails and
// nothing is written, even if go-zookeeper has opened a new session on the
// same connection meanwhile.
func (c *contender) fence() (*zk.Conn, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.node == "" {
		return nil, "", errors.New("no election znode in a live ZooKeeper session")
	}
	return c.conn.Conn, c.node, nil
}

func (c *contender) setLeading(v bool) {
	c.mu.Lock()
	changed := c.leading != v
	c.leading = v
	c.mu.Unlock()
	if changed {
		c.onLeading(v)
	}
}

// session contends within one ZooKeeper session; it returns when the
// session is gone (expired, or the connection closed) or ctx is done. It
// reports whether it got as far as creating its znode.
func (c *contender) session(ctx context.Context, conn *discovery.Conn) bool {
	log := c.log
	// Wait for the session.
	for conn.State() != zk.StateHasSession {
		select {
		case <-ctx.Done():
			return false
		case <-conn.Done:
			return false
		case <-conn.Kick:
		}
	}
	sid := conn.SessionID()
	log = log.WithField("zk_session", sid)

	if err := discovery.EnsurePath(conn.Conn, c.url.Path); err != nil {
		log.WithError(err).Warn("cannot create the election path")
		return false
	}
	node, err := c.create(conn, sid)
	if err != nil {
		log.WithError(err).Warn("cannot create the contender znode")
		return false
	}
	c.mu.Lock()
	c.node = c.url.Path + "/" + node
	c.mu.Unlock()
	log = log.WithField("znode", node)
	log.Info("contending for leadership")

	// stepDown fires when the connection has been down, while we led, for
	// half a session timeout: by then the server may be about to expire the
	// session and let another master lead, so this one stops acting as
	// leader first (two leaders would both place tasks).
	var stepDown <-chan time.Time
	for {
		children, _, err := conn.Children(c.url.Path)
		var watch <-chan zk.Event
		if err == nil {
			sort.Slice(children, func(i, j int) bool {
				a, _ := discovery.Sequence(children[i])
				b, _ := discovery.Sequence(children[j])
				return a < b
			})
			pred, mine := "", false
			for _, ch := range children {
				if _, ok := discovery.Sequence(ch); !ok {
					continue
				}
				if ch == node {
					mine = true
					break
				}
				pred = ch
			}
			switch {
			case !mine:
				// Our znode is gone while the session lives (someone
				// deleted it): contend again in a fresh session.
				log.Warn("contender znode vanished; contending again")
				return true
			case pred == "":
				if !c.isLeading() {
					log.Info("elected leading master")
				}
				c.setLeading(true)
				// Watch our own znode: its deletion is news too.
				var ok bool
				ok, _, watch, err = conn.ExistsW(c.url.Path + "/" + node)
				if err == nil && !ok {
					continue
				}
			default:
				c.setLeading(false)
				var ok bool
				ok, _, watch, err = conn.ExistsW(c.url.Path + "/" + pred)
				if err == nil && !ok {
					continue // predecessor went meanwhile: look again
				}
				if err == nil {
					log.WithField("predecessor", pred).Debug("following; watching predecessor")
				}
			}
		}
		if err != nil {
			// The read failed (ZooKeeper unreachable): retry after a session
			// event or shortly, keeping the step-down deadline armed.
			log.WithError(err).Debug("election read failed; retrying")
			if c.isLeading() && stepDown == nil {
				stepDown = time.After(c.sessionTimeout / 2)
			}
			watch = nil
		}
		// Wait for the watch, a session change, or the step-down deadline.
		var retry <-chan time.Time
		if watch == nil {
			retry = time.After(time.Second)
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return true
			case <-conn.Done:
				return true
			case <-retry:
				waiting = false
			case <-stepDown:
				stepDown = nil
				if c.isLeading() {
					log.Warn("ZooKeeper unreachable for half the session timeout: stepping down")
					c.setLeading(false)
				}
			case <-watch:
				waiting = false
			case <-conn.Kick:
				switch st := conn.State(); st {
				case zk.StateExpired:
					log.Warn("ZooKeeper session expired: stepping down, contending again")
					return true
				case zk.StateHasSession:
					stepDown = nil
					if conn.SessionID() != sid {
						log.Warn("ZooKeeper session replaced: contending again")
						return true
					}
					waiting = false // re-read: changes may have been missed
				case zk.StateDisconnected, zk.StateConnecting:
					if stepDown == nil && c.isLeading() {
						stepDown = time.After(c.sessionTimeout / 2)
					}
				}
			}
		}
	}
}

func (c *contender) isLeading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// create makes the contender znode. When the answer to a create is lost
// with the connection, the znode may exist without our knowing its name:
// find it by its ephemeral owner (our session) and its data (our id) rather
// than creating a twin that would contend forever.
func (c *contender) create(conn *discovery.Conn, sid int64) (string, error) {
	prefix := c.url.Path + "/" + discovery.LeaderPrefix
	for attempt := 0; ; attempt++ {
		p, err := conn.Create(prefix, c.data, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
		if err == nil {
			return p[strings.LastIndexByte(p, '/')+1:], nil
		}
		if attempt >= 3 || (err != zk.ErrConnectionClosed && err != zk.ErrNoServer) {
			return "", err
		}
		if name, ok := c.findOwn(conn, sid); ok {
			return name, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *contender) findOwn(conn *discovery.Conn, sid int64) (string, bool) {
	children, _, err := conn.Children(c.url.Path)
	if err != nil {
		return "", false
	}
	for _, ch := range children {
		if _, ok := discovery.Sequence(ch); !ok {
			continue
		}
		data, st, err := conn.Get(c.url.Path + "/" + ch)
		if err != nil || st.EphemeralOwner != sid {
			continue
		}
		if info, err := discovery.ParseMasterInfo(data); err == nil && info.ID == c.masterID {
			return ch, true
		}
	}
	return "", false
}
