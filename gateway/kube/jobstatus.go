package kube

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// Titus reason codes this backend gives.
const (
	reasonNormal       = "normal"
	reasonFailed       = "failed"
	reasonKilled       = "killed"
	reasonScaledDown   = "scaledDown"
	reasonRuntimeLimit = "runtimeLimitExceeded"
)

// jobHistory: Accepted when the gateway took the job, KillInitiated when
// it was killed, Finished when Kubernetes says the Job ended or, once
// killed, when its last pod has gone.
func (b *Backend) jobHistory(o jobObject) []legacyapi.JobStatus {
	accepted, ok := annotationTime(o.meta.Annotations, AnnotationAcceptedAt)
	if !ok {
		accepted = o.meta.CreationTimestamp.Time
	}
	h := []legacyapi.JobStatus{{State: legacyapi.JobAccepted, Timestamp: millis(accepted)}}
	add := func(s legacyapi.JobStatus) {
		s.Timestamp = max(s.Timestamp, h[len(h)-1].Timestamp) // seconds-precision conditions
		h = append(h, s)
	}
	killedAt, killed := annotationTime(o.meta.Annotations, AnnotationKilledAt)
	if killed {
		add(legacyapi.JobStatus{State: legacyapi.JobKillInitiated, ReasonCode: reasonKilled,
			ReasonMessage: "killed through the job API", Timestamp: millis(killedAt)})
	}
	switch end, ended := batchEnd(o.batch, killed); {
	case ended:
		add(end)
	case killed && !b.hasLiveTasks(o.id):
		add(legacyapi.JobStatus{State: legacyapi.JobFinished, ReasonCode: reasonKilled,
			ReasonMessage: "every task has ended after the kill", Timestamp: max(millis(killedAt), b.finished.lastEnd(o.id))})
	}
	return h
}

// batchEnd reads the Job's terminal condition.
func batchEnd(j *batchv1.Job, killed bool) (legacyapi.JobStatus, bool) {
	if j == nil {
		return legacyapi.JobStatus{}, false
	}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		st := legacyapi.JobStatus{State: legacyapi.JobFinished, ReasonMessage: c.Message, Timestamp: millis(c.LastTransitionTime.Time)}
		switch {
		case c.Type == batchv1.JobComplete:
			st.ReasonCode = reasonNormal
		case c.Type == batchv1.JobFailed && killed:
			st.ReasonCode = reasonKilled
		case c.Type == batchv1.JobFailed:
			st.ReasonCode = reasonFailed
		default:
			continue
		}
		return st, true
	}
	return legacyapi.JobStatus{}, false
}

// jobFinished tells whether a job has ended, for calls that a finished job
// makes pointless.
func (b *Backend) jobFinished(o jobObject) bool {
	h := b.jobHistory(o)
	return h[len(h)-1].State == legacyapi.JobFinished
}

// hasLiveTasks tells whether any pod of the job has not ended yet.
func (b *Backend) hasLiveTasks(jobID string) bool {
	pods, _ := b.pods.GetIndexer().ByIndex(byJobID, jobID)
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok && !podEnded(pod) {
			return true
		}
	}
	return false
}

func podEnded(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// deadlineExceeded tells whether Kubernetes ended the Job for running past
// runtimeLimitSec.
func deadlineExceeded(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Reason == batchv1.JobReasonDeadlineExceeded {
			return true
		}
	}
	return false
}
