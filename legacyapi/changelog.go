package legacyapi

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// ChangeKey names a job or task that changed.
type ChangeKey struct {
	Task bool // a task; else a job
	ID   string
}

// ChangeLog is a bounded log of which jobs and tasks changed, which a world
// turns into an Observer with ObserveLog. It holds keys, not states: a
// reader sends each key's state as it is when read, so changes coalesce and
// no reader ever sends a state older than one it sent before. A reader
// more than the log's size behind must start over with a snapshot. Safe
// for concurrent use; Add never blocks.
type ChangeLog struct {
	mu   sync.Mutex
	rev  uint64      // keys added so far
	ring []ChangeKey // ring[r % len] holds the key of revision r+1
	wake chan struct{}
}

// NewChangeLog holds the last size keys.
func NewChangeLog(size int) *ChangeLog {
	return &ChangeLog{ring: make([]ChangeKey, size), wake: make(chan struct{})}
}

// Add records that k changed and wakes the readers.
func (l *ChangeLog) Add(k ChangeKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.rev%uint64(len(l.ring))] = k
	l.rev++
	close(l.wake)
	l.wake = make(chan struct{})
}

// since returns the keys added after revision rev, each once, the
// revision they bring the reader to, and a channel closed at the next Add.
// ok is false when keys after rev were overwritten already.
func (l *ChangeLog) since(rev uint64) (keys []ChangeKey, now uint64, wake <-chan struct{}, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev-rev > uint64(len(l.ring)) {
		return nil, l.rev, l.wake, false
	}
	seen := make(map[ChangeKey]bool, l.rev-rev)
	for r := rev; r < l.rev; r++ {
		k := l.ring[r%uint64(len(l.ring))]
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys, l.rev, l.wake, true
}

// Rev is the revision a snapshot taken now starts from.
func (l *ChangeLog) Rev() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// ObserveLog implements Observer.Observe over a ChangeLog: snapshot gives
// every active job and task, view the current state of changed keys (a
// Gone for one that left). The revision is taken before the snapshot, so a
// change made while it is taken is sent again after it, never lost. It
// returns nil when ctx ends, an error when view or send fail or the reader
// fell behind the log.
func ObserveLog(ctx context.Context, l *ChangeLog, snapshot func() ([]Change, error),
	view func([]ChangeKey) ([]Change, error), send func(Change) error) error {
	rev := l.Rev()
	snap, err := snapshot()
	if err != nil {
		return err
	}
	for _, c := range append(snap, Change{SnapshotEnd: true}) {
		if err := send(c); err != nil {
			return err
		}
	}
	for {
		keys, now, wake, ok := l.since(rev)
		if !ok {
			return fmt.Errorf("change feed: the reader fell more than %d changes behind: %w", len(l.ring), ErrUnavailable)
		}
		if len(keys) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
				continue
			}
		}
		rev = now
		changes, err := view(keys)
		if err != nil {
			return err
		}
		// Keys coalesce, so a batch may hold a job's creation and its
		// tasks, or its tasks' ends and its own: jobs that go on come
		// before tasks (a task is matched against its job), jobs that end
		// after them (a job ends when its tasks have).
		slices.SortStableFunc(changes, func(a, b Change) int { return cmp.Compare(a.rank(), b.rank()) })
		for _, c := range changes {
			if err := send(c); err != nil {
				return err
			}
		}
	}
}

// rank orders the changes of one batch (ObserveLog).
func (c Change) rank() int {
	switch {
	case c.Job != nil && c.Job.Status.State != JobFinished:
		return 0
	case c.Task != nil, c.Gone != nil && c.Gone.Kind == "task":
		return 1
	}
	return 2
}
