package observe

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// Errors a subscription ends with, or Subscribe returns.
var (
	ErrTooSlow   = errors.New("the stream fell too far behind")
	ErrTooMany   = errors.New("too many streams open")
	ErrNotSynced = errors.New("a world has not sent its jobs yet")
)

// Config bounds the hub. Zero fields take the defaults below.
type Config struct {
	// StreamBuffer is how many notifications a subscription may hold
	// unsent before it is dropped (ErrTooSlow).
	StreamBuffer int
	// MaxStreams bounds the subscriptions open at once (ErrTooMany).
	MaxStreams int
	// SyncWait is how long Subscribe waits for every world's first
	// snapshot (ErrNotSynced).
	SyncWait time.Duration
	// Retry is the first pause before a lost feed is followed again; it
	// doubles up to MaxRetry while the feed keeps failing.
	Retry, MaxRetry time.Duration
}

// Defaults of Config.
const (
	DefaultStreamBuffer = 1024
	DefaultMaxStreams   = 10000
	DefaultSyncWait     = 30 * time.Second
	DefaultRetry        = 250 * time.Millisecond
	DefaultMaxRetry     = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	for _, f := range []struct {
		v   *int
		def int
	}{{&c.StreamBuffer, DefaultStreamBuffer}, {&c.MaxStreams, DefaultMaxStreams}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.SyncWait, DefaultSyncWait}, {&c.Retry, DefaultRetry}, {&c.MaxRetry, DefaultMaxRetry}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.StreamBuffer < 1 || c.MaxStreams < 1 || c.SyncWait < 0 || c.Retry < 0 || c.MaxRetry < c.Retry {
		return c, fmt.Errorf("observe config %+v: buffers and limits must be positive, MaxRetry ≥ Retry", c)
	}
	return c, nil
}

// Source is one world.
type Source struct {
	Name string // for logs: "legacy", "kube"
	Feed legacyapi.Observer
	// Backend tells how a job or task that left while the feed was away
	// ended, for its last notification.
	Backend legacyapi.Backend
}

// Hub keeps the active set of every world and fans its changes out.
type Hub struct {
	cfg     Config
	log     logrus.FieldLogger
	sources []Source

	mu    sync.Mutex
	jobs  map[string]*entry[legacyapi.Job]
	tasks map[string]*entry[legacyapi.Task]
	byJob map[string]map[string]struct{} // job id → ids of its active tasks
	// ending are jobs that ended while tasks of theirs were still active
	// here: each leaves, as it ended, with its last task.
	ending  map[string]legacyapi.Job
	subs    map[*Subscription]struct{}
	pending []bool // per source: its first snapshot has not come
	left    int    // sources still pending
	synced  chan struct{}
}

// entry is one active job or task: as its world last showed it, and the
// notification that said so (shared by every stream; never changed).
type entry[T any] struct {
	src  int
	v    T
	note *titus.JobChangeNotification
}

// New makes a hub over sources; Run follows them.
func New(cfg Config, sources []Source, log logrus.FieldLogger) (*Hub, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(sources) == 0 {
		return nil, errors.New("observe: no world to follow")
	}
	pending := make([]bool, len(sources))
	for i := range pending {
		pending[i] = true
	}
	return &Hub{
		cfg: cfg, log: log, sources: sources,
		jobs: map[string]*entry[legacyapi.Job]{}, tasks: map[string]*entry[legacyapi.Task]{},
		byJob: map[string]map[string]struct{}{}, ending: map[string]legacyapi.Job{}, subs: map[*Subscription]struct{}{},
		pending: pending, left: len(sources), synced: make(chan struct{}),
	}, nil
}

// Run follows every world's feed until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range h.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.follow(ctx, i)
		}()
	}
	wg.Wait()
}

// follow reads one world's feed, again after every loss: each connection
// begins with a snapshot, which reset compares with the active set.
func (h *Hub) follow(ctx context.Context, i int) {
	src := h.sources[i]
	log := h.log.WithField("world", src.Name)
	wait := h.cfg.Retry
	for {
		var snap []legacyapi.Change
		live := false
		err := src.Feed.Observe(ctx, func(c legacyapi.Change) error {
			switch {
			case live:
				h.apply(i, c)
			case c.SnapshotEnd:
				h.reset(ctx, i, snap)
				snap, live, wait = nil, true, h.cfg.Retry
				log.Info("following the world's changes")
			default:
				snap = append(snap, c)
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		log.WithError(err).WithField("retry", wait).Warn("change feed lost; following it again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, h.cfg.MaxRetry)
	}
}

func (h *Hub) apply(i int, c legacyapi.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applyLocked(i, c, time.Now())
}

func (h *Hub) applyLocked(i int, c legacyapi.Change, now time.Time) {
	switch {
	case c.Job != nil:
		h.jobLocked(i, *c.Job, now)
	case c.Task != nil:
		h.taskLocked(i, *c.Task, now)
	case c.Gone != nil && c.Gone.Kind == "task":
		h.leaveTaskLocked(c.Gone.ID, nil, now)
	case c.Gone != nil:
		h.leaveJobLocked(c.Gone.ID, nil, now)
	}
}

// reset takes a world's snapshot: what changed is sent, and what the hub
// holds of that world but the snapshot lacks has left; its end is read
// from the world (outside the lock) for its last notification.
func (h *Hub) reset(ctx context.Context, i int, snap []legacyapi.Change) {
	now := time.Now()
	h.mu.Lock()
	inSnap := make(map[string]bool, len(snap))
	for _, c := range snap {
		switch {
		case c.Job != nil:
			inSnap[c.Job.ID] = true
		case c.Task != nil:
			inSnap[c.Task.ID] = true
		}
		h.applyLocked(i, c, now)
	}
	var goneJobs, goneTasks []string
	for id, e := range h.jobs {
		if e.src == i && !inSnap[id] {
			goneJobs = append(goneJobs, id)
		}
	}
	for id, e := range h.tasks {
		if e.src == i && !inSnap[id] {
			goneTasks = append(goneTasks, id)
		}
	}
	if h.pending[i] {
		h.pending[i] = false
		if h.left--; h.left == 0 {
			close(h.synced)
		}
	}
	h.mu.Unlock()

	b := h.sources[i].Backend
	for _, id := range goneTasks { // tasks before their jobs, as they end
		var last *legacyapi.Task
		if t, err := b.GetTask(ctx, id); err == nil {
			last = &t
		}
		h.mu.Lock()
		h.leaveTaskLocked(id, last, time.Now())
		h.mu.Unlock()
	}
	for _, id := range goneJobs {
		var last *legacyapi.Job
		if j, err := b.GetJob(ctx, id); err == nil {
			last = &j
		}
		h.mu.Lock()
		h.leaveJobLocked(id, last, time.Now())
		h.mu.Unlock()
	}
}

func (h *Hub) jobLocked(i int, j legacyapi.Job, now time.Time) {
	e, known := h.jobs[j.ID]
	switch {
	case j.Status.State == legacyapi.JobFinished:
		h.leaveJobLocked(j.ID, &j, now)
		return
	case known && reflect.DeepEqual(e.v, j), h.ending[j.ID].ID != "":
		return // nothing new, or ended already
	}
	note, err := jobNote(j, false, now)
	if err != nil {
		h.log.WithError(err).WithField("job", j.ID).Warn("job change not sent: it does not convert")
		return
	}
	h.jobs[j.ID] = &entry[legacyapi.Job]{src: i, v: j, note: note}
	h.publishLocked(note, func(s *Subscription) bool { return h.matchJobLocked(s.criteria, j) })
}

// leaveJobLocked sends an active job's last notification, archived, and
// drops it: last is how it ended, nil for as the hub knew it. A job whose
// tasks are still active here waits for them (ending): a world read as it
// is may show a job's end before its tasks', and streams must not.
func (h *Hub) leaveJobLocked(id string, last *legacyapi.Job, now time.Time) {
	e, known := h.jobs[id]
	if !known {
		return // finished before the hub knew it, or sent already
	}
	j := e.v
	if last != nil {
		j = *last
	}
	if len(h.byJob[id]) > 0 {
		h.ending[id] = j
		return
	}
	delete(h.jobs, id)
	delete(h.ending, id)
	note, err := jobNote(j, true, now)
	if err != nil {
		h.log.WithError(err).WithField("job", id).Warn("job end not sent: it does not convert")
		return
	}
	h.publishLocked(note, func(s *Subscription) bool { return h.matchJobLocked(s.criteria, j) })
}

func (h *Hub) taskLocked(i int, t legacyapi.Task, now time.Time) {
	e, known := h.tasks[t.ID]
	switch {
	case t.Status.State == legacyapi.TaskFinished:
		h.leaveTaskLocked(t.ID, &t, now)
		return
	case known && reflect.DeepEqual(e.v, t):
		return
	}
	note := taskNote(t, false, now)
	h.tasks[t.ID] = &entry[legacyapi.Task]{src: i, v: t, note: note}
	if h.byJob[t.JobID] == nil {
		h.byJob[t.JobID] = map[string]struct{}{}
	}
	h.byJob[t.JobID][t.ID] = struct{}{}
	h.publishLocked(note, func(s *Subscription) bool { return h.matchTaskLocked(s.criteria, t) })
}

func (h *Hub) leaveTaskLocked(id string, last *legacyapi.Task, now time.Time) {
	e, known := h.tasks[id]
	if !known {
		return
	}
	t := e.v
	if last != nil {
		t = *last
	}
	delete(h.tasks, id)
	if ids := h.byJob[e.v.JobID]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(h.byJob, e.v.JobID)
		}
	}
	note := taskNote(t, true, now)
	h.publishLocked(note, func(s *Subscription) bool { return h.matchTaskLocked(s.criteria, t) })
	if j, ok := h.ending[t.JobID]; ok && len(h.byJob[t.JobID]) == 0 {
		h.leaveJobLocked(t.JobID, &j, now)
	}
}

func (h *Hub) matchJobLocked(c legacyapi.Criteria, j legacyapi.Job) bool {
	return legacyapi.MatchJob(c, j, func() []legacyapi.Task {
		out := make([]legacyapi.Task, 0, len(h.byJob[j.ID]))
		for id := range h.byJob[j.ID] {
			out = append(out, h.tasks[id].v)
		}
		return out
	})
}

func (h *Hub) matchTaskLocked(c legacyapi.Criteria, t legacyapi.Task) bool {
	var j legacyapi.Job
	if e, ok := h.jobs[t.JobID]; ok {
		j = e.v
	}
	return legacyapi.MatchTask(c, t, j)
}

func (h *Hub) publishLocked(note *titus.JobChangeNotification, match func(*Subscription) bool) {
	for s := range h.subs {
		if match(s) {
			h.enqueueLocked(s, note)
		}
	}
}

// enqueueLocked hands note to s, or drops s if its buffer is full: the
// hub never waits for a stream.
func (h *Hub) enqueueLocked(s *Subscription, note *titus.JobChangeNotification) {
	select {
	case s.ch <- note:
	default:
		h.dropLocked(s, fmt.Errorf("%w: more than %d notifications not taken", ErrTooSlow, cap(s.ch)))
	}
}

func (h *Hub) dropLocked(s *Subscription, err error) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	s.err = err
	close(s.done)
}

func jobNote(j legacyapi.Job, archived bool, at time.Time) (*titus.JobChangeNotification, error) {
	p, err := legacyapi.JobToProto(j)
	if err != nil {
		return nil, err
	}
	return &titus.JobChangeNotification{
		Notification: &titus.JobChangeNotification_JobUpdate_{JobUpdate: &titus.JobChangeNotification_JobUpdate{Job: p, Archived: archived}},
		Timestamp:    uint64(at.UnixMilli()),
	}, nil
}

func taskNote(t legacyapi.Task, archived bool, at time.Time) *titus.JobChangeNotification {
	return &titus.JobChangeNotification{
		Notification: &titus.JobChangeNotification_TaskUpdate_{TaskUpdate: &titus.JobChangeNotification_TaskUpdate{Task: legacyapi.TaskToProto(t), Archived: archived}},
		Timestamp:    uint64(at.UnixMilli()),
	}
}

// Subscribe opens a subscription to the jobs and tasks matching c, and
// returns the snapshot it starts from: the matching active jobs, then
// their tasks, each in creation order. Every change after the snapshot
// comes through the subscription. It waits for every world's first
// snapshot (ErrNotSynced after Config.SyncWait).
func (h *Hub) Subscribe(ctx context.Context, c legacyapi.Criteria) (*Subscription, []*titus.JobChangeNotification, error) {
	wait := time.NewTimer(h.cfg.SyncWait)
	defer wait.Stop()
	select {
	case <-h.synced:
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	case <-wait.C:
		return nil, nil, fmt.Errorf("%w after %v", ErrNotSynced, h.cfg.SyncWait)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= h.cfg.MaxStreams {
		return nil, nil, fmt.Errorf("%w: %d", ErrTooMany, h.cfg.MaxStreams)
	}
	var jobs []*entry[legacyapi.Job]
	for _, e := range h.jobs {
		if h.matchJobLocked(c, e.v) {
			jobs = append(jobs, e)
		}
	}
	var tasks []*entry[legacyapi.Task]
	for _, e := range h.tasks {
		if h.matchTaskLocked(c, e.v) {
			tasks = append(tasks, e)
		}
	}
	slices.SortFunc(jobs, func(a, b *entry[legacyapi.Job]) int { return compareKeys(legacyapi.JobKey(a.v), legacyapi.JobKey(b.v)) })
	slices.SortFunc(tasks, func(a, b *entry[legacyapi.Task]) int {
		return compareKeys(legacyapi.TaskKey(a.v), legacyapi.TaskKey(b.v))
	})
	snap := make([]*titus.JobChangeNotification, 0, len(jobs)+len(tasks))
	for _, e := range jobs {
		snap = append(snap, e.note)
	}
	for _, e := range tasks {
		snap = append(snap, e.note)
	}
	s := &Subscription{h: h, criteria: c, ch: make(chan *titus.JobChangeNotification, h.cfg.StreamBuffer), done: make(chan struct{})}
	h.subs[s] = struct{}{}
	return s, snap, nil
}

func compareKeys(a, b legacyapi.Key) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// Stats are the active set's size and the open subscriptions.
func (h *Hub) Stats() (jobs, tasks, streams int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.jobs), len(h.tasks), len(h.subs)
}

// Subscription is one stream's share of the hub.
type Subscription struct {
	h        *Hub
	criteria legacyapi.Criteria
	ch       chan *titus.JobChangeNotification
	done     chan struct{}
	err      error // why the hub dropped it; set before done closes
}

// Notifications are the changes after the snapshot, in order.
func (s *Subscription) Notifications() <-chan *titus.JobChangeNotification { return s.ch }

// Done is closed when the hub drops the subscription; Err tells why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the hub dropped the subscription (ErrTooSlow), once Done is
// closed.
func (s *Subscription) Err() error {
	<-s.done
	return s.err
}

// KeepAlive queues the answer to req behind every notification queued
// before it, so that it tells the client it has seen them all.
func (s *Subscription) KeepAlive(req *titus.KeepAliveRequest) {
	note := &titus.JobChangeNotification{
		Notification: &titus.JobChangeNotification_KeepAliveResponse{KeepAliveResponse: &titus.KeepAliveResponse{
			Request: req, Timestamp: uint64(time.Now().UnixMilli()),
		}},
		Timestamp: uint64(time.Now().UnixMilli()),
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if _, open := s.h.subs[s]; open {
		s.h.enqueueLocked(s, note)
	}
}

// Close ends the subscription; the hub sends it nothing more.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.dropLocked(s, nil)
}
