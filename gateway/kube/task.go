package kube

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// taskEntry is a task with what queries need beside it.
type taskEntry struct {
	task legacyapi.Task
	// retry is how many earlier pods of its completion index failed
	// (batch): it orders the tries of one index, whose creation times
	// have only seconds.
	retry int
}

// taskOf reads a task from its pod. It is pure: the same pod, the same task.
func taskOf(pod *corev1.Pod) taskEntry {
	ctx := map[string]string{
		legacyapi.ContextBackend: "kube",
		legacyapi.ContextPod:     pod.Namespace + "/" + pod.Name,
	}
	if node := pod.Spec.NodeName; node != "" {
		ctx[legacyapi.ContextNode] = node
		ctx[legacyapi.ContextAgentHost] = node
		ctx[legacyapi.ContextAgentID] = node
	}
	if idx, ok := pod.Annotations[batchv1.JobCompletionIndexAnnotation]; ok {
		ctx[legacyapi.ContextTaskIndex] = idx
	}
	retry, _ := strconv.Atoi(pod.Annotations[batchv1.JobIndexFailureCountAnnotation])

	main := mainStatus(pod)
	now := titusState(pod, main)
	cur := legacyapi.TaskStatus{State: now.State, ReasonCode: now.Reason}
	if term := terminated(main); term != nil && now.State == legacyapi.TaskFinished {
		cur.ReasonMessage = fmt.Sprintf("exited with code %d", term.ExitCode)
		ctx[legacyapi.ContextExitCode] = strconv.Itoa(int(term.ExitCode))
	}
	history := taskHistory(pod, main, cur)
	return taskEntry{
		task: legacyapi.Task{
			ID:            legacyapi.KubePrefix + string(pod.UID),
			JobID:         pod.Labels[LabelJobID],
			TaskContext:   ctx,
			Status:        history[len(history)-1],
			StatusHistory: history,
			Attributes:    taskAttributes(pod),
		},
		retry: retry,
	}
}

// taskAttributes reads the attributes UpdateTask keeps in an annotation;
// one that does not decode reads as none (the job API wrote it, so only a
// hand edit can damage it).
func taskAttributes(pod *corev1.Pod) map[string]string {
	text, ok := pod.Annotations[AnnotationTaskAttributes]
	if !ok {
		return nil
	}
	var attrs map[string]string
	if json.Unmarshal([]byte(text), &attrs) != nil || len(attrs) == 0 {
		return nil
	}
	return attrs
}

// titusState is the provider's word (the state machine's state of the
// main container) where it has spoken, else what the pod shows. A pod
// being deleted is KillInitiated until it ends, and one that ended after
// its deletion began was killed, whatever its exit code.
func titusState(pod *corev1.Pod, main *corev1.ContainerStatus) statemachine.TitusState {
	var ts statemachine.TitusState
	if s := statemachine.State(pod.Annotations[translate.AnnotationState]); statemachine.InfoOf(s).Titus != "" {
		ts = statemachine.TitusOf(s)
	}
	switch {
	case ts.State == legacyapi.TaskFinished:
	// The pod can end without the provider (evicted, node lost): the
	// phase is final, a state published before it is not.
	case pod.Status.Phase == corev1.PodSucceeded:
		ts = statemachine.TitusState{State: legacyapi.TaskFinished, Reason: reasonNormal}
	case pod.Status.Phase == corev1.PodFailed:
		ts = statemachine.TitusState{State: legacyapi.TaskFinished, Reason: reasonFailed}
	case ts.State != "":
	case pod.Spec.NodeName == "":
		ts.State = legacyapi.TaskAccepted
	default:
		ts.State = legacyapi.TaskLaunched
	}
	switch {
	case !deletedBeforeEnd(pod, main):
	case ts.State != legacyapi.TaskFinished:
		ts = statemachine.TitusState{State: legacyapi.TaskKillInitiated}
	case ts.Reason == reasonNormal || ts.Reason == reasonFailed:
		ts.Reason = reasonKilled
	}
	return ts
}

// deletedBeforeEnd tells whether the pod's deletion began before its main
// container ended, if it has: cleaning up a finished pod kills nothing.
func deletedBeforeEnd(pod *corev1.Pod, main *corev1.ContainerStatus) bool {
	if pod.DeletionTimestamp == nil {
		return false
	}
	t := terminated(main)
	return t == nil || !t.FinishedAt.Before(pod.DeletionTimestamp)
}

// mainStatus is the status of the task's container: "main" in pods this
// backend made, the first one otherwise.
func mainStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	st := pod.Status.ContainerStatuses
	for i := range st {
		if st[i].Name == MainContainer {
			return &st[i]
		}
	}
	if len(st) > 0 {
		return &st[0]
	}
	return nil
}

func terminated(c *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if c == nil {
		return nil
	}
	return c.State.Terminated
}

// taskHistory lays the pod's timestamps out as Titus states, in lifecycle
// order, up to the current state cur; a state reached with no timestamp of
// its own (StartInitiated, Disconnected) takes the latest one before it.
func taskHistory(pod *corev1.Pod, main *corev1.ContainerStatus, cur legacyapi.TaskStatus) []legacyapi.TaskStatus {
	at := map[string]time.Time{legacyapi.TaskAccepted: pod.CreationTimestamp.Time}
	if pod.Spec.NodeName != "" {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
				at[legacyapi.TaskLaunched] = c.LastTransitionTime.Time
			}
		}
	}
	if main != nil {
		if r := main.State.Running; r != nil {
			at[legacyapi.TaskStarted] = r.StartedAt.Time
		}
		if t := main.State.Terminated; t != nil {
			at[legacyapi.TaskStarted] = t.StartedAt.Time
			at[legacyapi.TaskFinished] = t.FinishedAt.Time
		}
	}
	if deletedBeforeEnd(pod, main) {
		at[legacyapi.TaskKillInitiated] = pod.DeletionTimestamp.Time
	}

	states := statemachine.TitusStates()
	last := slices.Index(states, cur.State)
	var h []legacyapi.TaskStatus
	var prev legacyapi.U64
	for i, s := range states[:last+1] {
		t, ok := at[s]
		if (!ok || t.IsZero()) && i != last && s != legacyapi.TaskAccepted {
			continue
		}
		st := legacyapi.TaskStatus{State: s, Timestamp: max(millis(t), prev)}
		if i == last {
			st.ReasonCode, st.ReasonMessage = cur.ReasonCode, cur.ReasonMessage
		}
		h = append(h, st)
		prev = st.Timestamp
	}
	return h
}

// ended is the task's last record once its pod is gone: Finished, for
// reason, if the pod had not ended before.
func (e taskEntry) ended(reason string, at time.Time) taskEntry {
	if e.task.Status.State == legacyapi.TaskFinished {
		return e
	}
	last := e.task.StatusHistory[len(e.task.StatusHistory)-1].Timestamp
	st := legacyapi.TaskStatus{State: legacyapi.TaskFinished, ReasonCode: reason,
		ReasonMessage: "its pod was deleted", Timestamp: max(millis(at), last)}
	e.task.StatusHistory = append(slices.Clip(e.task.StatusHistory), st)
	e.task.Status = st
	return e
}
