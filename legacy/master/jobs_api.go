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

func serviceOnly(j *job, what string) error {
	if j.batch() {
		return fmt.Errorf("job %s is a batch job; %s applies to service jobs: %w", j.id, what, legacyapi.ErrConflict)
	}
	return nil
}

func acceptedOnly(j *job) error {
	if s := j.state(); s != legacyapi.JobAccepted {
		return fmt.Errorf("job %s is %s: %w", j.id, s, legacyapi.ErrConflict)
	}
	return nil
}

// setService replaces j's service spec (never changed in place: views
// share it) and marks j for storing.
func (tbl *jobTable) setService(j *job, f func(*legacyapi.ServiceJobSpec)) {
	s := *j.desc.Service
	c := *s.Capacity
	s.Capacity = &c
	f(&s)
	j.desc.Service = &s
	tbl.dirtyJobs[j] = struct{}{}
}

// UpdateCapacity implements legacyapi.Backend.
func (a jobAPI) UpdateCapacity(ctx context.Context, id string, c legacyapi.Capacity) error {
	return a.m.changeJob(id, func(tbl *jobTable, j *job) error {
		if err := serviceOnly(j, "capacity"); err != nil {
			return err
		}
		if err := acceptedOnly(j); err != nil {
			return err
		}
		tbl.setService(j, func(s *legacyapi.ServiceJobSpec) { *s.Capacity = c })
		a.m.scaleDownLocked(j, time.Now()) // stored with the capacity
		a.m.log.WithFields(logrus.Fields{"job": id, "min": c.Min, "desired": c.Desired, "max": c.Max}).Info("job capacity changed")
		return nil
	})
}

// SetEnabled implements legacyapi.Backend: the flag is recorded; with no
// autoscaling here it changes nothing else.
func (a jobAPI) SetEnabled(ctx context.Context, id string, enabled bool) error {
	return a.m.changeJob(id, func(tbl *jobTable, j *job) error {
		if err := serviceOnly(j, "enable/disable"); err != nil {
			return err
		}
		if err := acceptedOnly(j); err != nil {
			return err
		}
		tbl.setService(j, func(s *legacyapi.ServiceJobSpec) { s.Enabled = enabled })
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

// KillTask implements legacyapi.Backend. Killing an ended task is a no-op.
// The kill (and a shrink's capacity) is stored before the call answers,
// 503 if it could not be; SIGTERM follows at once when the task runs
// (else the job loop sends it once the launch is through), and the job
// loop escalates to SIGKILL after the grace. Repeating the call stores
// what is not stored yet and changes nothing else.
func (a jobAPI) KillTask(ctx context.Context, id string, shrink bool) error {
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
	if jt.ended() && jt.kill == nil {
		m.mu.Unlock()
		return nil
	}
	j := jt.job
	if jt.kill == nil {
		msg := "killed by request"
		if shrink {
			if err := serviceOnly(j, "shrink"); err != nil {
				m.mu.Unlock()
				return err
			}
			c := *j.desc.Service.Capacity
			if c.Desired == 0 || c.Desired-1 < c.Min {
				m.mu.Unlock()
				return fmt.Errorf("job %s: shrinking to %d tasks would go below its minimum of %d: %w", j.id, int(c.Desired)-1, c.Min, legacyapi.ErrConflict)
			}
			tbl.setService(j, func(s *legacyapi.ServiceJobSpec) { s.Capacity.Desired-- })
			msg = fmt.Sprintf("killed by request, shrinking the job to %d tasks", c.Desired-1)
		}
		m.setKillLocked(jt, reasonKilled, msg, time.Now())
		m.log.WithFields(logrus.Fields{"job": j.id, "task": id, "agent": jt.agentID, "shrink": shrink}).Debug("task kill requested")
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
		if v := j.view(); legacyapi.MatchJob(q, v) {
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
		app := j.desc.ApplicationName
		for _, jt := range j.tasks {
			if v := jt.pageView(); legacyapi.MatchTask(q, v, app) {
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
