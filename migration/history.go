package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-zookeeper/zk"
)

// DefaultHistoryLimit is History's limit when none is given.
const DefaultHistoryLimit = 100

// History returns the recorded changes, newest first: those of one scope
// and/or name when they are not empty, at most limit (0: DefaultHistoryLimit).
//
// The records are read from ZooKeeper, newest first, in batches, until
// limit of them match: a narrow filter over a long history reads more.
func (s *Store) History(ctx context.Context, scope Scope, name string, limit int) ([]Change, error) {
	fail := func(err error) ([]Change, error) { return nil, fmt.Errorf("migration: history: %w", err) }
	if scope != "" {
		if err := validScope(scope); err != nil {
			return fail(err)
		}
	}
	if name != "" {
		if err := validName("name", name); err != nil {
			return fail(err)
		}
	}
	switch {
	case limit < 0:
		return fail(fmt.Errorf("%w: limit %d is negative", ErrInvalid, limit))
	case limit == 0:
		limit = DefaultHistoryLimit
	}
	names, _, err := s.conn.Children(s.l.history())
	if err != nil {
		return fail(zkError("listing "+s.l.history(), err))
	}
	// Sequence numbers are zero-padded: newest first is a reverse sort.
	names = filterPrefix(names, historyPrefix)
	sort.Sort(sort.Reverse(sort.StringSlice(names)))

	out := []Change{}
	batch := 4 * fetchWorkers
	for start := 0; start < len(names) && len(out) < limit; start += batch {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		chunk := names[start:min(start+batch, len(names))]
		recs := make([]*Change, len(chunk))
		err := parallel(len(chunk), func(i int) (err error) {
			recs[i], err = s.record(chunk[i])
			return err
		})
		if err != nil {
			return fail(err)
		}
		for _, c := range recs {
			if c != nil && (scope == "" || c.Scope == scope) && (name == "" || c.Name == name) {
				out = append(out, *c)
				if len(out) == limit {
					break
				}
			}
		}
	}
	return out, nil
}

// record reads one history record; nil when it vanished (pruned by hand)
// or cannot be understood, which is logged: an audit trail with a hole
// still has to show the rest.
func (s *Store) record(name string) (*Change, error) {
	p := s.l.history() + "/" + name
	data, _, err := s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, zkError("reading "+p, err)
	}
	var c Change
	if err := json.Unmarshal(data, &c); err != nil {
		s.log.WithError(err).WithField("znode", p).Error("unreadable migration history record: skipped")
		return nil, nil
	}
	return &c, nil
}

func filterPrefix(names []string, prefix string) []string {
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
