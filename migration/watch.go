package migration

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"
)

// Back-off between failed reads while ZooKeeper is unreachable. A session
// event cuts it short, so recovery does not wait for the timer.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// fetchWorkers bounds the reads in flight during a full read: enough to
// read thousands of entries in well under a second, few enough to be a
// polite client.
const fetchWorkers = 16

// run follows the version znode until Close. Nothing here polls: it waits
// for the watch to fire or for a new session; the timer only paces
// retries while ZooKeeper cannot be read.
func (s *Store) run(watch <-chan zk.Event) {
	defer close(s.done)
	for s.await(watch) {
		backoff := minBackoff
		for {
			var err error
			if watch, err = s.refresh(); err == nil {
				break
			}
			s.log.WithError(err).WithField("retry_in", backoff.String()).
				Debug("cannot read the migration stages; keeping the last known ones")
			select {
			case <-s.stop:
				return
			case <-s.conn.Done:
				return
			case <-s.conn.Kick:
			case <-time.After(backoff):
				backoff = min(backoff*2, maxBackoff)
			}
		}
	}
}

// await waits for a reason to read again: the watch fired (a change, or
// the session that held it expired), or a session was (re)established and
// may have missed changes. It returns false once the Store is closed.
func (s *Store) await(watch <-chan zk.Event) bool {
	for {
		select {
		case <-s.stop:
			return false
		case <-s.conn.Done:
			return false
		case <-watch:
			return true
		case <-s.conn.Kick:
			if s.conn.State() == zk.StateHasSession {
				return true
			}
		}
	}
}

// refresh reads the version znode, watching it, and brings the copy up to
// it: nothing to do when it has not moved, one entry to re-read when it
// moved by one, everything when it moved by more.
func (s *Store) refresh() (<-chan zk.Event, error) {
	data, stat, watch, err := s.conn.GetW(s.l.version())
	if errors.Is(err, zk.ErrNoNode) {
		// Someone removed the tree: lay it out again; what it held is gone.
		if err := s.l.ensure(s.conn.Conn, s.acl); err != nil {
			return nil, err
		}
		data, stat, watch, err = s.conn.GetW(s.l.version())
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.l.version(), err)
	}
	s.mu.RLock()
	same := s.loaded && s.czxid == stat.Czxid
	behind := stat.Version - s.version
	s.mu.RUnlock()
	switch {
	case same && behind == 0:
	case same && behind == 1:
		var c Change
		if json.Unmarshal(data, &c) == nil && validKey(c.Scope, c.Name) == nil {
			err = s.reloadOne(c)
			break
		}
		err = s.reloadAll()
	default:
		err = s.reloadAll()
	}
	if err != nil {
		return nil, err
	}
	s.advance(stat)
	return watch, nil
}

// advance records that the copy has caught up with the version znode.
func (s *Store) advance(stat *zk.Stat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.czxid, s.version, s.loaded = stat.Czxid, stat.Version, true
	if stat.Mzxid != s.zxid {
		s.zxid = stat.Mzxid
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
}

// reloadOne re-reads the entry that change names. The entry is read rather
// than rebuilt from the change record: it may have moved on since, and the
// copy must never step back behind what it already showed.
func (s *Store) reloadOne(change Change) error {
	k := key{change.Scope, change.Name}
	c, ok, err := s.fetch(k)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.entries[k]
	if ok == had && (!ok || old.same(c)) {
		return nil
	}
	if ok {
		s.entries[k] = c
	} else {
		delete(s.entries, k)
	}
	s.log.WithFields(logrus.Fields{
		"scope": k.scope, "name": k.name, "old": old.entry.Stage, "new": c.entry.Stage, "user": change.By, "caller": change.DeclaredBy,
	}).Info("migration stage changed")
	s.notifyLocked()
	return nil
}

// reloadAll reads every entry and replaces the copy with them.
func (s *Store) reloadAll() error {
	var keys []key
	for _, sc := range scopes {
		names, _, err := s.conn.Children(s.l.dir(sc))
		if err != nil {
			return fmt.Errorf("listing %s: %w", s.l.dir(sc), err)
		}
		for _, n := range names {
			keys = append(keys, key{sc, n})
		}
	}
	found := make([]cached, len(keys))
	ok := make([]bool, len(keys))
	err := parallel(len(keys), func(i int) (err error) {
		found[i], ok[i], err = s.fetch(keys[i])
		return err
	})
	if err != nil {
		return err
	}
	entries := make(map[key]cached, len(keys))
	for i, k := range keys {
		if ok[i] {
			entries[k] = found[i]
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	changed := len(entries) != len(s.entries)
	for k, c := range entries {
		if old, had := s.entries[k]; !had || !old.same(c) {
			changed = true
			break
		}
	}
	s.entries = entries
	if changed || !s.loaded {
		s.log.WithField("entries", len(entries)).Info("migration stages read")
	}
	if changed {
		s.notifyLocked()
	}
	return nil
}

// fetch reads one entry; ok is false when it does not exist, or cannot be
// understood (then its application falls back to its capacity group or
// the default, and the error is logged, not returned: one bad znode must
// not keep every other change from being seen).
func (s *Store) fetch(k key) (c cached, ok bool, err error) {
	p := s.l.entry(k.scope, k.name)
	data, _, err := s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return cached{}, false, nil
	}
	if err != nil {
		return cached{}, false, fmt.Errorf("reading %s: %w", p, err)
	}
	if err := json.Unmarshal(data, &c.entry); err != nil {
		s.log.WithError(err).WithField("znode", p).Error("unreadable migration entry: ignored")
		return cached{}, false, nil
	}
	if c.stage, err = ParseStage(c.entry.Stage); err != nil {
		s.log.WithError(err).WithField("znode", p).Error("migration entry with an invalid stage: ignored")
		return cached{}, false, nil
	}
	// The path says what the entry is about, whatever its data claims.
	c.entry.Scope, c.entry.Name = k.scope, k.name
	return c, true, nil
}

// parallel runs fn(0..n-1) on up to fetchWorkers goroutines (go-zookeeper
// pipelines concurrent requests on its one connection) and returns the
// first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range min(n, fetchWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
