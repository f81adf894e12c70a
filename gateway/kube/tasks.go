package kube

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// GetTask answers from the cache, then from the memory of deleted pods.
func (b *Backend) GetTask(ctx context.Context, id string) (legacyapi.Task, error) {
	e, ok := b.taskByID(id)
	if !ok {
		return legacyapi.Task{}, legacyapi.NotFound("task", id)
	}
	index, indexed := e.task.TaskContext[legacyapi.ContextTaskIndex]
	if !indexed {
		return e.task, nil
	}
	// Its earlier tries are the other tasks of its index.
	tries := b.collect([]string{e.task.JobID}, index)
	linkRetries(tries)
	for _, t := range tries {
		if t.task.ID == id {
			return t.task, nil
		}
	}
	return e.task, nil
}

// FindTasks filters and pages the cached and remembered tasks.
func (b *Backend) FindTasks(ctx context.Context, q legacyapi.TaskQuery) (legacyapi.TaskQueryResult, error) {
	jobIDs := q.JobIDs
	if len(jobIDs) == 0 && len(q.TaskIDs) > 0 {
		// Whole jobs, so that each task's earlier tries are there to link.
		for _, id := range q.TaskIDs {
			if e, ok := b.taskByID(id); ok && !slices.Contains(jobIDs, e.task.JobID) {
				jobIDs = append(jobIDs, e.task.JobID)
			}
		}
		if len(jobIDs) == 0 {
			items, page, err := legacyapi.Paginate([]legacyapi.Task{}, legacyapi.TaskKey, q.Page)
			return legacyapi.TaskQueryResult{Items: items, Pagination: page}, err
		}
	}
	entries := b.collect(jobIDs, "")
	linkRetries(entries)
	tasks := make([]legacyapi.Task, 0, len(entries))
	jobs := map[string]legacyapi.Job{} // read once per job, and only if the criteria need them
	for _, e := range entries {
		var j legacyapi.Job
		if q.HasJobFieldCriteria() {
			var ok bool
			if j, ok = jobs[e.task.JobID]; !ok {
				j, _ = b.GetJob(ctx, e.task.JobID) // a job gone matches no job criteria
				jobs[e.task.JobID] = j
			}
		}
		if legacyapi.MatchTask(q.Criteria, e.task, j) {
			tasks = append(tasks, e.task)
		}
	}
	items, page, err := legacyapi.Paginate(tasks, legacyapi.TaskKey, q.Page)
	return legacyapi.TaskQueryResult{Items: items, Pagination: page}, err
}

func (b *Backend) taskByID(id string) (taskEntry, bool) {
	if pod := b.podByTaskID(id); pod != nil {
		return b.tasks.of(pod), true
	}
	return b.finished.get(id)
}

func (b *Backend) podByTaskID(id string) *corev1.Pod {
	uid, ok := strings.CutPrefix(id, legacyapi.KubePrefix)
	if !ok || uid == "" {
		return nil
	}
	objs, _ := b.pods.GetIndexer().ByIndex(byUID, uid)
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			return pod
		}
	}
	return nil
}

// collect builds the tasks of jobIDs (all jobs when empty), of one
// completion index when index is set: live pods, then the remembered
// tasks whose pods are gone.
func (b *Backend) collect(jobIDs []string, index string) []taskEntry {
	var pods []any
	if len(jobIDs) == 0 {
		pods = b.pods.GetIndexer().List()
	} else {
		for _, id := range jobIDs {
			objs, _ := b.pods.GetIndexer().ByIndex(byJobID, id)
			pods = append(pods, objs...)
		}
	}
	gone := b.finished.list(jobIDs)
	out := make([]taskEntry, 0, len(pods)+len(gone))
	for _, obj := range pods {
		// The informers list by the job id label: every pod has one.
		pod, ok := obj.(*corev1.Pod)
		if !ok || (index != "" && pod.Annotations[batchv1.JobCompletionIndexAnnotation] != index) {
			continue
		}
		out = append(out, b.tasks.of(pod))
	}
	for _, e := range gone {
		// A pod deleted and seen again by a relist is both: it is live.
		if (index == "" || e.task.TaskContext[legacyapi.ContextTaskIndex] == index) && b.podByTaskID(e.task.ID) == nil {
			out = append(out, e)
		}
	}
	return out
}

// linkRetries sets task.resubmitOf on every retry of a completion index to
// the try before it.
func linkRetries(entries []taskEntry) {
	tries := map[[2]string][]int{}
	for i, e := range entries {
		if idx, ok := e.task.TaskContext[legacyapi.ContextTaskIndex]; ok {
			k := [2]string{e.task.JobID, idx}
			tries[k] = append(tries[k], i)
		}
	}
	for _, is := range tries {
		if len(is) < 2 {
			continue
		}
		slices.SortFunc(is, func(a, b int) int {
			if d := entries[a].retry - entries[b].retry; d != 0 {
				return d
			}
			if legacyapi.TaskKey(entries[a].task).Less(legacyapi.TaskKey(entries[b].task)) {
				return -1
			}
			return 1
		})
		for n, i := range is[1:] {
			// Entries share their maps with the memos: write a copy.
			ctx := maps.Clone(entries[i].task.TaskContext)
			ctx[legacyapi.ContextResubmitOf] = entries[is[n]].task.ID
			entries[i].task.TaskContext = ctx
		}
	}
}

// podDeleted remembers the pod's task, which ends now if it had not: it
// was killed, or scaled down when its service job shrank on its own.
func (b *Backend) podDeleted(pod *corev1.Pod) {
	b.tasks.forget(pod.UID)
	e := taskOf(pod)
	ours := b.killing.take(e.task.ID)
	if e.task.Status.State != legacyapi.TaskFinished {
		e = e.ended(b.deletionReason(e.task.JobID, ours), time.Now())
	}
	b.finished.add(e)
	b.log.WithFields(logrus.Fields{"task": e.task.ID, "pod": pod.Name, "reason": e.task.Status.ReasonCode}).Debug("pod gone; task remembered")
}

func (b *Backend) deletionReason(jobID string, ours bool) string {
	o, ok := b.lookupJob(jobID)
	switch {
	case ours || !ok:
		return reasonKilled
	case o.meta.Annotations[AnnotationKilledAt] != "":
		return reasonKilled
	case o.service != nil:
		return reasonScaledDown
	case deadlineExceeded(o.batch):
		return reasonRuntimeLimit
	}
	return reasonKilled
}
