package kube

import (
	"context"
	"errors"

	"github.com/vk-titus/vk-titus/legacyapi"
)

var _ legacyapi.Observer = (*Backend)(nil)

// Observe implements legacyapi.Observer over the informer caches: the
// snapshot is every job that has not finished and every live task, and
// each change the informers bring is sent as the caches show it then.
func (b *Backend) Observe(ctx context.Context, send func(legacyapi.Change) error) error {
	return legacyapi.ObserveLog(ctx, b.changes, b.snapshot, func(keys []legacyapi.ChangeKey) ([]legacyapi.Change, error) {
		return b.views(ctx, keys), nil
	}, send)
}

func (b *Backend) snapshot() ([]legacyapi.Change, error) {
	var out []legacyapi.Change
	for _, o := range b.allJobs() {
		j, err := b.jobOf(o)
		if err != nil {
			b.log.WithError(err).WithField("job", o.id).Warn("job left out of the change feed")
			continue
		}
		if j.Status.State != legacyapi.JobFinished {
			out = append(out, legacyapi.Change{Job: &j})
		}
	}
	entries := b.collect(nil, "")
	linkRetries(entries)
	for _, e := range entries {
		if e.task.Status.State != legacyapi.TaskFinished {
			t := e.task
			out = append(out, legacyapi.Change{Task: &t})
		}
	}
	return out, nil
}

// views are the changed jobs and tasks as the caches show them now; one
// the caches no longer know is Gone, one whose record does not read is
// left out (and logged).
func (b *Backend) views(ctx context.Context, keys []legacyapi.ChangeKey) []legacyapi.Change {
	out := make([]legacyapi.Change, 0, len(keys))
	for _, k := range keys {
		if k.ID == "" {
			continue
		}
		if k.Task {
			t, err := b.GetTask(ctx, k.ID)
			switch {
			case errors.Is(err, legacyapi.ErrNotFound):
				out = append(out, legacyapi.Change{Gone: &legacyapi.Gone{Kind: "task", ID: k.ID}})
			case err == nil:
				out = append(out, legacyapi.Change{Task: &t})
			}
			continue
		}
		j, err := b.GetJob(ctx, k.ID)
		switch {
		case errors.Is(err, legacyapi.ErrNotFound):
			out = append(out, legacyapi.Change{Gone: &legacyapi.Gone{Kind: "job", ID: k.ID}})
		case err != nil:
			b.log.WithError(err).WithField("job", k.ID).Warn("job change left out of the change feed")
		default:
			out = append(out, legacyapi.Change{Job: &j})
		}
	}
	return out
}
