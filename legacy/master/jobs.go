package master

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/statemachine"
)

// The job layer: Titus v3 jobs over the master's tasks. A job is a
// descriptor and a status history; its tasks are jobTasks, each run by at
// most one master task (same id) once placed. The Mesos state of that task
// is the truth about what runs; the jobTask keeps the Titus view of it
// (every status, through statemachine.TitusOfMesos) and what only the job
// layer knows: the batch index, what it resubmits, why the job killed it.
// Everything here is guarded by Master.mu.

// Reason codes the job layer sets where it knows better than the Mesos
// state, and the ones it reads to decide on retries.
const (
	reasonNormal         = "normal"
	reasonFailed         = "failed"
	reasonKilled         = "killed"
	reasonInvalidRequest = "invalidRequest"
	reasonRuntimeLimit   = "runtimeLimitExceeded"
	reasonScaledDown     = "scaledDown"
)

// jobIDPrefix starts every job id this master issues.
const jobIDPrefix = legacyapi.LegacyPrefix + "job-"

// jobTable is one leadership's jobs.
type jobTable struct {
	jobs  map[string]*job
	order []*job // by creation: placement serves older jobs first
	tasks map[TaskID]*jobTask
	// Records to write to the store at the next flush.
	dirtyJobs  map[*job]struct{}
	dirtyTasks map[*jobTask]struct{}
	// Placed tasks whose placement is not stored yet: launched only once it
	// is, so a new leader never finds a task running that its records lack.
	toLaunch []launchAction
	// changes names every job and task whose view changed, for the change
	// feed (jobs_feed.go); one per leadership, as its readers are.
	changes *legacyapi.ChangeLog
}

// feedLog is how many changes the feed keeps for a reader that is behind.
const feedLog = 1 << 16

func newJobTable() *jobTable {
	return &jobTable{
		jobs: map[string]*job{}, tasks: map[TaskID]*jobTask{},
		dirtyJobs: map[*job]struct{}{}, dirtyTasks: map[*jobTask]struct{}{},
		changes: legacyapi.NewChangeLog(feedLog),
	}
}

// jobChanged and taskChanged tell the change feed that a view changed.
func (tbl *jobTable) jobChanged(j *job) { tbl.changes.Add(legacyapi.ChangeKey{ID: j.id}) }

func (tbl *jobTable) taskChanged(jt *jobTask) {
	tbl.changes.Add(legacyapi.ChangeKey{Task: true, ID: string(jt.id)})
}

type job struct {
	id string
	// desc is shared with views and never changed in place: a new capacity
	// or enabled flag replaces desc.Service.
	desc    legacyapi.JobDescriptor
	spec    TaskSpec // what each task runs, from desc
	history []legacyapi.JobStatus
	tasks   []*jobTask // by creation
	// failStreak (service) counts tasks that failed since one last started:
	// the retry policy's delay for the next replacement.
	failStreak int
	stored     bool // its znode exists
	pruned     bool // gone from the job table (gc.go)
}

type jobTask struct {
	id         TaskID
	job        *job
	index      int // batch: task.index; service: -1
	resubmitOf TaskID
	// Where it was placed; empty while Accepted.
	agentID, agentHost, endpoint string
	history                      []legacyapi.TaskStatus
	exitCode                     *int32
	// attributes are the task's, as UpdateTask sets them; replaced, never
	// changed in place (views share the map).
	attributes map[string]string
	// attempt (batch) is which try of its index this task is, from 1: the
	// retry count survives the pruning of earlier tries (gc.go).
	attempt int
	// kill is why the job layer kills it (nil: it does not), decided at
	// killAt with the grace killGrace between SIGTERM and SIGKILL. All
	// three are stored with the task record (killStored once they are):
	// no signal is sent before, so a new leader knows every kill an
	// earlier one sent or acknowledged, and finishes it.
	kill       *reason
	killAt     time.Time
	killGrace  time.Duration
	killStored bool
	// termSent and killSent: when this leadership last sent SIGTERM and
	// SIGKILL (zero: not yet). Not stored: a new leader sends SIGTERM
	// again and SIGKILL a grace after that.
	termSent  time.Time
	killSent  time.Time
	notBefore time.Time // a retry waits out its delay
	started   time.Time // first Started, for the runtime limit
	stored    bool
	// endStored: the stored record says Finished, so the agent's exit
	// status is no longer needed and the container may be removed.
	// removed: REMOVE_CONTAINER succeeded (stored too). pruned: gone from
	// the job table; nothing may mark it dirty again.
	endStored bool
	removed   bool
	pruned    bool
}

type reason struct{ code, msg string }

// markDirtyLocked queues jt's record for the next flush, unless jt was
// pruned: a pruned record written again would outlive its job's znode.
func (tbl *jobTable) markDirtyLocked(jt *jobTask) {
	if !jt.pruned && !jt.job.pruned {
		tbl.dirtyTasks[jt] = struct{}{}
	}
}

// setKillLocked records that the job layer kills jt, and why. The signals
// wait until the record is stored (killStored, see killSignalsLocked).
// A task already being killed keeps its first reason.
func (m *Master) setKillLocked(jt *jobTask, code, msg string, now time.Time) {
	if jt.kill != nil || jt.ended() {
		return
	}
	jt.kill = &reason{code, msg}
	jt.killAt, jt.killGrace, jt.killStored = now, m.cfg.KillGrace, false
	m.jobs.markDirtyLocked(jt)
}

func millis(t time.Time) legacyapi.U64 { return legacyapi.U64(t.UnixMilli()) }

func (j *job) state() string { return j.history[len(j.history)-1].State }

func (j *job) batch() bool { return j.desc.Batch != nil }

func (jt *jobTask) status() legacyapi.TaskStatus { return jt.history[len(jt.history)-1] }

func (jt *jobTask) ended() bool { return jt.status().State == legacyapi.TaskFinished }

func (jt *jobTask) placed() bool { return jt.agentID != "" }

func (tbl *jobTable) add(j *job) {
	tbl.jobs[j.id] = j
	tbl.order = append(tbl.order, j)
	tbl.jobChanged(j)
	for _, jt := range j.tasks {
		tbl.tasks[jt.id] = jt
		tbl.taskChanged(jt)
	}
}

func (tbl *jobTable) setJobState(j *job, state, code, msg string, at time.Time) {
	j.history = append(j.history, legacyapi.JobStatus{State: state, ReasonCode: code, ReasonMessage: msg, Timestamp: millis(at)})
	tbl.dirtyJobs[j] = struct{}{}
	tbl.jobChanged(j)
}

// newJob is a job as CreateJob accepts it: Accepted, no tasks yet (the job
// loop makes them).
func newJob(d legacyapi.JobDescriptor, at time.Time) *job {
	return &job{
		id:      jobIDPrefix + newUUID(),
		desc:    d,
		spec:    taskSpecOf(d),
		history: []legacyapi.JobStatus{{State: legacyapi.JobAccepted, ReasonCode: reasonNormal, ReasonMessage: "job accepted", Timestamp: millis(at)}},
	}
}

// newTaskLocked adds an Accepted task to j. Its id is checked against
// every task this leadership knows: ids carry only 32 random bits.
func (m *Master) newTaskLocked(j *job, index int, resubmitOf TaskID, notBefore, at time.Time) *jobTask {
	id := newTaskID(j.spec.Name)
	for m.tasks[id] != nil || m.jobs.tasks[id] != nil {
		id = newTaskID(j.spec.Name)
	}
	msg := "waiting for an agent with room"
	if notBefore.After(at) {
		msg = fmt.Sprintf("retry held for %v by the retry policy", notBefore.Sub(at).Round(time.Millisecond))
	}
	jt := &jobTask{
		id: id, job: j, index: index, resubmitOf: resubmitOf, notBefore: notBefore,
		history: []legacyapi.TaskStatus{{State: legacyapi.TaskAccepted, ReasonCode: reasonNormal, ReasonMessage: msg, Timestamp: millis(at)}},
	}
	j.tasks = append(j.tasks, jt)
	m.jobs.tasks[id] = jt
	m.jobs.dirtyTasks[jt] = struct{}{}
	m.jobs.taskChanged(jt)
	return jt
}

// observeLocked shows a state change of the master task t to its job task.
func (m *Master) observeLocked(jt *jobTask, t *task, at time.Time) {
	if !jt.placed() {
		jt.agentID, jt.endpoint = t.AgentID, t.Endpoint
		if a := m.agents[t.AgentID]; a != nil {
			jt.agentHost = a.info.Hostname
		}
	}
	m.recordLocked(jt, t.State, t.Message, t.ExitCode, at)
}

// recordLocked appends the Titus status of a Mesos state to jt's history.
// The state and reason come from statemachine.TitusOfMesos; the job layer
// only rewrites the reason of a task it killed itself (killed,
// runtimeLimitExceeded, scaledDown) and words exits as "exited with code
// N". The record is stored when the task is created, placed or ended: the
// states between are re-learned from the agents after a failover.
func (m *Master) recordLocked(jt *jobTask, s mesos.TaskState, msg string, exit *int32, at time.Time) {
	if jt.ended() {
		return // Finished is final
	}
	ts, ok := statemachine.TitusOfMesos(s.String())
	if !ok {
		m.log.WithFields(logrus.Fields{"task": jt.id, "state": s.String()}).Warn("no Titus state for this Mesos state; ignored")
		return
	}
	st := legacyapi.TaskStatus{State: ts.State, ReasonCode: ts.Reason, ReasonMessage: msg, Timestamp: millis(at)}
	j := jt.job
	switch ts.State {
	case legacyapi.TaskStarted:
		if jt.started.IsZero() {
			jt.started = at
		}
		j.failStreak = 0
	case legacyapi.TaskFinished:
		if exit != nil {
			c := *exit
			jt.exitCode = &c
			if s == mesos.TASK_FINISHED || s == mesos.TASK_FAILED {
				st.ReasonMessage = fmt.Sprintf("exited with code %d", c)
			}
		}
		if jt.kill != nil {
			st.ReasonCode, st.ReasonMessage = jt.kill.code, jt.kill.msg+" ("+st.ReasonMessage+")"
		} else if st.ReasonCode != reasonNormal {
			j.failStreak++
		}
		m.kickJobs()
	}
	if ts.State == legacyapi.TaskLaunched || ts.State == legacyapi.TaskFinished {
		m.jobs.markDirtyLocked(jt)
	}
	jt.history = append(jt.history, st)
	m.jobs.taskChanged(jt)
}

func (j *job) view() legacyapi.Job {
	return legacyapi.Job{
		ID: j.id, JobDescriptor: j.desc,
		Status: j.history[len(j.history)-1], StatusHistory: slices.Clone(j.history),
	}
}

func (jt *jobTask) view() legacyapi.Task {
	ctx := map[string]string{legacyapi.ContextBackend: "legacy"}
	if jt.index >= 0 {
		ctx[legacyapi.ContextTaskIndex] = strconv.Itoa(jt.index)
	}
	if jt.resubmitOf != "" {
		ctx[legacyapi.ContextResubmitOf] = string(jt.resubmitOf)
	}
	if jt.placed() {
		ctx[legacyapi.ContextAgentID] = jt.agentID
		ctx[legacyapi.ContextAgentHost] = jt.agentHost
	}
	if jt.exitCode != nil {
		ctx[legacyapi.ContextExitCode] = strconv.Itoa(int(*jt.exitCode))
	}
	return legacyapi.Task{
		ID: string(jt.id), JobID: jt.job.id, TaskContext: ctx,
		Status: jt.status(), StatusHistory: slices.Clone(jt.history), Attributes: jt.attributes,
	}
}

// pageView is the little of a task that filtering and paging read; whole
// views are built for the page only.
func (jt *jobTask) pageView() legacyapi.Task {
	return legacyapi.Task{ID: string(jt.id), JobID: jt.job.id, Status: jt.status(), StatusHistory: jt.history[:1]}
}
