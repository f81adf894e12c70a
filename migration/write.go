package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"
)

// maxAttempts bounds the compare-and-set retries of one write: each lost
// race means another writer succeeded, so only a storm of writers to the
// same entry exhausts it.
const maxAttempts = 5

// applyWait bounds how long a write waits to see itself in the writer's
// own copy (it normally takes milliseconds): long enough that a Resolve
// right after Set agrees with it, short enough that a write never hangs on
// a watch that will not come.
const applyWait = 5 * time.Second

// Set records stage for an application or capacity group. Its author is
// the authenticated caller in ctx (apiauth.From), else the Store's own
// identity; by is what the caller declares (optional: "" leaves the
// X-Titus-CallerId it sent, if any). The entry, a history record and the
// version znode change in one
// ZooKeeper transaction guarded by the entry's version, retried when
// another writer got in between. Setting the stage an entry already has is
// a no-op: it returns a Change with Old == New, carrying the entry's own
// time and author, and records no history.
//
// Errors wrap ErrInvalid (bad scope, name, stage or declared author),
// ErrUnavailable (ZooKeeper unreachable), ErrForbidden (the znodes' ACL
// refuses this Store) or ErrConflict (retries exhausted). ctx bounds
// the retries; each ZooKeeper request is bounded by the session timeout.
func (s *Store) Set(ctx context.Context, scope Scope, name string, stage Stage, by string) (Change, error) {
	if _, err := ParseStage(stage.String()); err != nil {
		return Change{}, fmt.Errorf("migration: set %s/%s: %w", scope, name, err)
	}
	return s.write(ctx, "set", scope, name, stage.String(), by)
}

// Unset removes the entry of an application or capacity group, which then
// follows its capacity group or the default again; the removal is recorded
// in the history like any change. Errors are Set's, plus ErrNotFound when
// there is no entry.
func (s *Store) Unset(ctx context.Context, scope Scope, name string, by string) (Change, error) {
	return s.write(ctx, "unset", scope, name, "", by)
}

// write moves an entry to stage ("" removes it).
func (s *Store) write(ctx context.Context, verb string, scope Scope, name, stage, by string) (Change, error) {
	fail := func(err error) (Change, error) {
		return Change{}, fmt.Errorf("migration: %s %s/%s: %w", verb, scope, name, err)
	}
	if err := validKey(scope, name); err != nil {
		return fail(err)
	}
	if err := validDeclared(by); err != nil {
		return fail(err)
	}
	author, declared, reason := s.author(ctx, by)
	p := s.l.entry(scope, name)
	log := s.log.WithFields(logrus.Fields{"scope": scope, "name": name, "user": author, "caller": declared})
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		cur, stat, err := s.current(p)
		if err != nil {
			return fail(err)
		}
		switch {
		case stat == nil && stage == "":
			return fail(ErrNotFound)
		case stat != nil && stage != "" && cur.Stage == stage:
			return Change{At: cur.Updated, By: cur.By, DeclaredBy: cur.DeclaredBy, Scope: scope, Name: name, Old: stage, New: stage}, nil
		}
		ch := Change{At: time.Now().UTC(), By: author, DeclaredBy: declared, Reason: reason,
			Scope: scope, Name: name, Old: cur.Stage, New: stage}
		ops, err := s.ops(p, stat, ch)
		if err != nil {
			return fail(err)
		}
		res, err := s.conn.Multi(ops...)
		if err == nil {
			log.WithFields(logrus.Fields{"old": ch.Old, "new": ch.New}).Info("migration stage written")
			// The version znode's set is the last op: its zxid is the
			// transaction's, which the watch will bring into our copy.
			s.waitApplied(ctx, res[len(res)-1].Stat.Mzxid)
			return ch, nil
		}
		if !lostRace(res) {
			return fail(zkError("writing", err))
		}
		if attempt == maxAttempts {
			return fail(fmt.Errorf("%w: gave up after %d attempts: %w", ErrConflict, attempt, err))
		}
		log.WithError(err).WithField("attempt", attempt).Debug("entry changed under us; retrying")
	}
}

// current reads an entry from ZooKeeper itself (not the copy, which may lag
// behind): the compare-and-set needs its version. stat is nil when there is
// no entry.
func (s *Store) current(p string) (Entry, *zk.Stat, error) {
	data, stat, err := s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return Entry{}, nil, nil
	}
	if err != nil {
		return Entry{}, nil, zkError("reading "+p, err)
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		// Overwriting it is the way out, so a write proceeds as if the
		// stage were unknown; the history shows the old data's stage as "".
		s.log.WithError(err).WithField("znode", p).Warn("unreadable migration entry: overwriting")
		return Entry{}, stat, nil
	}
	return e, stat, nil
}

// ops is the transaction of one change: the entry (created, updated or
// deleted, guarded by its version), a history record and the version
// znode.
func (s *Store) ops(p string, stat *zk.Stat, ch Change) ([]any, error) {
	record, err := json.Marshal(ch)
	if err != nil {
		return nil, err
	}
	acl := s.acl
	var entry any
	switch {
	case ch.New == "":
		entry = &zk.DeleteRequest{Path: p, Version: stat.Version}
	default:
		data, err := json.Marshal(Entry{Scope: ch.Scope, Name: ch.Name, Stage: ch.New, Updated: ch.At, By: ch.By, DeclaredBy: ch.DeclaredBy})
		if err != nil {
			return nil, err
		}
		if stat == nil {
			entry = &zk.CreateRequest{Path: p, Data: data, Acl: acl}
		} else {
			entry = &zk.SetDataRequest{Path: p, Data: data, Version: stat.Version}
		}
	}
	return []any{
		entry,
		&zk.CreateRequest{Path: s.l.history() + "/" + historyPrefix, Data: record, Acl: acl, Flags: zk.FlagSequence},
		&zk.SetDataRequest{Path: s.l.version(), Data: record, Version: -1},
	}, nil
}

// lostRace tells whether a transaction failed on its first op, the entry,
// because another writer changed it since we read it.
func lostRace(res []zk.MultiResponse) bool {
	if len(res) == 0 {
		return false
	}
	err := res[0].Error
	return errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrNoNode)
}

// waitApplied waits, up to applyWait, until the copy has caught up with
// zxid, so that the writer reads its own write.
func (s *Store) waitApplied(ctx context.Context, zxid int64) {
	timeout := time.NewTimer(applyWait)
	defer timeout.Stop()
	for {
		s.mu.RLock()
		done, advanced := s.zxid >= zxid, s.advanced
		s.mu.RUnlock()
		if done {
			return
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-timeout.C:
			s.log.WithField("zxid", zxid).Warn("own write not seen by the watch yet; returning anyway")
			return
		}
	}
}
