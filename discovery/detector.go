package discovery

import (
	"errors"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"
)

// Detector follows the leading Mesos master in ZooKeeper: the contender
// znode with the lowest sequence under the URL's path. It reads once, then
// only when ZooKeeper tells it something changed (a child watch, or a
// session event); the only timer is the back-off after a failed read while
// ZooKeeper is unreachable. Through an outage it keeps reporting the last
// leader it knew: a master that cannot be seen is not a master that is gone,
// and the bridge must not tear down its nodes because ZooKeeper blinked.
type Detector struct {
	url  ZKURL
	log  logrus.FieldLogger
	conn *Conn

	mu     sync.Mutex
	leader MasterInfo
	known  bool // leader is what ZooKeeper last said (possibly "none")
	subs   []chan MasterInfo
	closed bool

	stop chan struct{}
	done chan struct{}
}

// DetectorOption tunes a Detector.
type DetectorOption func(*detectorOptions)

type detectorOptions struct {
	sessionTimeout time.Duration
	maxBackoff     time.Duration
}

// WithSessionTimeout sets the ZooKeeper session timeout (default 10 s).
func WithSessionTimeout(d time.Duration) DetectorOption {
	return func(o *detectorOptions) { o.sessionTimeout = d }
}

// WithMaxBackoff caps the retry back-off while ZooKeeper is unreachable
// (default 5 s; it starts at 100 ms and doubles).
func WithMaxBackoff(d time.Duration) DetectorOption {
	return func(o *detectorOptions) { o.maxBackoff = d }
}

// NewDetector starts following the leader under url
// (zk://host:port[,host:port]/path). It returns at once; Leader reports
// false until the first read succeeds. log may be nil.
func NewDetector(url string, log logrus.FieldLogger, opts ...DetectorOption) (*Detector, error) {
	u, err := ParseZKURL(url)
	if err != nil {
		return nil, err
	}
	o := detectorOptions{sessionTimeout: DefaultSessionTimeout, maxBackoff: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if log == nil {
		log = discardLogger()
	}
	log = log.WithField("zk", u.String())
	conn, err := Dial(u, o.sessionTimeout, log)
	if err != nil {
		return nil, err
	}
	d := &Detector{url: u, log: log, conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	go d.run(o.maxBackoff)
	return d, nil
}

// Leader returns the current leader. ok is false until ZooKeeper has been
// read once, and while ZooKeeper says no master contends; it stays true,
// with the last leader, while ZooKeeper is unreachable.
func (d *Detector) Leader() (MasterInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leader, d.known && !d.leader.IsZero()
}

// Changes returns a new subscription: it receives the leader each time it
// changes (a zero MasterInfo when no master is left), starting with the
// current one if known. It holds only the latest value, so a slow reader
// skips intermediate leaders rather than blocking the detector. It is closed
// by Close.
func (d *Detector) Changes() <-chan MasterInfo {
	ch := make(chan MasterInfo, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		close(ch)
		return ch
	}
	if d.known {
		ch <- d.leader
	}
	d.subs = append(d.subs, ch)
	return ch
}

// Close stops following and closes the ZooKeeper session and every Changes
// channel. It is safe to call more than once.
func (d *Detector) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	d.conn.Close()
	<-d.done
	d.mu.Lock()
	for _, ch := range d.subs {
		close(ch)
	}
	d.subs = nil
	d.mu.Unlock()
}

func (d *Detector) publish(m MasterInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known && d.leader.Equal(m) {
		return
	}
	prev := d.leader
	d.leader, d.known = m, true
	if !(m.IsZero() && prev.IsZero()) {
		d.log.WithFields(logrus.Fields{"leader": m.String(), "previous": prev.String()}).Info("leading master changed")
	}
	for _, ch := range d.subs {
		select { // latest wins
		case <-ch:
		default:
		}
		ch <- m
	}
}

var errLeaderVanished = errors.New("leader znode vanished between list and read")

func (d *Detector) run(maxBackoff time.Duration) {
	defer close(d.done)
	backoff := 100 * time.Millisecond
	for {
		watch, err := d.read()
		if err == errLeaderVanished {
			continue // the next contender leads now: read again at once
		}
		if err != nil {
			d.log.WithError(err).WithField("retry_in", backoff.String()).
				Debug("cannot read the leader from ZooKeeper; keeping the last known one")
			// Retry on a session event (reconnected) or after the back-off.
			select {
			case <-d.stop:
				return
			case <-d.conn.Done:
				return
			case <-d.conn.Kick:
			case <-time.After(backoff):
				backoff = min(backoff*2, maxBackoff)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		for waiting := true; waiting; {
			select {
			case <-d.stop:
				return
			case <-d.conn.Done:
				return
			case <-watch:
				waiting = false
			case <-d.conn.Kick:
				// A new session (after expiry) has lost our watches; a
				// reconnected one may have missed changes during the gap
				// (go-zookeeper re-arms watches, but a re-read is cheap and
				// certain). Anything else: keep waiting.
				if d.conn.State() == zk.StateHasSession {
					waiting = false
				}
			}
		}
	}
}

// read lists the contenders with a child watch and publishes the leader.
// When the path does not exist yet it watches for its creation instead.
func (d *Detector) read() (<-chan zk.Event, error) {
	children, _, watch, err := d.conn.ChildrenW(d.url.Path)
	if err == zk.ErrNoNode {
		ok, _, ewatch, err := d.conn.ExistsW(d.url.Path)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, errLeaderVanished // created meanwhile: read again at once
		}
		d.publish(MasterInfo{})
		return ewatch, nil
	}
	if err != nil {
		return nil, err
	}
	name, ok := Lowest(children)
	if !ok {
		d.publish(MasterInfo{})
		return watch, nil
	}
	data, _, err := d.conn.Get(d.url.Path + "/" + name)
	if err == zk.ErrNoNode {
		return nil, errLeaderVanished
	}
	if err != nil {
		return nil, err
	}
	info, err := ParseMasterInfo(data)
	if err != nil {
		// A contender we cannot read is not a leader we can use; keep the
		// last one and wait for the next change.
		d.log.WithError(err).WithField("znode", name).Error("unreadable leader znode")
		return watch, nil
	}
	d.publish(info)
	return watch, nil
}
