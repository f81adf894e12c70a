package provider

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sm "github.com/vk-titus/vk-titus/statemachine"
)

func testRecord(policy corev1.RestartPolicy, inits, apps int) *podRecord {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "3f2b6c1e-9a47-4d1b-8c5e-0f6a7b8c9d01"},
		Spec: corev1.PodSpec{RestartPolicy: policy}}
	for i := 0; i < inits; i++ {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "init" + string(rune('a'+i)), Image: "busybox"})
	}
	for i := 0; i < apps; i++ {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "app" + string(rune('a'+i)), Image: "busybox"})
	}
	return newPodRecord(pod)
}

func set(rec *podRecord, states ...sm.State) {
	for i, s := range states {
		rec.ctrs[i].state, rec.ctrs[i].shown = s, s
		rec.ctrs[i].probes.ready, rec.ctrs[i].probes.started = true, true
	}
}

// The pod phase combines container states as the kubelet's getPhase does.
func TestPodPhase(t *testing.T) {
	for _, c := range []struct {
		name        string
		policy      corev1.RestartPolicy
		inits, apps int
		states      []sm.State
		phase       corev1.PodPhase
		ready       bool
	}{
		{"one running", corev1.RestartPolicyAlways, 0, 1, []sm.State{sm.Running}, corev1.PodRunning, true},
		{"launching", corev1.RestartPolicyAlways, 0, 1, []sm.State{sm.Launching}, corev1.PodPending, false},
		{"init still running", corev1.RestartPolicyAlways, 1, 1, []sm.State{sm.Running, sm.Accepted}, corev1.PodPending, false},
		{"init done, app running", corev1.RestartPolicyAlways, 1, 1, []sm.State{sm.Succeeded, sm.Running}, corev1.PodRunning, true},
		{"init failed for good", corev1.RestartPolicyNever, 1, 1, []sm.State{sm.Failed, sm.Accepted}, corev1.PodFailed, false},
		{"init failed, will retry", corev1.RestartPolicyOnFailure, 1, 1, []sm.State{sm.BackOff, sm.Accepted}, corev1.PodPending, false},
		{"all succeeded", corev1.RestartPolicyNever, 0, 2, []sm.State{sm.Succeeded, sm.Succeeded}, corev1.PodSucceeded, false},
		{"one failed", corev1.RestartPolicyNever, 0, 2, []sm.State{sm.Succeeded, sm.Failed}, corev1.PodFailed, false},
		{"one still running", corev1.RestartPolicyNever, 0, 2, []sm.State{sm.Succeeded, sm.Running}, corev1.PodRunning, false},
		{"crash looping", corev1.RestartPolicyAlways, 0, 1, []sm.State{sm.BackOff}, corev1.PodRunning, false},
		{"rejected", corev1.RestartPolicyAlways, 0, 1, []sm.State{sm.Rejected}, corev1.PodFailed, false},
		{"lost", corev1.RestartPolicyAlways, 0, 1, []sm.State{sm.Lost}, corev1.PodFailed, false},
	} {
		rec := testRecord(c.policy, c.inits, c.apps)
		set(rec, c.states...)
		st := rec.computeStatus("10.0.0.5")
		if st.Phase != c.phase {
			t.Errorf("%s: phase %s, want %s", c.name, st.Phase, c.phase)
		}
		gotReady := false
		for _, cond := range st.Conditions {
			if cond.Type == corev1.PodReady {
				gotReady = cond.Status == corev1.ConditionTrue
			}
		}
		if gotReady != c.ready {
			t.Errorf("%s: ready %v, want %v", c.name, gotReady, c.ready)
		}
		if st.PodIP != "10.0.0.5" || st.HostIP != "10.0.0.5" {
			t.Errorf("%s: IPs %s %s", c.name, st.PodIP, st.HostIP)
		}
	}
}

// An unreachable agent changes nothing the API shows.
func TestDisconnectedKeepsLastStatus(t *testing.T) {
	rec := testRecord(corev1.RestartPolicyAlways, 0, 1)
	set(rec, sm.Running)
	before := rec.computeStatus("h")
	rec.ctrs[0].state = sm.Disconnected
	after := rec.computeStatus("h")
	if after.Phase != before.Phase || after.ContainerStatuses[0].State.Running == nil {
		t.Errorf("status changed while disconnected: %+v", after)
	}
}

func TestReadinessGatesReady(t *testing.T) {
	rec := testRecord(corev1.RestartPolicyAlways, 0, 1)
	set(rec, sm.Running)
	rec.ctrs[0].probes.ready = false
	st := rec.computeStatus("h")
	if st.ContainerStatuses[0].Ready {
		t.Error("container ready with a failing readiness probe")
	}
	for _, c := range st.Conditions {
		if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != corev1.ConditionFalse {
			t.Errorf("%s = %s", c.Type, c.Status)
		}
	}
}

func TestRunIDsPerRestart(t *testing.T) {
	rec := testRecord(corev1.RestartPolicyAlways, 0, 1)
	c := rec.ctrs[0]
	first := c.runID(rec.uid)
	c.restarts = 2
	if got := c.runID(rec.uid); got != first+"-r2" {
		t.Errorf("run id after 2 restarts: %s (first %s)", got, first)
	}
}
