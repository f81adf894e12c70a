package master

import (
	"context"
	"fmt"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// The change feed: legacyapi.Observer over the job table, which
// legacyapi.NewHandler serves at legacyapi.FeedPath, so that the gateway's
// event streams follow this world without polling it. Every change to a
// job's or task's view names it in the table's ChangeLog (under Master.mu,
// as the change itself); a reader sends the views of what changed as they
// are when it reads. A feed belongs to one leadership: it ends when this
// master stops leading, and the reader reconnects to the new leader for a
// fresh snapshot.

var _ legacyapi.Observer = jobAPI{}

// Observe implements legacyapi.Observer.
func (a jobAPI) Observe(ctx context.Context, send func(legacyapi.Change) error) error {
	m := a.m
	m.mu.Lock()
	tbl, err := m.jobsLocked()
	term := m.termCtx
	m.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(term, cancel)
	defer stop()
	err = legacyapi.ObserveLog(ctx, tbl.changes, func() ([]legacyapi.Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.jobs != tbl {
			return nil, errLeadershipLost
		}
		var out []legacyapi.Change
		for _, j := range tbl.order {
			if j.state() == legacyapi.JobFinished {
				continue
			}
			v := j.view()
			out = append(out, legacyapi.Change{Job: &v})
			for _, jt := range j.tasks {
				if !jt.ended() {
					t := jt.view()
					out = append(out, legacyapi.Change{Task: &t})
				}
			}
		}
		return out, nil
	}, func(keys []legacyapi.ChangeKey) ([]legacyapi.Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.jobs != tbl {
			return nil, errLeadershipLost
		}
		out := make([]legacyapi.Change, 0, len(keys))
		for _, k := range keys {
			out = append(out, tbl.changeOf(k))
		}
		return out, nil
	}, send)
	if err == nil && term.Err() != nil {
		return errLeadershipLost
	}
	return err
}

var errLeadershipLost = fmt.Errorf("this master no longer leads: %w", legacyapi.ErrUnavailable)

// changeOf is k's view now, or Gone once pruned.
func (tbl *jobTable) changeOf(k legacyapi.ChangeKey) legacyapi.Change {
	if k.Task {
		jt := tbl.tasks[TaskID(k.ID)]
		if jt == nil || jt.pruned {
			return legacyapi.Change{Gone: &legacyapi.Gone{Kind: "task", ID: k.ID}}
		}
		t := jt.view()
		return legacyapi.Change{Task: &t}
	}
	j := tbl.jobs[k.ID]
	if j == nil || j.pruned {
		return legacyapi.Change{Gone: &legacyapi.Gone{Kind: "job", ID: k.ID}}
	}
	v := j.view()
	return legacyapi.Change{Job: &v}
}
