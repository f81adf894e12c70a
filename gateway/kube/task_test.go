package kube

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/translate"
)

func TestTaskOf(t *testing.T) {
	base := func(opts ...func(*corev1.Pod)) *corev1.Pod {
		pod := &corev1.Pod{}
		pod.Namespace, pod.Name, pod.UID = testNS, "p", "u1"
		pod.Labels = map[string]string{LabelJobID: "kube-job"}
		pod.Annotations = map[string]string{LabelApplication: "app"}
		pod.CreationTimestamp = at(0)
		pod.Status.Phase = corev1.PodPending
		for _, opt := range opts {
			opt(pod)
		}
		return pod
	}
	state := func(s string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations[translate.AnnotationState] = s }
	}
	phase := func(ph corev1.PodPhase) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Status.Phase = ph } }
	type status struct {
		State, Reason string
		History       []string
		Times         []legacyapi.U64
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want status
		exit string
	}{
		{"not bound", base(),
			status{"Accepted", "", []string{"Accepted"}, []legacyapi.U64{ms(0)}}, ""},
		{"bound, no state", base(scheduled("n1", 1)),
			status{"Launched", "", []string{"Accepted", "Launched"}, []legacyapi.U64{ms(0), ms(1)}}, ""},
		{"starting", base(scheduled("n1", 1), state("starting")),
			status{"StartInitiated", "", []string{"Accepted", "Launched", "StartInitiated"}, []legacyapi.U64{ms(0), ms(1), ms(1)}}, ""},
		{"running", base(scheduled("n1", 1), running(3)),
			status{"Started", "", []string{"Accepted", "Launched", "Started"}, []legacyapi.U64{ms(0), ms(1), ms(3)}}, ""},
		{"unknown state word", base(scheduled("n1", 1), state("bogus")),
			status{"Launched", "", []string{"Accepted", "Launched"}, []legacyapi.U64{ms(0), ms(1)}}, ""},
		{"disconnected", base(scheduled("n1", 1), running(3), state("disconnected")),
			status{"Disconnected", "", []string{"Accepted", "Launched", "Started", "Disconnected"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(3)}}, ""},
		{"succeeded, provider silent", base(scheduled("n1", 1), exited("", 0, 3, 9)),
			status{"Finished", "normal", []string{"Accepted", "Launched", "Started", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(9)}}, "0"},
		{"failed", base(scheduled("n1", 1), exited("failed", 3, 3, 9)),
			status{"Finished", "failed", []string{"Accepted", "Launched", "Started", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(9)}}, "3"},
		{"phase failed beats a stale running", base(scheduled("n1", 1), running(3), phase(corev1.PodFailed)),
			status{"Finished", "failed", []string{"Accepted", "Launched", "Started", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(3)}}, ""},
		{"deleting while running", base(scheduled("n1", 1), running(3), deleting(5)),
			status{"KillInitiated", "", []string{"Accepted", "Launched", "Started", "KillInitiated"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(5)}}, ""},
		{"killed", base(scheduled("n1", 1), deleting(5), exited("killed", 143, 3, 7)),
			status{"Finished", "killed", []string{"Accepted", "Launched", "Started", "KillInitiated", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(5), ms(7)}}, "143"},
		{"ended after deletion, provider silent", base(scheduled("n1", 1), deleting(5), exited("", 0, 3, 6)),
			status{"Finished", "killed", []string{"Accepted", "Launched", "Started", "KillInitiated", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(5), ms(6)}}, "0"},
		{"cleaned up after it succeeded", base(scheduled("n1", 1), exited("succeeded", 0, 3, 6), deleting(8)),
			status{"Finished", "normal", []string{"Accepted", "Launched", "Started", "Finished"}, []legacyapi.U64{ms(0), ms(1), ms(3), ms(6)}}, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := taskOf(tc.pod)
			task := e.task
			got := status{task.Status.State, task.Status.ReasonCode, states(task.StatusHistory), nil}
			for _, s := range task.StatusHistory {
				got.Times = append(got.Times, s.Timestamp)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if task.Status != task.StatusHistory[len(task.StatusHistory)-1] {
				t.Errorf("status %+v is not the last of the history", task.Status)
			}
			if code, ok := task.TaskContext[legacyapi.ContextExitCode]; code != tc.exit || ok != (tc.exit != "") {
				t.Errorf("exit code %q, want %q", code, tc.exit)
			}
			if tc.exit != "" && task.Status.ReasonMessage != "exited with code "+tc.exit {
				t.Errorf("reason message %q", task.Status.ReasonMessage)
			}
			if task.ID != "kube-u1" || task.JobID != "kube-job" {
				t.Errorf("ids %s %s", task.ID, task.JobID)
			}
		})
	}
}

func TestTaskContext(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name, pod.UID = testNS, "p-0", "u"
	pod.Labels = map[string]string{LabelJobID: "kube-j"}
	pod.Annotations = map[string]string{}
	withIndex("4", "")(pod)
	scheduled("agent-7", 1)(pod)
	want := map[string]string{
		legacyapi.ContextBackend: "kube", legacyapi.ContextPod: testNS + "/p-0", legacyapi.ContextNode: "agent-7",
		legacyapi.ContextAgentHost: "agent-7", legacyapi.ContextAgentID: "agent-7", legacyapi.ContextTaskIndex: "4",
	}
	if got := taskOf(pod).task.TaskContext; !reflect.DeepEqual(got, want) {
		t.Errorf("context %v\nwant %v", got, want)
	}
}
