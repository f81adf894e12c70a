package master

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// Collecting finished work: containers on the agents, then records in
// memory and in ZooKeeper. Both run in the job loop (runJobs), on the
// leader only, a bounded amount per pass; neither has a goroutine or a
// timer of its own.
//
// Containers. An agent keeps a container's exit status until
// REMOVE_CONTAINER, which is what lets a new leader learn how a task ended
// while no master followed it. So a job task's container is removed only
// once the task's Finished record is stored (endStored); a task of the
// launch path (no record) once its end is seen. A REMOVE that fails, or
// whose agent is not registered, is tried again with a backoff, at most
// maxRemoveAttempts times per leadership; a 404 counts as removed. Success
// is stored (containerRemoved), so a new leader does not send it again.
//
// Records. Finished jobs are kept for Config.JobRetentionAge after they
// finished and at most Config.JobRetentionCount of them (the most recently
// finished); finished tasks at most Config.TaskRetentionPerJob per job
// (the newest), never the latest task of a batch index, which holds the
// index's outcome and its attempt count (taskRecord.Attempt: pruned tries
// still count against the retry policy). Only a record whose end is stored
// and whose container is removed (or given up on) is pruned. A pass prunes
// at most pruneMaxZnodes records (always at least one job).
//
// Lock rules: removals is guarded by Master.mu. Pruning holds storeMu
// (first) across the whole pass, then mu while it drops records from the
// job table and the dirty sets: no flush is then in flight with a pruned
// record, and none takes one after (pruned records are never marked dirty
// again, see markDirtyLocked), so a record's znode never comes back after
// its delete. The deletes are fenced multi-ops like every write; what
// fails is retried at the next prune pass of the same leadership (a new
// leader loads the records again and prunes them itself).

const (
	maxRemovesPerPass = 32
	maxRemoveAttempts = 10
	removeBackoffMax  = time.Minute
	pruneMaxZnodes    = 1000
)

// removal is a container to REMOVE.
type removal struct {
	id       TaskID
	agentID  string
	jt       *jobTask // nil for a task of the launch path
	attempts int
	next     time.Time
	inFlight bool
}

type removeAction struct {
	r  *removal
	cl *agentclient.Client
}

// queueRemovalLocked queues the container of a job task whose end is
// stored, unless it never was placed or is removed already.
func (m *Master) queueRemovalLocked(jt *jobTask) {
	if !jt.placed() || jt.removed || jt.pruned || m.jobs == nil || m.jobs.tasks[jt.id] != jt {
		return
	}
	m.queueRemovalOfLocked(jt.id, jt.agentID, jt)
}

func (m *Master) queueRemovalOfLocked(id TaskID, agentID string, jt *jobTask) {
	if m.removals == nil || m.removals[id] != nil || agentID == "" {
		return
	}
	m.removals[id] = &removal{id: id, agentID: agentID, jt: jt}
}

// dueRemovalsLocked picks the removals to send now.
func (m *Master) dueRemovalsLocked(now time.Time) []removeAction {
	var out []removeAction
	for _, r := range m.removals {
		if len(out) == maxRemovesPerPass {
			break
		}
		if r.inFlight || now.Before(r.next) {
			continue
		}
		a := m.agents[r.agentID]
		if a == nil {
			m.removeFailedLocked(r, now, errors.New("agent not registered"))
			continue
		}
		r.inFlight = true
		out = append(out, removeAction{r, m.client(a.endpoint)})
	}
	return out
}

// remove sends one REMOVE_CONTAINER and records the outcome.
func (m *Master) remove(ctx context.Context, act removeAction) {
	r := act.r
	// A finished task's container is not expected to run, but one the
	// master declared lost (its agent away) may: it is killed before its
	// removal, never left running beside the task's replacement.
	if kerr := act.cl.Kill(ctx, string(r.id), syscall.SIGKILL); kerr != nil && !errors.Is(kerr, agentclient.ErrNotFound) {
		m.log.WithError(kerr).WithFields(logrus.Fields{"task": r.id, "agent": r.agentID}).Debug("kill before removal")
	}
	err := act.cl.Remove(ctx, string(r.id))
	m.mu.Lock()
	defer m.mu.Unlock()
	r.inFlight = false
	if m.removals[r.id] != r {
		return // another leadership's, or pruned meanwhile
	}
	if err != nil && !errors.Is(err, agentclient.ErrNotFound) {
		m.removeFailedLocked(r, time.Now(), err)
		return
	}
	delete(m.removals, r.id)
	if jt := r.jt; jt != nil && m.jobs != nil {
		jt.removed = true
		m.jobs.markDirtyLocked(jt)
	}
	m.log.WithFields(logrus.Fields{"task": r.id, "agent": r.agentID}).Debug("finished task's container removed")
}

func (m *Master) removeFailedLocked(r *removal, now time.Time, err error) {
	r.attempts++
	log := m.log.WithError(err).WithFields(logrus.Fields{"task": r.id, "agent": r.agentID, "attempts": r.attempts})
	if r.attempts >= maxRemoveAttempts {
		delete(m.removals, r.id)
		log.Warn("giving up removing the finished task's container; the agent keeps its sandbox")
		return
	}
	r.next = now.Add(min(time.Second<<(r.attempts-1), removeBackoffMax))
	log.Debug("removing the finished task's container failed; retrying later")
}

// sendRemovals sends the due removals, a bounded number at once.
func (m *Master) sendRemovals(ctx context.Context) {
	m.mu.Lock()
	acts := m.dueRemovalsLocked(time.Now())
	m.mu.Unlock()
	parallel(jobsParallel, acts, func(a removeAction) { m.remove(ctx, a) })
}

// pruneJobs is one pruning pass: see the top of this file.
func (m *Master) pruneJobs(now time.Time) {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.Lock()
	if !m.leading || m.jobs == nil {
		m.mu.Unlock()
		return
	}
	jobIDs, taskPaths := m.pruneLocked(now)
	if m.prunePending.term == m.term {
		jobIDs = append(m.prunePending.jobs, jobIDs...)
		taskPaths = append(m.prunePending.tasks, taskPaths...)
	}
	m.prunePending = pendingPrune{term: m.term}
	term := m.term
	m.mu.Unlock()

	if m.store == nil || len(jobIDs)+len(taskPaths) == 0 {
		return
	}
	if err := m.store.prune(jobIDs, taskPaths); err != nil {
		m.log.WithError(err).WithFields(logrus.Fields{"jobs": len(jobIDs), "tasks": len(taskPaths)}).
			Warn("cannot delete pruned job records; retrying at the next prune pass")
		m.mu.Lock()
		if m.term == term && m.leading {
			m.prunePending = pendingPrune{term: term, jobs: jobIDs, tasks: taskPaths}
		}
		m.mu.Unlock()
	}
}

// pendingPrune: deletes that failed, for the leadership that pruned them.
type pendingPrune struct {
	term  uint64
	jobs  []string
	tasks []string // znode paths
}

// pruneLocked drops what retention lets go from the job table and returns
// the job ids and task znode paths to delete.
func (m *Master) pruneLocked(now time.Time) (jobIDs, taskPaths []string) {
	tbl := m.jobs
	budget := pruneMaxZnodes

	// Finished jobs, most recently finished first; the excess, oldest first.
	var finished []*job
	for _, j := range tbl.order {
		if j.state() == legacyapi.JobFinished {
			finished = append(finished, j)
		}
	}
	slices.SortFunc(finished, func(a, b *job) int {
		return cmp.Or(cmp.Compare(b.history[len(b.history)-1].Timestamp, a.history[len(a.history)-1].Timestamp), cmp.Compare(a.id, b.id))
	})
	cutoff := millis(now.Add(-m.cfg.JobRetentionAge))
	for i := len(finished) - 1; i >= 0 && budget > 0; i-- {
		j := finished[i]
		if i < m.cfg.JobRetentionCount && j.history[len(j.history)-1].Timestamp >= cutoff {
			break // this one and every more recent one stay
		}
		if !m.prunableJobLocked(j) {
			continue
		}
		n := 1 + len(j.tasks)
		if n > budget && len(jobIDs) > 0 {
			break
		}
		budget -= n
		m.dropJobLocked(j)
		jobIDs = append(jobIDs, j.id)
	}
	if len(jobIDs) > 0 {
		tbl.order = slices.DeleteFunc(tbl.order, func(j *job) bool { return j.pruned })
	}

	// Finished tasks beyond the per-job bound, oldest first.
	prunedTasks := 0
	for _, j := range tbl.order {
		if budget <= 0 {
			break
		}
		ended := 0
		for _, jt := range j.tasks {
			if jt.ended() {
				ended++
			}
		}
		excess := ended - m.cfg.TaskRetentionPerJob
		if excess <= 0 {
			continue
		}
		var latest map[int]*jobTask
		if j.batch() {
			latest = map[int]*jobTask{}
			for _, jt := range j.tasks {
				latest[jt.index] = jt
			}
		}
		kept := make([]*jobTask, 0, len(j.tasks))
		for _, jt := range j.tasks {
			if excess > 0 && budget > 0 && jt.ended() && m.prunableTaskLocked(jt) && (latest == nil || latest[jt.index] != jt) {
				excess--
				budget--
				m.dropTaskLocked(jt)
				taskPaths = append(taskPaths, m.taskZnode(jt))
				prunedTasks++
				continue
			}
			kept = append(kept, jt)
		}
		j.tasks = kept
	}
	if len(jobIDs) > 0 || prunedTasks > 0 {
		m.log.WithFields(logrus.Fields{"jobs": len(jobIDs), "tasks": prunedTasks, "jobs_kept": len(tbl.order)}).
			Info("pruned finished jobs and tasks")
	}
	return jobIDs, taskPaths
}

func (m *Master) taskZnode(jt *jobTask) string {
	if m.store == nil {
		return ""
	}
	return m.store.taskPath(jt)
}

// prunableTaskLocked: jt's end is stored and its container removed (or
// given up on, or never placed).
func (m *Master) prunableTaskLocked(jt *jobTask) bool {
	return jt.ended() && jt.endStored && m.removals[jt.id] == nil
}

func (m *Master) prunableJobLocked(j *job) bool {
	for _, jt := range j.tasks {
		if !m.prunableTaskLocked(jt) {
			return false
		}
	}
	return true
}

func (m *Master) dropJobLocked(j *job) {
	j.pruned = true
	delete(m.jobs.jobs, j.id)
	delete(m.jobs.dirtyJobs, j)
	for _, jt := range j.tasks {
		m.dropTaskLocked(jt)
	}
}

// dropTaskLocked forgets a finished task: the job table's record and the
// master task that ran it.
func (m *Master) dropTaskLocked(jt *jobTask) {
	jt.pruned = true
	delete(m.jobs.tasks, jt.id)
	delete(m.jobs.dirtyTasks, jt)
	delete(m.removals, jt.id)
	if t := m.tasks[jt.id]; t != nil && t.jt == jt && isTerminal(t.State) {
		delete(m.tasks, jt.id)
	}
}

// prune deletes the records of pruned jobs (with every task znode under
// them, listed from ZooKeeper so that none is left behind) and of pruned
// tasks. Deletes of znodes already gone are dropped.
func (s *jobStore) prune(jobIDs, taskPaths []string) error {
	ws := make([]znodeWrite, 0, len(taskPaths)+len(jobIDs))
	for _, p := range taskPaths {
		ws = append(ws, znodeWrite{path: p, del: true})
	}
	if len(jobIDs) > 0 {
		conn, _, err := s.fence()
		if err != nil {
			return fmt.Errorf("job store %s: %w", s.root, err)
		}
		for _, id := range jobIDs {
			p := s.jobPath(id)
			children, _, err := conn.Children(p)
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return fmt.Errorf("job store: listing %s: %w", p, err)
			}
			for _, c := range children {
				ws = append(ws, znodeWrite{path: p + "/" + c, del: true})
			}
			if err == nil {
				ws = append(ws, znodeWrite{path: p, del: true})
			}
		}
	}
	if err := s.write(ws); err != nil {
		return fmt.Errorf("pruning %d jobs and %d tasks: %w", len(jobIDs), len(taskPaths), err)
	}
	return nil
}
