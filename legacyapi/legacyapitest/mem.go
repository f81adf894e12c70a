// Package legacyapitest is an in-memory world for tests and benchmarks of
// what sits on a legacyapi.Backend: the REST handler, the gateway's
// router, its gRPC server and its event hub. Mem keeps the Backend
// contract (errors, paging, criteria, updates through JobUpdate.Apply,
// kills through Shrink) without any platform behind it: a job's tasks
// start at once, and tests move them on with SetTaskState.
package legacyapitest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// Mem is one world in memory. It is a legacyapi.Backend and Observer,
// safe for concurrent use; its clock is a counter, so keys never tie.
type Mem struct {
	prefix string

	mu      sync.Mutex
	clock   uint64
	jobs    map[string]*memJob
	order   []*memJob
	tasks   map[string]*legacyapi.Task
	down    bool
	changes *legacyapi.ChangeLog
}

type memJob struct {
	job   legacyapi.Job
	tasks []string
}

// NewMem is a world whose ids start with prefix (legacyapi.LegacyPrefix or
// KubePrefix).
func NewMem(prefix string) *Mem {
	return &Mem{prefix: prefix, jobs: map[string]*memJob{}, tasks: map[string]*legacyapi.Task{},
		changes: legacyapi.NewChangeLog(1 << 12)}
}

var (
	_ legacyapi.Backend  = (*Mem)(nil)
	_ legacyapi.Observer = (*Mem)(nil)
)

// SetDown makes every call fail with ErrUnavailable, or not.
func (m *Mem) SetDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func (m *Mem) tickLocked() legacyapi.U64 {
	m.clock++
	return legacyapi.U64(m.clock)
}

func (m *Mem) upLocked() error {
	if m.down {
		return fmt.Errorf("world %s: %w", m.prefix, legacyapi.ErrUnavailable)
	}
	return nil
}

// CreateJob implements legacyapi.Backend: the job's tasks (batch size,
// service desired) are Started at once.
func (m *Mem) CreateJob(_ context.Context, d legacyapi.JobDescriptor) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return "", err
	}
	id := fmt.Sprintf("%sjob-%06d", m.prefix, len(m.order))
	st := legacyapi.JobStatus{State: legacyapi.JobAccepted, ReasonCode: "normal", Timestamp: m.tickLocked()}
	j := &memJob{job: legacyapi.Job{ID: id, JobDescriptor: d, Status: st, StatusHistory: []legacyapi.JobStatus{st}}}
	m.jobs[id] = j
	m.order = append(m.order, j)
	m.changes.Add(legacyapi.ChangeKey{ID: id})
	m.scaleLocked(j)
	return id, nil
}

// wantTasksLocked is how many live tasks j should have.
func wantTasksLocked(j *memJob) int {
	d := j.job.JobDescriptor
	switch {
	case j.job.Status.State != legacyapi.JobAccepted:
		return 0
	case d.Batch != nil:
		return int(d.Batch.Size)
	case d.Service != nil && d.Service.Capacity != nil:
		return int(d.Service.Capacity.Desired)
	}
	return 0
}

// scaleLocked starts or scales down tasks to what j wants.
func (m *Mem) scaleLocked(j *memJob) {
	var live []string
	for _, id := range j.tasks {
		if m.tasks[id].Status.State != legacyapi.TaskFinished {
			live = append(live, id)
		}
	}
	want := wantTasksLocked(j)
	for n := len(live); n < want; n++ {
		id := fmt.Sprintf("%stask-%s-%d", m.prefix, j.job.ID[len(m.prefix):], len(j.tasks))
		st := legacyapi.TaskStatus{State: legacyapi.TaskStarted, ReasonCode: "normal", Timestamp: m.tickLocked()}
		m.tasks[id] = &legacyapi.Task{ID: id, JobID: j.job.ID, TaskContext: map[string]string{legacyapi.ContextBackend: "mem"},
			Status: st, StatusHistory: []legacyapi.TaskStatus{st}}
		j.tasks = append(j.tasks, id)
		m.changes.Add(legacyapi.ChangeKey{Task: true, ID: id})
	}
	for i := len(live) - 1; i >= want; i-- {
		m.setTaskLocked(live[i], legacyapi.TaskFinished, "scaledDown")
	}
}

func (m *Mem) setTaskLocked(id, state, reason string) {
	t := m.tasks[id]
	st := legacyapi.TaskStatus{State: state, ReasonCode: reason, Timestamp: m.tickLocked()}
	t.Status = st
	t.StatusHistory = append(slices.Clone(t.StatusHistory), st)
	m.changes.Add(legacyapi.ChangeKey{Task: true, ID: id})
}

func (m *Mem) setJobLocked(j *memJob, state, reason string) {
	st := legacyapi.JobStatus{State: state, ReasonCode: reason, Timestamp: m.tickLocked()}
	j.job.Status = st
	j.job.StatusHistory = append(slices.Clone(j.job.StatusHistory), st)
	m.changes.Add(legacyapi.ChangeKey{ID: j.job.ID})
}

// SetTaskState moves a task on, as its platform would; a batch job whose
// tasks have all finished finishes.
func (m *Mem) SetTaskState(id, state, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return legacyapi.NotFound("task", id)
	}
	m.setTaskLocked(id, state, reason)
	if j := m.jobs[t.JobID]; j.job.JobDescriptor.Batch != nil && m.allEndedLocked(j) {
		m.setJobLocked(j, legacyapi.JobFinished, "normal")
	}
	return nil
}

func (m *Mem) allEndedLocked(j *memJob) bool {
	for _, id := range j.tasks {
		if m.tasks[id].Status.State != legacyapi.TaskFinished {
			return false
		}
	}
	return true
}

// FindJobs implements legacyapi.Backend.
func (m *Mem) FindJobs(_ context.Context, q legacyapi.JobQuery) (legacyapi.JobQueryResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return legacyapi.JobQueryResult{}, err
	}
	var match []legacyapi.Job
	for _, j := range m.order {
		if legacyapi.MatchJob(q.Criteria, j.job, func() []legacyapi.Task { return m.tasksOfLocked(j) }) {
			match = append(match, j.job)
		}
	}
	items, pg, err := legacyapi.Paginate(match, legacyapi.JobKey, q.Page)
	return legacyapi.JobQueryResult{Items: items, Pagination: pg}, err
}

func (m *Mem) tasksOfLocked(j *memJob) []legacyapi.Task {
	out := make([]legacyapi.Task, len(j.tasks))
	for i, id := range j.tasks {
		out[i] = *m.tasks[id]
	}
	return out
}

// GetJob implements legacyapi.Backend.
func (m *Mem) GetJob(_ context.Context, id string) (legacyapi.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return legacyapi.Job{}, err
	}
	j, ok := m.jobs[id]
	if !ok {
		return legacyapi.Job{}, legacyapi.NotFound("job", id)
	}
	return j.job, nil
}

// KillJob implements legacyapi.Backend: every task ends at once, and the
// job with them.
func (m *Mem) KillJob(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return err
	}
	j, ok := m.jobs[id]
	if !ok {
		return legacyapi.NotFound("job", id)
	}
	if j.job.Status.State != legacyapi.JobAccepted {
		return nil
	}
	m.setJobLocked(j, legacyapi.JobKillInitiated, "killed")
	for _, tid := range j.tasks {
		if m.tasks[tid].Status.State != legacyapi.TaskFinished {
			m.setTaskLocked(tid, legacyapi.TaskFinished, "killed")
		}
	}
	m.setJobLocked(j, legacyapi.JobFinished, "killed")
	return nil
}

// UpdateJob implements legacyapi.Backend.
func (m *Mem) UpdateJob(_ context.Context, id string, u legacyapi.JobUpdate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return err
	}
	j, ok := m.jobs[id]
	if !ok {
		return legacyapi.NotFound("job", id)
	}
	d := j.job.JobDescriptor
	if err := u.Apply(id, &d); err != nil {
		return err
	}
	if s := j.job.Status.State; s != legacyapi.JobAccepted {
		return legacyapi.Terminating("job", id, s)
	}
	j.job.JobDescriptor = d
	m.changes.Add(legacyapi.ChangeKey{ID: id})
	m.scaleLocked(j)
	return nil
}

// FindTasks implements legacyapi.Backend.
func (m *Mem) FindTasks(_ context.Context, q legacyapi.TaskQuery) (legacyapi.TaskQueryResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return legacyapi.TaskQueryResult{}, err
	}
	var match []legacyapi.Task
	for _, j := range m.order {
		for _, id := range j.tasks {
			if t := *m.tasks[id]; legacyapi.MatchTask(q.Criteria, t, j.job) {
				match = append(match, t)
			}
		}
	}
	items, pg, err := legacyapi.Paginate(match, legacyapi.TaskKey, q.Page)
	return legacyapi.TaskQueryResult{Items: items, Pagination: pg}, err
}

// GetTask implements legacyapi.Backend.
func (m *Mem) GetTask(_ context.Context, id string) (legacyapi.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return legacyapi.Task{}, err
	}
	t, ok := m.tasks[id]
	if !ok {
		return legacyapi.Task{}, legacyapi.NotFound("task", id)
	}
	return *t, nil
}

// KillTask implements legacyapi.Backend.
func (m *Mem) KillTask(_ context.Context, id string, k legacyapi.TaskKill) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return err
	}
	t, ok := m.tasks[id]
	switch {
	case !ok:
		return legacyapi.NotFound("task", id)
	case t.Status.State == legacyapi.TaskFinished || t.Status.State == legacyapi.TaskKillInitiated:
		return fmt.Errorf("task %s has ended or is being killed: %w", id, legacyapi.ErrNotFound)
	}
	j := m.jobs[t.JobID]
	if k.Shrink {
		d := j.job.JobDescriptor
		if d.Service == nil {
			return fmt.Errorf("job %s is not a service job: %w", j.job.ID, legacyapi.ErrInvalid)
		}
		c, err := legacyapi.Shrink(j.job.ID, *d.Service.Capacity, k.PreventMinSizeUpdate)
		if err != nil {
			return err
		}
		s := *d.Service
		s.Capacity = &c
		d.Service = &s
		j.job.JobDescriptor = d
		m.changes.Add(legacyapi.ChangeKey{ID: j.job.ID})
	}
	m.setTaskLocked(id, legacyapi.TaskFinished, "killed")
	m.scaleLocked(j)
	return nil
}

// UpdateTask implements legacyapi.Backend.
func (m *Mem) UpdateTask(_ context.Context, id string, u legacyapi.TaskUpdate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upLocked(); err != nil {
		return err
	}
	t, ok := m.tasks[id]
	if !ok {
		return legacyapi.NotFound("task", id)
	}
	t.Attributes = u.Apply(t.Attributes)
	m.changes.Add(legacyapi.ChangeKey{Task: true, ID: id})
	return nil
}

// MoveTask implements legacyapi.Backend: not in this world.
func (m *Mem) MoveTask(context.Context, legacyapi.TaskMove) error {
	return fmt.Errorf("moving tasks: %w", legacyapi.ErrUnimplemented)
}

// Observe implements legacyapi.Observer.
func (m *Mem) Observe(ctx context.Context, send func(legacyapi.Change) error) error {
	return legacyapi.ObserveLog(ctx, m.changes, func() ([]legacyapi.Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.upLocked(); err != nil {
			return nil, err
		}
		var out []legacyapi.Change
		for _, j := range m.order {
			if j.job.Status.State == legacyapi.JobFinished {
				continue
			}
			jv := j.job
			out = append(out, legacyapi.Change{Job: &jv})
			for _, id := range j.tasks {
				if t := *m.tasks[id]; t.Status.State != legacyapi.TaskFinished {
					t.TaskContext = maps.Clone(t.TaskContext)
					out = append(out, legacyapi.Change{Task: &t})
				}
			}
		}
		return out, nil
	}, func(keys []legacyapi.ChangeKey) ([]legacyapi.Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		out := make([]legacyapi.Change, 0, len(keys))
		for _, k := range keys {
			if k.Task {
				t := *m.tasks[k.ID]
				out = append(out, legacyapi.Change{Task: &t})
				continue
			}
			jv := m.jobs[k.ID].job
			out = append(out, legacyapi.Change{Job: &jv})
		}
		return out, nil
	}, send)
}
