package master

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// The job loop: one goroutine per master brings every job towards its
// descriptor, level-triggered, so that whatever a pass misses (a failed
// launch, a kill that did not arrive, a failover) the next one sees. A
// pass decides under the lock and does its I/O after: store writes, then
// launches and kills, a bounded number at once.

// jobsTick is how often the loop looks at every job without being kicked:
// retry delays, runtime limits and agents that gained room without a new
// report are seen within it.
const jobsTick = time.Second

// jobsParallel bounds the launches, kills and store reads in flight.
const jobsParallel = 8

type launchAction struct {
	id      TaskID
	spec    TaskSpec
	agentID string
	cl      *agentclient.Client
}

type followAction struct {
	id TaskID
	cl *agentclient.Client
}

// jobActions is the I/O a pass decided on.
type jobActions struct {
	killing []*jobTask // tasks the job kills: signalled once stored
	follows []followAction
}

// signalAction is one KILL_CONTAINER the job layer sends.
type signalAction struct {
	jt  *jobTask
	sig syscall.Signal
}

// killResend is how long the job loop waits before sending SIGKILL again
// to a task that has not ended (the agent may have missed it).
const killResend = 10 * time.Second

// kickJobs asks for a pass soon; kicks coalesce, so it never blocks.
func (m *Master) kickJobs() {
	select {
	case m.jobsKick <- struct{}{}:
	default:
	}
}

func (m *Master) runJobs(ctx context.Context) {
	tick := time.NewTicker(jobsTick)
	defer tick.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.jobsKick:
		}
		if m.loadJobs() {
			m.jobsPass()
			if time.Since(lastPrune) >= m.cfg.PruneInterval {
				m.pruneJobs(time.Now())
				lastPrune = time.Now()
			}
		}
	}
}

// loadJobs reads the job records back from ZooKeeper at the start of a
// leadership; it reports whether this master leads with its jobs in.
// Until they are, the job API answers 503 and nothing is placed: a new
// leader must not run again what its predecessor runs.
func (m *Master) loadJobs() bool {
	m.mu.Lock()
	leading, term, loaded := m.leading, m.term, m.jobs != nil
	m.mu.Unlock()
	if !leading || loaded {
		return leading
	}
	start := time.Now()
	stored, err := m.store.load()
	if err != nil {
		m.log.WithError(err).Warn("cannot load the job records; retrying")
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading || m.term != term {
		return false
	}
	tbl := newJobTable()
	m.jobs = tbl
	tasks := 0
	for _, sj := range stored {
		j := sj.job()
		tbl.add(j)
		tasks += len(j.tasks)
		for _, jt := range j.tasks {
			if jt.endStored {
				m.queueRemovalLocked(jt) // an earlier leader's, not removed yet
			}
		}
	}
	// Tasks adopted before the records were in: re-attach them by id.
	for id, t := range m.tasks {
		if jt := tbl.tasks[id]; jt != nil && !jt.ended() && t.jt == nil {
			t.jt = jt
			m.observeLocked(jt, t, t.Updated)
		}
	}
	m.log.WithFields(logrus.Fields{"jobs": len(stored), "tasks": tasks, "took": time.Since(start).Round(time.Millisecond)}).
		Info("job records loaded")
	return true
}

func (m *Master) jobsPass() {
	m.mu.Lock()
	if !m.leading || m.jobs == nil {
		m.mu.Unlock()
		return
	}
	now := time.Now()
	var acts jobActions
	for _, j := range m.jobs.order {
		if j.state() != legacyapi.JobFinished {
			m.reconcileLocked(j, now, &acts)
		}
	}
	m.placeLocked(now)
	termCtx := m.termCtx
	m.mu.Unlock()

	if err := m.flushJobs(); err != nil {
		m.log.WithError(err).Warn("cannot store job records; launches and kills wait for the next pass")
	} else {
		m.mu.Lock()
		var launches []launchAction
		if m.jobs != nil {
			launches, m.jobs.toLaunch = m.jobs.toLaunch, nil
		}
		m.mu.Unlock()
		parallel(jobsParallel, launches, func(l launchAction) {
			_ = m.launch(termCtx, termCtx, l.id, l.spec, l.agentID, l.cl) // launch logs and records failures
		})
	}
	// Kills go out once stored (killStored): by this flush or an earlier one.
	m.mu.Lock()
	signals := m.killSignalsLocked(acts.killing, time.Now())
	m.mu.Unlock()
	parallel(jobsParallel, signals, func(s signalAction) { m.sendSignal(termCtx, s) })
	for _, f := range acts.follows {
		m.spawn(func() { m.follow(termCtx, f.id, f.cl) })
	}
	m.sendRemovals(termCtx)
}

// killSignalsLocked decides the signals for tasks the job kills: SIGTERM
// once this leadership runs the task and the kill is stored, SIGKILL once
// the kill's grace has passed since that SIGTERM (again every killResend
// until the task ends). A task whose launch is in flight waits: a kill now
// would find no container and the launch would start it after.
func (m *Master) killSignalsLocked(jts []*jobTask, now time.Time) []signalAction {
	var out []signalAction
	for _, jt := range jts {
		t := m.tasks[jt.id]
		if jt.kill == nil || !jt.killStored || jt.ended() || jt.pruned || t == nil || t.jt != jt ||
			t.State == mesos.TASK_STAGING || isTerminal(t.State) {
			continue
		}
		switch {
		case jt.termSent.IsZero():
			jt.termSent = now
			out = append(out, signalAction{jt, syscall.SIGTERM})
		case now.Sub(jt.termSent) >= jt.killGrace && now.Sub(jt.killSent) >= killResend:
			jt.killSent = now
			out = append(out, signalAction{jt, syscall.SIGKILL})
		}
	}
	return out
}

// sendSignal sends one signal killSignalsLocked decided on. One that
// fails is decided again by the next pass.
func (m *Master) sendSignal(ctx context.Context, s signalAction) {
	jt := s.jt
	log := m.log.WithFields(logrus.Fields{"job": jt.job.id, "task": jt.id, "agent": jt.agentID, "reason": jt.kill.code, "signal": s.sig.String()})
	if err := m.signal(ctx, jt.id, s.sig); err != nil {
		m.mu.Lock()
		if s.sig == syscall.SIGTERM {
			jt.termSent = time.Time{}
		} else {
			jt.killSent = time.Time{}
		}
		m.mu.Unlock()
		log.WithError(err).Warn("kill signal failed; the job loop sends it again")
		return
	}
	if s.sig == syscall.SIGKILL {
		log.Info("job task did not end within its kill grace; SIGKILL sent")
	} else {
		log.Info("job kills task")
	}
}

// reconcileLocked compares j with its descriptor: tasks to create, retry,
// scale down, kill or recover, and whether j is finished.
func (m *Master) reconcileLocked(j *job, now time.Time, acts *jobActions) {
	switch {
	case j.state() == legacyapi.JobKillInitiated:
		m.killJobTasksLocked(j, now) // KillJob did; again for a record stored before it did
	case j.batch():
		m.reconcileBatchLocked(j, now)
	default:
		m.reconcileServiceLocked(j, now)
	}
	live := 0
	for _, jt := range j.tasks {
		if !jt.ended() {
			m.reconcileTaskLocked(jt, now, acts)
		}
		if !jt.ended() {
			live++
		}
	}
	if j.state() == legacyapi.JobKillInitiated && live == 0 {
		m.jobs.setJobState(j, legacyapi.JobFinished, reasonKilled, "every task of the killed job has ended", now)
		m.log.WithField("job", j.id).Info("job finished (killed)")
	}
}

// reconcileBatchLocked keeps one task per index until the index succeeds
// or has used its retries; the job is Finished when every index is done.
func (m *Master) reconcileBatchLocked(j *job, now time.Time) {
	b := j.desc.Batch
	latest := make([]*jobTask, b.Size)
	tries := make([]int, b.Size)
	for _, jt := range j.tasks {
		if jt.index >= 0 && jt.index < len(latest) {
			latest[jt.index] = jt
			// By position, or by the attempt the task records: earlier
			// tries may have been pruned.
			tries[jt.index] = max(tries[jt.index]+1, jt.attempt)
		}
	}
	done, failed := 0, 0
	for i, jt := range latest {
		switch {
		case jt == nil:
			m.newTaskLocked(j, i, "", now, now).attempt = 1
		case !jt.ended():
		case jt.status().ReasonCode == reasonNormal:
			done++
		case retryable(jt.status().ReasonCode, b) && tries[i] <= b.RetryPolicy.Retries():
			retry := m.newTaskLocked(j, i, jt.id, now.Add(retryDelay(b.RetryPolicy, tries[i])), now)
			retry.attempt = tries[i] + 1
			m.log.WithFields(logrus.Fields{"job": j.id, "task": retry.id, "resubmit_of": jt.id, "index": i}).
				Info("batch task retried")
		default:
			done++
			failed++
		}
	}
	if done < len(latest) {
		return
	}
	code, msg := reasonNormal, fmt.Sprintf("all %d tasks succeeded", done)
	if failed > 0 {
		code, msg = reasonFailed, fmt.Sprintf("%d of %d tasks failed after their retries", failed, done)
	}
	m.jobs.setJobState(j, legacyapi.JobFinished, code, msg, now)
	m.log.WithFields(logrus.Fields{"job": j.id, "failed": failed}).Info("batch job finished")
}

// reconcileServiceLocked keeps capacity.desired tasks that the job does
// not kill: an ended one is replaced (after the retry policy's delay while
// tasks keep failing), the newest are killed when there are too many.
func (m *Master) reconcileServiceLocked(j *job, now time.Time) {
	desired := int(j.desc.Service.Capacity.Desired)
	var live []*jobTask
	for _, jt := range j.tasks {
		if !jt.ended() && jt.kill == nil {
			live = append(live, jt)
		}
	}
	notBefore := now.Add(retryDelay(j.desc.Service.RetryPolicy, j.failStreak))
	for n := len(live); n < desired; n++ {
		m.newTaskLocked(j, -1, "", notBefore, now)
	}
	m.scaleDownLocked(j, now)
}

// scaleDownLocked kills the newest of a service job's tasks beyond
// capacity.desired (UpdateCapacity calls it too, so that a scale-down's
// kills are stored before it answers).
func (m *Master) scaleDownLocked(j *job, now time.Time) {
	desired := int(j.desc.Service.Capacity.Desired)
	var live []*jobTask
	for _, jt := range j.tasks {
		if !jt.ended() && jt.kill == nil {
			live = append(live, jt)
		}
	}
	for i := len(live) - 1; i >= desired; i-- {
		m.setKillLocked(live[i], reasonScaledDown, fmt.Sprintf("scaled down to %d tasks", desired), now)
	}
}

// killJobTasksLocked kills every task of a killed job.
func (m *Master) killJobTasksLocked(j *job, now time.Time) {
	for _, jt := range j.tasks {
		m.setKillLocked(jt, reasonKilled, "the job was killed", now)
	}
}

// reconcileTaskLocked recovers a task an earlier leader placed, enforces
// the runtime limit, and sends (or re-sends) the kill of a task the job
// kills.
func (m *Master) reconcileTaskLocked(jt *jobTask, now time.Time, acts *jobActions) {
	t := m.tasks[jt.id]
	if t == nil && jt.placed() {
		m.recoverLocked(jt, now, acts)
		return
	}
	if b := jt.job.desc.Batch; b != nil && b.RuntimeLimitSec > 0 && jt.kill == nil && !jt.started.IsZero() {
		if limit := time.Duration(b.RuntimeLimitSec) * time.Second; now.Sub(jt.started) > limit {
			m.setKillLocked(jt, reasonRuntimeLimit, fmt.Sprintf("ran longer than the runtime limit of %v", limit), now)
		}
	}
	switch {
	case jt.kill == nil:
	case t == nil:
		m.recordLocked(jt, mesos.TASK_KILLED, "never placed", nil, now)
	default:
		acts.killing = append(acts.killing, jt) // signalled after the flush
	}
}

// recoverLocked handles a task the job records place on an agent while
// this master runs no such task: one placed by an earlier leader, not
// adopted from its agent's report. If the agent re-registered without it,
// it ended while no master followed it (or never started): WAIT_CONTAINER
// tells how, as the agent keeps an exit status until REMOVE_CONTAINER,
// which a master only sends once the task's end is stored (gc.go). If the
// agent is not back within the agent timeout of the election, the task is
// lost.
func (m *Master) recoverLocked(jt *jobTask, now time.Time, acts *jobActions) {
	a := m.agents[jt.agentID]
	switch {
	case a != nil:
		t := &task{Task: Task{
			ID: jt.id, Name: jt.job.spec.Name, AgentID: jt.agentID, Endpoint: a.endpoint,
			Resources: jt.job.spec.Resources.Clone(), Adopted: true, Created: now,
		}, jt: jt}
		// Not through setLocked: the job saw this placement already.
		t.set(mesos.TASK_STAGING, "recovered from the job records; asking the agent how it ended", now)
		m.tasks[jt.id] = t
		acts.follows = append(acts.follows, followAction{jt.id, m.client(a.endpoint)})
		m.log.WithFields(logrus.Fields{"job": jt.job.id, "task": jt.id, "agent": jt.agentID}).
			Info("job task not in its agent's report; asking the agent how it ended")
	case now.Sub(m.electedAt) > m.cfg.AgentTimeout:
		m.recordLocked(jt, mesos.TASK_LOST, fmt.Sprintf("agent %s did not re-register within %v of the failover", jt.agentID, m.cfg.AgentTimeout), nil, now)
		m.log.WithFields(logrus.Fields{"job": jt.job.id, "task": jt.id, "agent": jt.agentID}).Warn("job task lost with its agent")
	}
}

// placeLocked places Accepted tasks, older jobs first, on one accounting
// of the agents' free resources. Placed tasks wait in toLaunch until their
// placement is stored. A task that fits nowhere stays Accepted (Titus:
// passed to the scheduler, no resources allocated yet) for a later pass.
func (m *Master) placeLocked(now time.Time) {
	var p *placement
	for _, j := range m.jobs.order {
		if j.state() != legacyapi.JobAccepted {
			continue
		}
		for _, jt := range j.tasks {
			if jt.placed() || jt.ended() || jt.kill != nil || now.Before(jt.notBefore) {
				continue
			}
			if len(m.agents) == 0 {
				return
			}
			if p == nil {
				p = m.placementLocked()
			}
			agentID, why := p.pick(j.spec)
			if agentID == "" {
				// Every task of a job asks the same: none of the rest fits.
				m.log.WithFields(logrus.Fields{"job": j.id, "task": jt.id}).Debugf("no agent has room: %s", why)
				break
			}
			t := m.reserveLocked(jt.id, j.spec, agentID, jt, now)
			m.jobs.toLaunch = append(m.jobs.toLaunch, launchAction{jt.id, j.spec, agentID, m.client(t.Endpoint)})
		}
	}
}

// parallel runs f on every item with at most n workers, and returns when
// all are done.
func parallel[T any](n int, items []T, f func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				f(it)
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}
