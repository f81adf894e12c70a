package master

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// jobStore keeps the job records in ZooKeeper, where a new leader reads
// them back (Titus keeps its jobs in a store of its own, not in Mesos):
//
//	<root>/<job id>            jobRecord: the descriptor (current capacity
//	                           and enabled flag included), the job's statuses
//	<root>/<job id>/<task id>  taskRecord: index, attempt, resubmitOf,
//	                           placement, the statuses so far, the exit
//	                           code, the kill (reason, time, grace) when the
//	                           job layer kills it, containerRemoved once the
//	                           agent freed the container, the attributes
//
// A batch index's retry count is the attempt of its latest task record
// (older records counted by position: tries may be pruned, gc.go). A job
// record is written on every change of the job; a task record when the
// task is created, placed (before it is launched), ordered killed (before
// any signal is sent or the kill is acknowledged), ended and removed, and
// when its attributes change, not on the states in between, which a new
// leader learns from the agents.
// Pruning (gc.go) deletes a task's znode, or a job's with all its
// children, in the same fenced multi-ops.
//
// Every write is a multi-op that first checks this master's election
// znode: a master whose winning session is gone writes nothing.
type jobStore struct {
	root  string
	fence func() (*zk.Conn, string, error)
	log   logrus.FieldLogger
}

// errDeposed: the election znode is gone, so this master may no longer lead.
var errDeposed = errors.New("this master's election znode is gone")

type jobRecord struct {
	ID            string                  `json:"id"`
	Descriptor    legacyapi.JobDescriptor `json:"descriptor"`
	StatusHistory []legacyapi.JobStatus   `json:"statusHistory"`
}

type taskRecord struct {
	ID            TaskID                 `json:"id"`
	Index         int                    `json:"index"` // -1: a service task
	ResubmitOf    TaskID                 `json:"resubmitOf,omitempty"`
	AgentID       string                 `json:"agentId,omitempty"`
	AgentHost     string                 `json:"agentHost,omitempty"`
	Endpoint      string                 `json:"endpoint,omitempty"`
	NotBefore     legacyapi.U64          `json:"notBefore,omitempty"` // ms
	ExitCode      *int32                 `json:"exitCode,omitempty"`
	StatusHistory []legacyapi.TaskStatus `json:"statusHistory"`
	// Attempt (batch): 1 for an index's first task, n for its n-th.
	Attempt int `json:"attempt,omitempty"`
	// Kill: the job layer kills this task; a new leader finishes the kill.
	Kill *killRecord `json:"kill,omitempty"`
	// ContainerRemoved: REMOVE_CONTAINER succeeded (or found nothing).
	ContainerRemoved bool `json:"containerRemoved,omitempty"`
	// Attributes: the task's, set through the job API.
	Attributes map[string]string `json:"attributes,omitempty"`
}

type killRecord struct {
	ReasonCode    string        `json:"reasonCode"`
	ReasonMessage string        `json:"reasonMessage"`
	At            legacyapi.U64 `json:"at"`      // ms
	GraceMs       legacyapi.U64 `json:"graceMs"` // SIGTERM to SIGKILL
}

func (j *job) record() jobRecord {
	return jobRecord{ID: j.id, Descriptor: j.desc, StatusHistory: j.history}
}

func (jt *jobTask) record() taskRecord {
	r := taskRecord{
		ID: jt.id, Index: jt.index, ResubmitOf: jt.resubmitOf, AgentID: jt.agentID, AgentHost: jt.agentHost,
		Endpoint: jt.endpoint, ExitCode: jt.exitCode, StatusHistory: jt.history,
		Attempt: jt.attempt, ContainerRemoved: jt.removed, Attributes: jt.attributes,
	}
	if jt.kill != nil {
		r.Kill = &killRecord{ReasonCode: jt.kill.code, ReasonMessage: jt.kill.msg, At: millis(jt.killAt), GraceMs: legacyapi.U64(jt.killGrace.Milliseconds())}
	}
	if !jt.notBefore.IsZero() {
		r.NotBefore = millis(jt.notBefore)
	}
	return r
}

// storedJob is a job as load reads it.
type storedJob struct {
	rec   jobRecord
	tasks []taskRecord
}

// job rebuilds the job. Tasks come in creation order (their first status),
// which the batch index bookkeeping relies on; a running task's runtime
// counts from its last recorded placement or start.
func (sj storedJob) job() *job {
	j := &job{id: sj.rec.ID, desc: sj.rec.Descriptor, spec: taskSpecOf(sj.rec.Descriptor), history: sj.rec.StatusHistory, stored: true}
	for _, r := range sj.tasks {
		jt := &jobTask{
			id: r.ID, job: j, index: r.Index, resubmitOf: r.ResubmitOf, agentID: r.AgentID, agentHost: r.AgentHost,
			endpoint: r.Endpoint, exitCode: r.ExitCode, history: r.StatusHistory, stored: true,
			attempt: r.Attempt, removed: r.ContainerRemoved, attributes: r.Attributes,
		}
		jt.endStored = jt.ended()
		if k := r.Kill; k != nil {
			jt.kill = &reason{k.ReasonCode, k.ReasonMessage}
			jt.killAt, jt.killGrace, jt.killStored = time.UnixMilli(int64(k.At)), time.Duration(k.GraceMs)*time.Millisecond, true
		}
		if r.NotBefore > 0 {
			jt.notBefore = time.UnixMilli(int64(r.NotBefore))
		}
		for _, st := range r.StatusHistory {
			if st.State == legacyapi.TaskLaunched || st.State == legacyapi.TaskStarted {
				jt.started = time.UnixMilli(int64(st.Timestamp))
			}
		}
		j.tasks = append(j.tasks, jt)
	}
	return j
}

func (s *jobStore) jobPath(id string) string { return s.root + "/" + id }

func (s *jobStore) taskPath(jt *jobTask) string { return s.jobPath(jt.job.id) + "/" + string(jt.id) }

// znodeWrite is one record to write: created if it was never stored, else
// set; or, with del, a znode to delete (one found missing is dropped).
type znodeWrite struct {
	path   string
	data   []byte
	create bool
	del    bool
}

// Multi-op batches stay well below ZooKeeper's 1 MiB request limit.
const (
	maxBatchOps   = 100
	maxBatchBytes = 512 << 10
)

// write stores ws in order (a job's record before its tasks'), batched.
func (s *jobStore) write(ws []znodeWrite) error {
	if len(ws) == 0 {
		return nil
	}
	conn, node, err := s.fence()
	if err != nil {
		return fmt.Errorf("job store %s: %w", s.root, err)
	}
	for len(ws) > 0 {
		n, size := 0, 0
		for n < len(ws) && n < maxBatchOps && (n == 0 || size+len(ws[n].data) <= maxBatchBytes) {
			size += len(ws[n].data)
			n++
		}
		if err := s.multi(conn, node, ws[:n]); err != nil {
			return err
		}
		ws = ws[n:]
	}
	return nil
}

// multi writes one batch behind the fence. A create that finds its znode
// (a write whose answer was lost) becomes a set, a set that finds none a
// create, a delete that finds none is dropped, and the batch is tried
// again.
func (s *jobStore) multi(conn *zk.Conn, node string, ws []znodeWrite) error {
	for attempt := 0; ; attempt++ {
		ops := make([]any, 0, len(ws)+1)
		ops = append(ops, &zk.CheckVersionRequest{Path: node, Version: -1})
		for _, w := range ws {
			if w.del {
				ops = append(ops, &zk.DeleteRequest{Path: w.path, Version: -1})
				continue
			}
			if w.create {
				ops = append(ops, &zk.CreateRequest{Path: w.path, Data: w.data, Acl: zk.WorldACL(zk.PermAll)})
			} else {
				ops = append(ops, &zk.SetDataRequest{Path: w.path, Data: w.data, Version: -1})
			}
		}
		res, err := conn.Multi(ops...)
		if err == nil {
			return nil
		}
		if len(res) > 0 && res[0].Error == zk.ErrNoNode {
			return fmt.Errorf("job store %s: %w", s.root, errDeposed)
		}
		flipped := false
		for i := 1; i < len(res) && i <= len(ws); i++ {
			w := &ws[i-1]
			switch {
			case w.del && res[i].Error == zk.ErrNoNode:
				w.path = "" // already gone: dropped below
				flipped = true
			case w.del:
			case (w.create && res[i].Error == zk.ErrNodeExists) || (!w.create && res[i].Error == zk.ErrNoNode):
				w.create = !w.create
				flipped = true
			}
		}
		ws = slices.DeleteFunc(ws, func(w znodeWrite) bool { return w.del && w.path == "" })
		if len(ws) == 0 {
			return nil
		}
		// A multi reports its first failing op only: one retry per op at most.
		if !flipped || attempt > len(ws)+1 {
			return fmt.Errorf("job store %s: writing %d records from %s: %w", s.root, len(ws), ws[0].path, err)
		}
	}
}

// load reads every job record. A record that does not decode is skipped
// with a warning rather than keeping the job API down.
func (s *jobStore) load() ([]storedJob, error) {
	conn, _, err := s.fence()
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", s.root, err)
	}
	if err := discovery.EnsurePath(conn, s.root); err != nil {
		return nil, fmt.Errorf("job store %s: creating it: %w", s.root, err)
	}
	ids, _, err := conn.Children(s.root)
	if err != nil {
		return nil, fmt.Errorf("job store %s: listing jobs: %w", s.root, err)
	}
	type loaded struct {
		sj       storedJob
		children []string
		ok       bool
		err      error
	}
	jobs := make([]loaded, len(ids))
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	parallel(jobsParallel, idx, func(i int) {
		p := s.root + "/" + ids[i]
		data, _, err := conn.Get(p)
		if err == nil {
			jobs[i].children, _, err = conn.Children(p)
		}
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err != nil:
			jobs[i].err = fmt.Errorf("job store: reading %s: %w", p, err)
		default:
			jobs[i].ok = s.decode(p, data, &jobs[i].sj.rec) && len(jobs[i].sj.rec.StatusHistory) > 0
		}
	})
	type taskRef struct{ job, child int }
	var refs []taskRef
	for i, l := range jobs {
		if l.err != nil {
			return nil, l.err
		}
		if l.ok {
			jobs[i].sj.tasks = make([]taskRecord, len(l.children))
			for c := range l.children {
				refs = append(refs, taskRef{i, c})
			}
		}
	}
	okTask := make(map[taskRef]bool, len(refs))
	var mu sync.Mutex
	var firstErr error
	parallel(jobsParallel, refs, func(r taskRef) {
		p := s.root + "/" + ids[r.job] + "/" + jobs[r.job].children[r.child]
		data, _, err := conn.Get(p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return
		case err != nil:
			mu.Lock()
			firstErr = cmp.Or(firstErr, fmt.Errorf("job store: reading %s: %w", p, err))
			mu.Unlock()
			return
		}
		rec := &jobs[r.job].sj.tasks[r.child]
		ok := s.decode(p, data, rec) && len(rec.StatusHistory) > 0
		mu.Lock()
		okTask[r] = ok
		mu.Unlock()
	})
	if firstErr != nil {
		return nil, firstErr
	}
	out := make([]storedJob, 0, len(jobs))
	for i, l := range jobs {
		if !l.ok {
			continue
		}
		sj := storedJob{rec: l.sj.rec}
		for c, rec := range l.sj.tasks {
			if okTask[taskRef{i, c}] {
				sj.tasks = append(sj.tasks, rec)
			}
		}
		slices.SortFunc(sj.tasks, func(a, b taskRecord) int {
			return cmp.Or(cmp.Compare(a.StatusHistory[0].Timestamp, b.StatusHistory[0].Timestamp), cmp.Compare(a.ID, b.ID))
		})
		out = append(out, sj)
	}
	slices.SortFunc(out, func(a, b storedJob) int {
		return cmp.Or(cmp.Compare(a.rec.StatusHistory[0].Timestamp, b.rec.StatusHistory[0].Timestamp), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	return out, nil
}

func (s *jobStore) decode(p string, data []byte, into any) bool {
	if err := json.Unmarshal(data, into); err != nil {
		s.log.WithError(err).WithField("znode", p).Warn("job record does not decode; skipped")
		return false
	}
	return true
}

// flushJobs writes the records changed since the last flush. Writes are
// serialized (storeMu) and each takes its records under the lock, so
// records land in the order they changed. What fails to write stays dirty
// for the next flush.
func (m *Master) flushJobs() error {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.Lock()
	tbl := m.jobs
	if tbl == nil || (len(tbl.dirtyJobs) == 0 && len(tbl.dirtyTasks) == 0) {
		m.mu.Unlock()
		return nil
	}
	jobs, tasks := tbl.dirtyJobs, tbl.dirtyTasks
	tbl.dirtyJobs, tbl.dirtyTasks = map[*job]struct{}{}, map[*jobTask]struct{}{}
	// What each task record says as written: only that counts as stored.
	written := make(map[*jobTask]taskFacts, len(tasks))
	for jt := range tasks {
		written[jt] = taskFacts{killed: jt.kill != nil, ended: jt.ended()}
	}
	if m.store == nil { // standalone: memory is the record
		for jt, f := range written {
			m.storedLocked(jt, f)
		}
		m.mu.Unlock()
		return nil
	}
	ws := make([]znodeWrite, 0, len(jobs)+len(tasks))
	for j := range jobs {
		ws = append(ws, m.store.jobWrite(j))
	}
	for jt := range tasks {
		ws = append(ws, m.store.taskWrite(jt))
	}
	m.mu.Unlock()

	err := m.store.write(ws)

	m.mu.Lock()
	defer m.mu.Unlock()
	for j := range jobs {
		if err != nil {
			tbl.dirtyJobs[j] = struct{}{}
		} else {
			j.stored = true
		}
	}
	for jt, f := range written {
		if err != nil {
			tbl.markDirtyLocked(jt)
		} else {
			jt.stored = true
			m.storedLocked(jt, f)
		}
	}
	return err
}

// taskFacts is what a task record said when it was taken for writing.
type taskFacts struct{ killed, ended bool }

// storedLocked notes what a written task record holds: its kill may now
// be signalled, and once its end is stored its container may be removed.
func (m *Master) storedLocked(jt *jobTask, f taskFacts) {
	if f.killed {
		jt.killStored = true
	}
	if f.ended && !jt.endStored {
		jt.endStored = true
		m.queueRemovalLocked(jt)
	}
}

func (s *jobStore) jobWrite(j *job) znodeWrite {
	data, _ := json.Marshal(j.record()) // plain data: cannot fail
	return znodeWrite{path: s.jobPath(j.id), data: data, create: !j.stored}
}

func (s *jobStore) taskWrite(jt *jobTask) znodeWrite {
	data, _ := json.Marshal(jt.record())
	return znodeWrite{path: s.taskPath(jt), data: data, create: !jt.stored}
}
