package observe

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/legacyapi/legacyapitest"
)

// wait is generous: the machine running the tests is small and busy.
const wait = 10 * time.Second

// scripted is a world's feed whose connections the test writes: each
// Observe call sends the next script, then holds the connection until the
// test cuts it.
type scripted struct {
	conns chan []legacyapi.Change
	cut   chan struct{}
}

func newScripted() *scripted {
	return &scripted{conns: make(chan []legacyapi.Change, 4), cut: make(chan struct{}, 4)}
}

func (s *scripted) Observe(ctx context.Context, send func(legacyapi.Change) error) error {
	select {
	case <-ctx.Done():
		return nil
	case script := <-s.conns:
		for _, c := range script {
			if err := send(c); err != nil {
				return err
			}
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case <-s.cut:
		return errors.New("cut by the test")
	}
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func job(id, state string, attrs map[string]string) legacyapi.Change {
	return legacyapi.Change{Job: &legacyapi.Job{ID: id, JobDescriptor: legacyapi.JobDescriptor{ApplicationName: "app", Attributes: attrs},
		Status: legacyapi.JobStatus{State: state, Timestamp: 1}, StatusHistory: []legacyapi.JobStatus{{State: state, Timestamp: 1}}}}
}

func task(id, jobID, state string) legacyapi.Change {
	return legacyapi.Change{Task: &legacyapi.Task{ID: id, JobID: jobID, TaskContext: map[string]string{},
		Status: legacyapi.TaskStatus{State: state, Timestamp: 2}, StatusHistory: []legacyapi.TaskStatus{{State: state, Timestamp: 2}}}}
}

var end = legacyapi.Change{SnapshotEnd: true}

func startHub(t *testing.T, cfg Config, feeds ...*scripted) *Hub {
	t.Helper()
	var sources []Source
	for _, f := range feeds {
		sources = append(sources, Source{Name: "w", Feed: f, Backend: legacyapitest.NewMem("gone-")})
	}
	cfg.Retry, cfg.MaxRetry = time.Millisecond, time.Millisecond
	h, err := New(cfg, sources, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go h.Run(ctx)
	return h
}

// describe names a notification for comparisons: "job A Accepted",
// "task T Started archived", "keepAlive 7".
func describe(n *titus.JobChangeNotification) string {
	archived := map[bool]string{true: " archived"}
	switch {
	case n.GetJobUpdate() != nil:
		u := n.GetJobUpdate()
		return "job " + u.GetJob().GetId() + " " + u.GetJob().GetStatus().GetState().String() + archived[u.GetArchived()]
	case n.GetTaskUpdate() != nil:
		u := n.GetTaskUpdate()
		return "task " + u.GetTask().GetId() + " " + u.GetTask().GetStatus().GetState().String() + archived[u.GetArchived()]
	case n.GetKeepAliveResponse() != nil:
		return "keepAlive"
	}
	return "?"
}

func next(t *testing.T, s *Subscription) string {
	t.Helper()
	select {
	case n := <-s.Notifications():
		return describe(n)
	case <-s.Done():
		t.Fatalf("subscription dropped: %v", s.Err())
	case <-time.After(wait):
		t.Fatal("no notification")
	}
	return ""
}

func TestSnapshotThenChangesAndResets(t *testing.T) {
	feed := newScripted()
	h := startHub(t, Config{}, feed)
	feed.conns <- []legacyapi.Change{job("A", "Accepted", nil), task("A1", "A", "Started"), job("B", "Accepted", nil),
		job("F", "Finished", nil), task("F1", "F", "Finished"), end}
	s, snap, err := h.Subscribe(context.Background(), legacyapi.Criteria{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range snap {
		got = append(got, describe(n))
	}
	if want := []string{"job A Accepted", "job B Accepted", "task A1 Started"}; !equal(got, want) {
		t.Fatalf("snapshot %v, want %v", got, want)
	}

	// A reconnect's snapshot: only real changes are sent; what it lacks has
	// left, tasks before their jobs.
	feed.conns <- []legacyapi.Change{job("A", "Accepted", map[string]string{"k": "v"}), task("A1", "A", "Started"), task("C1", "C", "Launched"), end}
	feed.cut <- struct{}{}
	for _, want := range []string{"job A Accepted", "task C1 Launched", "job B Accepted archived"} {
		if got := next(t, s); got != want {
			t.Fatalf("after the reconnect: %q, want %q", got, want)
		}
	}
	jobs, tasks, streams := h.Stats()
	if jobs != 1 || tasks != 2 || streams != 1 {
		t.Fatalf("active set %d jobs, %d tasks, %d streams", jobs, tasks, streams)
	}
	s.Close()
	if _, _, streams := h.Stats(); streams != 0 {
		t.Fatal("closed subscription still counted")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFinishedLeavesOnceAndFiltersApply(t *testing.T) {
	feed := newScripted()
	h := startHub(t, Config{}, feed)
	feed.conns <- []legacyapi.Change{job("A", "Accepted", map[string]string{"source": "spinnaker"}), job("B", "Accepted", nil), end}
	ctx := context.Background()
	c, _ := legacyapi.ParseCriteria(map[string]string{"attributes": "source:spinnaker"})
	s, snap, err := h.Subscribe(ctx, c)
	if err != nil || len(snap) != 1 {
		t.Fatalf("filtered snapshot %d, %v", len(snap), err)
	}
	for _, c := range []legacyapi.Change{task("B1", "B", "Started"), task("A1", "A", "Started"), task("A1", "A", "Started"),
		task("A1", "A", "Finished"), task("A1", "A", "Finished"), job("A", "Finished", map[string]string{"source": "spinnaker"}), job("A", "Finished", nil)} {
		h.apply(0, c)
	}
	keep := &titus.KeepAliveRequest{RequestId: 7}
	s.KeepAlive(keep)
	for _, want := range []string{"task A1 Started", "task A1 Finished archived", "job A Finished archived", "keepAlive"} {
		if got := next(t, s); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	feed := newScripted()
	h := startHub(t, Config{StreamBuffer: 2}, feed)
	feed.conns <- []legacyapi.Change{end}
	s, _, err := h.Subscribe(context.Background(), legacyapi.Criteria{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"A", "B", "C"} {
		h.apply(0, job(id, "Accepted", nil))
	}
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("a subscriber 3 behind a buffer of 2 was kept")
	}
	if !errors.Is(s.Err(), ErrTooSlow) {
		t.Fatalf("dropped with %v", s.Err())
	}
	if _, _, streams := h.Stats(); streams != 0 {
		t.Fatal("dropped subscription still counted")
	}
}

func TestSubscribeWaitsForEveryWorld(t *testing.T) {
	a, b := newScripted(), newScripted()
	h := startHub(t, Config{SyncWait: 50 * time.Millisecond}, a, b)
	a.conns <- []legacyapi.Change{end}
	if _, _, err := h.Subscribe(context.Background(), legacyapi.Criteria{}); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("one world of two: %v", err)
	}
	b.conns <- []legacyapi.Change{job("K", "Accepted", nil), end}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, snap, err := h.Subscribe(ctx, legacyapi.Criteria{})
		if err == nil {
			if len(snap) != 1 {
				t.Fatalf("snapshot %d", len(snap))
			}
			return
		}
		if !errors.Is(err, ErrNotSynced) {
			t.Fatal(err)
		}
	}
}

func TestTooManyStreams(t *testing.T) {
	feed := newScripted()
	h := startHub(t, Config{MaxStreams: 1}, feed)
	feed.conns <- []legacyapi.Change{end}
	if _, _, err := h.Subscribe(context.Background(), legacyapi.Criteria{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Subscribe(context.Background(), legacyapi.Criteria{}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("second stream of 1: %v", err)
	}
}

func TestJobEndWaitsForItsTasks(t *testing.T) {
	feed := newScripted()
	h := startHub(t, Config{}, feed)
	feed.conns <- []legacyapi.Change{job("A", "Accepted", nil), task("A1", "A", "Started"), task("A2", "A", "Started"), end}
	s, _, err := h.Subscribe(context.Background(), legacyapi.Criteria{ApplicationName: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []legacyapi.Change{job("A", "Finished", nil), task("A1", "A", "Finished"), job("A", "Finished", nil), task("A2", "A", "Finished")} {
		h.apply(0, c)
	}
	for _, want := range []string{"task A1 Finished archived", "task A2 Finished archived", "job A Finished archived"} {
		if got := next(t, s); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	if jobs, tasks, _ := h.Stats(); jobs != 0 || tasks != 0 {
		t.Fatalf("active set after the end: %d jobs, %d tasks", jobs, tasks)
	}
}
