package master

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// JobAPI is the master's legacyapi.Backend: the Titus v3 job API over its
// own tasks, which Handler serves under /api/v3/. Only the leader answers
// (a follower's calls fail with ErrUnavailable; over HTTP it redirects),
// and a new leader only once it has loaded the job records.
//
// A call that changes a job stores the job before it answers, so what a
// caller saw succeed survives a failover; CreateJob answers 503 when the
// job could not be stored, the others when the change is made but not
// stored yet (the job loop stores it; repeating the call is harmless).
// Kills are stored the same way: KillTask, KillJob and a scale-down by
// UpdateCapacity record each task kill in the task's record before they
// answer, and no kill signal goes out before its record is stored, so a
// new leader finishes every kill an earlier one acknowledged or began.
func (m *Master) JobAPI() legacyapi.Backend { return jobAPI{m} }

type jobAPI struct{ m *Master }

var _ legacyapi.Backend = jobAPI{}

func (m *Master) jobsLocked() (*jobTable, error) {
	switch {
	case !m.leading:
		return nil, fmt.Errorf("%w: this master does not lead", legacyapi.ErrUnavailable)
	case m.jobs == nil:
		return nil, fmt.Errorf("%w: the leading master is still loading its job records", legacyapi.ErrUnavailable)
	}
	return m.jobs, nil
}

func (m *Master) jobLocked(id string) (*job, error) {
	tbl, err := m.jobsLocked()
	if err != nil {
		return nil, err
	}
	j := tbl.jobs[id]
	if j == nil {
		return nil, legacyapi.NotFound("job", id)
	}
	return j, nil
}

// CreateJob implements legacyapi.Backend. The job loop makes its tasks.
func (a jobAPI) CreateJob(ctx context.Context, d legacyapi.JobDescriptor) (string, error) {
	m := a.m
	j := newJob(d, time.Now())
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.Lock()
	_, err := m.jobsLocked()
	term := m.term
	m.mu.Unlock()
	if err != nil {
		return "", err
	}
	if m.store != nil {
		if err := m.store.write([]znodeWrite{m.store.jobWrite(j)}); err != nil {
			return "", fmt.Errorf("storing job %s: %w: %v", j.id, legacyapi.ErrUnavailable, err)
		}
		j.stored = true
	}
	m.mu.Lock()
	// Stored under a lost leadership, the job is the next leader's to run.
	if m.leading && m.term == term && m.jobs != nil {
		m.jobs.add(j)
	}
	m.mu.Unlock()
	m.kickJobs()
	m.log.WithFields(logrus.Fields{"job": j.id, "application": d.ApplicationName, "image": j.spec.Image}).Debug("job created")
	return j.id, nil
}

// changeJob applies f to job id and stores the job before answering.
func (m *Master) changeJob(id string, f func(tbl *jobTable, j *job) error) error {
	m.mu.Lock()
	j, err := m.jobLocked(id)
	if err == nil {
		err = f(m.jobs, j)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.kickJobs()
	if err := m.flushJobs(); err != nil {
		return fmt.Errorf("job %s: %w: changed but not stored yet (the master keeps trying): %v", id, legacyapi.ErrUnavailable, err)
	}
	return nil
}

// acceptedOnly refuses a change to a job on its way out.
func acceptedOnly(j *job) error {
	if s := j.state(); s != legacyapi.JobAccepted {
		return legacyapi.Terminating("job", j.id, s)
	}
	return nil
}

// setDescriptor replaces j's descriptor (never changed in place: views
// share it) and marks j for storing and for the change feed.
func (tbl *jobTable) setDescriptor(j *job, d legacyapi.JobDescriptor) {
	j.desc = d
	tbl.dirtyJobs[j] = struct{}{}
	tbl.jobChanged(j)
}

// UpdateJob implements legacyapi.Backend. A smaller desired size kills
// the newest tasks beyond it, stored with the new capacity.
func (a jobAPI) UpdateJob(ctx context.Context, id string, u legacyapi.JobUpdate) error {
	return a.m.changeJob(id, func(tbl *jobTable, j *job) error {
		d := j.desc
		if err := u.Apply(id, &d); err != nil {
			return err
		}
		if err := acceptedOnly(j); err != nil {
			return err
		}
		tbl.setDescriptor(j, d)
		if u.Capacity != nil {
			a.m.scaleDownLocked(j, time.Now())
			c := d.Service.Capacity
			a.m.log.WithFields(logrus.Fields{"job": id, "min": c.Min, "desired": c.Desired, "max": c.Max}).Info("job capacity changed")
		}
		return nil
	})
}

// KillJob implements legacyapi.Backend; the job loop kills the tasks and
// finishes the job once they have ended.
func (a jobAPI) KillJob(ctx context.Context, id string) error {
	return a.m.changeJob(id, func(tbl *jobTable, j *job) error {
		if j.state() == legacyapi.JobAccepted {
			now := time.Now()
			tbl.setJobState(j, legacyapi.JobKillInitiated, reasonKilled, "killed by request", now)
			a.m.killJobTasksLocked(j, now) // stored with the job
		}
		return nil
	})
}

// KillTask implements legacyapi.Backend. A task that has ended, or whose
// kill is stored already, is NotFound (the Backend contract); a kill
// accepted but not stored yet is stored again, so that a caller who got
// 503 can repeat the call until it sticks. The kill (and a shrink's
// capacity) is stored before the call answers, 503 if it could not be;
// SIGTERM follows at once when the task runs (else the job loop sends it
// once the launch is through), and the job loop escalates to SIGKILL
// after the grace.
func (a jobAPI) KillTask(ctx context.Context, id string, k legacyapi.TaskKill) error {
	m := a.m
	m.mu.Lock()
	tbl, err := m.jobsLocked()
	if err != nil {
		m.mu.Unlock()
		return err
	}
	jt := tbl.tasks[TaskID(id)]
	switch {
	case jt == nil:
		m.mu.Unlock()
		return legacyapi.NotFound("task", id)
	case jt.ended() || (jt.kill != nil && jt.killStored):
		m.mu.Unlock()
		return fmt.Errorf("task %s has ended or is being killed: %w", id, legacyapi.ErrNotFound)
	}
	j := jt.job
	if jt.kill == nil {
		msg := "killed by request"
		if k.Shrink {
			if err := a.shrinkLocked(tbl, j, k.PreventMinSizeUpdate); err != nil {
				m.mu.Unlock()
				return err
			}
			msg = fmt.Sprintf("killed by request, shrinking the job to %d tasks", j.desc.Service.Capacity.Desired)
		}
		m.setKillLocked(jt, reasonKilled, msg, time.Now())
		m.log.WithFields(logrus.Fields{"job": j.id, "task": id, "agent": jt.agentID, "shrink": k.Shrink}).Debug("task kill requested")
	}
	m.mu.Unlock()
	m.kickJobs()
	if err := m.flushJobs(); err != nil {
		return fmt.Errorf("task %s: %w: kill accepted but not stored yet (the master keeps trying): %v", id, legacyapi.ErrUnavailable, err)
	}
	// Stored: SIGTERM now, unless the job loop sent it already.
	m.mu.Lock()
	signals := m.killSignalsLocked([]*jobTask{jt}, time.Now())
	m.mu.Unlock()
	for _, s := range signals {
		m.sendSignal(ctx, s) // a failure is the job loop's to retry
	}
	return nil
}

// shrinkLocked lowers a service job's desired size for a kill with shrink.
func (a jobAPI) shrinkLocked(tbl *jobTable, j *job, preventMinSizeUpdate bool) error {
	if j.batch() {
		return fmt.Errorf("job %s is a batch job; shrink applies to service jobs: %w", j.id, legacyapi.ErrInvalid)
	}
	if err := acceptedOnly(j); err != nil {
		return err
	}
	c, err := legacyapi.Shrink(j.id, *j.desc.Service.Capacity, preventMinSizeUpdate)
	if err != nil {
		return err
	}
	d := j.desc
	s := *d.Service
	s.Capacity = &c
	d.Service = &s
	tbl.setDescriptor(j, d)
	return nil
}

// UpdateTask implements legacyapi.Backend; the attributes are stored
// before the call answers.
func (a jobAPI) UpdateTask(ctx context.Context, id string, u legacyapi.TaskUpdate) error {
	m := a.m
	m.mu.Lock()
	tbl, err := m.jobsLocked()
	if err != nil {
		m.mu.Unlock()
		return err
	}
	jt := tbl.tasks[TaskID(id)]
	if jt == nil {
		m.mu.Unlock()
		return legacyapi.NotFound("task", id)
	}
	jt.attributes = u.Apply(jt.attributes)
	tbl.markDirtyLocked(jt)
	tbl.taskChanged(jt)
	m.mu.Unlock()
	if err := m.flushJobs(); err != nil {
		return fmt.Errorf("task %s: %w: attributes changed but not stored yet (the master keeps trying): %v", id, legacyapi.ErrUnavailable, err)
	}
	return nil
}

// MoveTask implements legacyapi.Backend: not here. A task's record lives
// under its job's in the store and its placement under its job's spec;
// moving it is not worth its failure modes for a platform being left.
func (a jobAPI) MoveTask(ctx context.Context, mv legacyapi.TaskMove) error {
	return fmt.Errorf("task %s: moving a task between jobs is not supported by the legacy master: %w", mv.TaskID, legacyapi.ErrUnimplemented)
}

// GetJob implements legacyapi.Backend.
func (a jobAPI) GetJob(ctx context.Context, id string) (legacyapi.Job, error) {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	j, err := a.m.jobLocked(id)
	if err != nil {
		return legacyapi.Job{}, err
	}
	return j.view(), nil
}

// GetTask implements legacyapi.Backend.
func (a jobAPI) GetTask(ctx context.Context, id string) (legacyapi.Task, error) {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	tbl, err := a.m.jobsLocked()
	if err != nil {
		return legacyapi.Task{}, err
	}
	jt := tbl.tasks[TaskID(id)]
	if jt == nil {
		return legacyapi.Task{}, legacyapi.NotFound("task", id)
	}
	return jt.view(), nil
}

// FindJobs implements legacyapi.Backend.
func (a jobAPI) FindJobs(ctx context.Context, q legacyapi.JobQuery) (legacyapi.JobQueryResult, error) {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	tbl, err := a.m.jobsLocked()
	if err != nil {
		return legacyapi.JobQueryResult{}, err
	}
	all := make([]legacyapi.Job, 0, len(tbl.order))
	for _, j := range tbl.order {
		tasks := func() []legacyapi.Task {
			out := make([]legacyapi.Task, len(j.tasks))
			for i, jt := range j.tasks {
				out[i] = jt.pageView()
			}
			return out
		}
		if v := j.view(); legacyapi.MatchJob(q.Criteria, v, tasks) {
			all = append(all, v)
		}
	}
	items, pg, err := legacyapi.Paginate(all, legacyapi.JobKey, q.Page)
	return legacyapi.JobQueryResult{Items: items, Pagination: pg}, err
}

// FindTasks implements legacyapi.Backend. It filters and orders light
// views of every task and builds whole ones for the page only.
func (a jobAPI) FindTasks(ctx context.Context, q legacyapi.TaskQuery) (legacyapi.TaskQueryResult, error) {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	tbl, err := a.m.jobsLocked()
	if err != nil {
		return legacyapi.TaskQueryResult{}, err
	}
	all := make([]legacyapi.Task, 0, len(tbl.tasks))
	for _, j := range tbl.order {
		var jv legacyapi.Job
		if q.HasJobFieldCriteria() {
			jv = j.view()
		}
		for _, jt := range j.tasks {
			if v := jt.pageView(); legacyapi.MatchTask(q.Criteria, v, jv) {
				all = append(all, v)
			}
		}
	}
	page, pg, err := legacyapi.Paginate(all, legacyapi.TaskKey, q.Page)
	items := make([]legacyapi.Task, len(page))
	for i, v := range page {
		items[i] = tbl.tasks[TaskID(v.ID)].view()
	}
	return legacyapi.TaskQueryResult{Items: items, Pagination: pg}, err
}
