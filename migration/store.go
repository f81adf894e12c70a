package migration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/zkacl"
)

// Store is the migration stages kept in ZooKeeper, with an in-memory copy
// that watches keep current. Reads (Resolve, Get, List) are answered from
// the copy alone: the gateway asks for every new job, and a ZooKeeper
// outage must not stop jobs from being placed. Writes go to ZooKeeper and
// reach every Store, the writer's included, through the same watch.
type Store struct {
	l    layout
	def  Stage
	log  logrus.FieldLogger
	conn *discovery.Conn
	// creds authenticate the session (zero: none); acl is what every
	// znode the Store creates gets; self is who direct writes are
	// recorded as (see author).
	creds zkacl.Credentials
	acl   []zk.ACL
	self  string

	mu      sync.RWMutex
	entries map[key]cached
	// Where the copy stands on the version znode: its creation (a tree
	// removed and made again is another history), its version (the count
	// of changes) and the zxid of its last change (what writers wait for).
	czxid, zxid int64
	version     int32
	loaded      bool
	advanced    chan struct{} // closed, and replaced, whenever zxid moves
	subs        []chan struct{}
	closed      bool

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type key struct {
	scope Scope
	name  string
}

// cached is an entry with its stage already parsed: Resolve runs per job.
type cached struct {
	entry Entry
	stage Stage
}

func (c cached) same(o cached) bool {
	return c.entry.Stage == o.entry.Stage && c.entry.By == o.entry.By && c.entry.DeclaredBy == o.entry.DeclaredBy &&
		c.entry.Updated.Equal(o.entry.Updated)
}

// Open connects to ZooKeeper at zkURL (zk://[user:password@]host:port
// [,host:port]/root; the root is created if missing), reads every entry
// and keeps following them until Close. def is the stage of applications
// no entry names.
//
// With digest credentials (in the URL, or WithCredentials, which wins) the
// session authenticates with them, the znodes the Store creates are
// readable by the world and writable by their owner only, and a tree
// created without them is brought under that ACL (see secure). Without,
// the znodes are open to all, as ZooKeeper's default is.
//
// ctx bounds the wait for the first session and the first read: a gateway
// that cannot learn the stages must not start, or it would send migrated
// applications back to the default. log may be nil. No error or log line
// shows the password.
func Open(ctx context.Context, zkURL string, def Stage, log logrus.FieldLogger, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// The credentials are taken out first: whatever parses the rest may
	// quote it in its errors.
	bare, creds, err := zkacl.SplitURL(zkURL)
	if err != nil {
		return nil, fmt.Errorf("migration: %w: %w", ErrInvalid, err)
	}
	if !o.creds.IsZero() {
		creds = o.creds
	}
	u, err := discovery.ParseZKURL(bare)
	if err != nil {
		return nil, fmt.Errorf("migration: %w: %w", ErrInvalid, err)
	}
	if _, err := ParseStage(def.String()); err != nil {
		return nil, fmt.Errorf("migration: default stage: %w", err)
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("zk", u.String())
	conn, err := discovery.Dial(u, discovery.DefaultSessionTimeout, log)
	if err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	s := &Store{
		l: layout{root: u.Path}, def: def, log: log, conn: conn,
		creds: creds, acl: creds.ACL(), self: directAuthor(creds),
		entries:  map[key]cached{},
		advanced: make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	watch, err := s.start(ctx)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("migration: opening %s: %w", u, err)
	}
	go s.run(watch)
	return s, nil
}

// start waits for a session, lays out the tree and reads it.
func (s *Store) start(ctx context.Context) (<-chan zk.Event, error) {
	for s.conn.State() != zk.StateHasSession {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no session: %w: %w", ErrUnavailable, ctx.Err())
		case <-s.conn.Kick:
		}
	}
	if !s.creds.IsZero() {
		// Before anything else on the session, and synchronously:
		// go-zookeeper then sends it again first on every reconnection.
		if err := s.conn.AddAuth(zkacl.Scheme, s.creds.Auth()); err != nil {
			return nil, zkError("authenticating as "+s.creds.User, err)
		}
	}
	if err := s.l.ensure(s.conn.Conn, s.acl); err != nil {
		return nil, zkError("creating the tree", err)
	}
	if !s.creds.IsZero() {
		if err := s.secure(ctx); err != nil {
			return nil, err
		}
	}
	watch, err := s.refresh()
	if err != nil {
		return nil, zkError("reading the stages", err)
	}
	return watch, nil
}

// Close stops following ZooKeeper, ends the session and closes every
// Changes channel. It is safe to call more than once.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.conn.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		for _, ch := range s.subs {
			close(ch)
		}
		s.subs = nil
	})
}

// Default is the stage of applications that no entry names.
func (s *Store) Default() Stage { return s.def }

// Resolve decides the stage of an application's new jobs: its own entry,
// else its capacity group's, else the default. It never waits on the
// network; during a ZooKeeper outage it answers from the last known state.
// Either name may be empty.
func (s *Store) Resolve(application, capacityGroup string) Decision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range []key{{ScopeApplication, application}, {ScopeCapacityGroup, capacityGroup}} {
		if k.name == "" {
			continue
		}
		if c, ok := s.entries[k]; ok {
			return Decision{Stage: c.stage, Scope: k.scope, Name: k.name}
		}
	}
	return Decision{Stage: s.def}
}

// Get returns the entry of one application or capacity group, from the
// in-memory copy.
func (s *Store) Get(scope Scope, name string) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.entries[key{scope, name}]
	return c.entry, ok
}

// List returns every entry, sorted by scope, then name.
func (s *Store) List() []Entry {
	s.mu.RLock()
	out := make([]Entry, 0, len(s.entries))
	for _, c := range s.entries {
		out = append(out, c.entry)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope != out[j].Scope {
			return out[i].Scope < out[j].Scope
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Changes returns a new subscription that receives a value after the
// in-memory copy changed. It holds at most one pending value, so a slow
// reader sees one wake-up for many changes and never blocks the Store; it
// says that something changed, not what. It is closed by Close.
func (s *Store) Changes() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch
	}
	s.subs = append(s.subs, ch)
	return ch
}

// notifyLocked wakes every subscriber; s.mu must be held.
func (s *Store) notifyLocked() {
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// zkError wraps a ZooKeeper error, marking it ErrUnavailable when
// ZooKeeper could not be asked at all.
func zkError(what string, err error) error {
	if errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("%s: %w: %w", what, ErrForbidden, err)
	}
	if unreachable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
