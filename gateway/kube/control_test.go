package kube

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vk-titus/vk-titus/legacyapi"
)

func jobState(t *testing.T, b *Backend, id string) legacyapi.JobStatus {
	t.Helper()
	j, err := b.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j.Status
}

func TestKillBatchJob(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	id, o := create(t, b, batchDescriptor())
	pod := podOf(o, "r1", 1, withIndex("0", ""), scheduled("n1", 2), running(3))
	addPods(t, b, client, pod)

	if err := b.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	job, err := client.BatchV1().Jobs(testNS).Get(ctx, o.meta.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	killedAt := job.Annotations[AnnotationKilledAt]
	if job.Spec.Suspend == nil || !*job.Spec.Suspend || killedAt == "" {
		t.Fatalf("killed Job: suspend %v, annotations %v", job.Spec.Suspend, job.Annotations)
	}
	if st := jobState(t, b, id); st.State != legacyapi.JobKillInitiated {
		t.Errorf("with a pod left: %+v, want KillInitiated", st)
	}
	if err := b.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if job, _ := client.BatchV1().Jobs(testNS).Get(ctx, o.meta.Name, metav1.GetOptions{}); job.Annotations[AnnotationKilledAt] != killedAt {
		t.Error("a second kill moved the kill time")
	}

	// The Job controller deletes the pods of a suspended Job.
	if err := client.CoreV1().Pods(testNS).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "job finished", func() bool { return jobState(t, b, id).State == legacyapi.JobFinished })
	j, _ := b.GetJob(ctx, id)
	if got := strings.Join(jobStates(j.StatusHistory), " "); got != "Accepted KillInitiated Finished" || j.Status.ReasonCode != "killed" {
		t.Errorf("history %s, reason %s", got, j.Status.ReasonCode)
	}
	task, err := b.GetTask(ctx, "kube-r1")
	if err != nil || task.Status.State != legacyapi.TaskFinished || task.Status.ReasonCode != "killed" {
		t.Errorf("task of the killed job: %+v, %v", task.Status, err)
	}

	wantErr(t, resize(b, id, legacyapi.Capacity{Min: 1, Desired: 1, Max: 1}), legacyapi.ErrInvalid) // a batch job
	wantErr(t, b.UpdateJob(ctx, id, legacyapi.JobUpdate{Attributes: map[string]string{"a": "b"}}), legacyapi.ErrTerminating)
	wantErr(t, b.KillJob(ctx, "kube-nope"), legacyapi.ErrNotFound)
}

func resize(b *Backend, id string, c legacyapi.Capacity) error {
	return b.UpdateJob(context.Background(), id, legacyapi.JobUpdate{Capacity: legacyapi.FullCapacity(c)})
}

func enable(b *Backend, id string, on bool) error {
	return b.UpdateJob(context.Background(), id, legacyapi.JobUpdate{Enabled: &on})
}

func TestBatchJobEnds(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	for _, tc := range []struct {
		cond   batchv1.JobConditionType
		reason string
	}{{batchv1.JobComplete, "normal"}, {batchv1.JobFailed, "failed"}} {
		id, o := create(t, b, batchDescriptor())
		job := o.batch.DeepCopy()
		job.Status.Conditions = []batchv1.JobCondition{{Type: tc.cond, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now(), Message: "done"}}
		if _, err := client.BatchV1().Jobs(testNS).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, b, "job finished", func() bool { return jobState(t, b, id).State == legacyapi.JobFinished })
		if st := jobState(t, b, id); st.ReasonCode != tc.reason || st.ReasonMessage != "done" {
			t.Errorf("%s: status %+v", tc.cond, st)
		}
		client.ClearActions()
		if err := b.KillJob(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n := len(writes(client)); n != 0 {
			t.Errorf("killing a finished job wrote %d times", n)
		}
	}
}

func TestServiceJobControl(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	id, o := create(t, b, serviceDescriptor())
	deployment := func() (int32, map[string]string) {
		d, err := client.AppsV1().Deployments(testNS).Get(ctx, o.meta.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas, d.Annotations
	}

	if err := resize(b, id, legacyapi.Capacity{Min: 2, Desired: 4, Max: 8}); err != nil {
		t.Fatal(err)
	}
	if n, a := deployment(); n != 4 || a[AnnotationCapacityMin] != "2" || a[AnnotationCapacityMax] != "8" {
		t.Errorf("resized: replicas %d, annotations %v", n, a)
	}
	wantErr(t, resize(b, id, legacyapi.Capacity{Min: 3, Desired: 2, Max: 8}), legacyapi.ErrInvalid)
	if err := enable(b, id, false); err != nil {
		t.Fatal(err)
	}
	// Only the fields given change.
	max := legacyapi.U32(6)
	if err := b.UpdateJob(ctx, id, legacyapi.JobUpdate{Capacity: &legacyapi.CapacityUpdate{Max: &max}}); err != nil {
		t.Fatal(err)
	}
	if n, a := deployment(); n != 4 || a[AnnotationCapacityMin] != "2" || a[AnnotationCapacityMax] != "6" {
		t.Errorf("max alone: replicas %d, annotations %v", n, a)
	}
	// Processes forbid a larger size; attributes and a budget are kept.
	for _, u := range []legacyapi.JobUpdate{
		{Processes: &legacyapi.ServiceJobProcesses{DisableIncreaseDesired: true}},
		{Attributes: map[string]string{"source": "spinnaker"}},
		{DisruptionBudget: []byte(`{"selfManaged":{"relocationTimeMs":"60000"}}`)},
	} {
		if err := b.UpdateJob(ctx, id, u); err != nil {
			t.Fatalf("%+v: %v", u, err)
		}
	}
	wantErr(t, resize(b, id, legacyapi.Capacity{Min: 2, Desired: 5, Max: 6}), legacyapi.ErrInvalid)
	if err := resize(b, id, legacyapi.Capacity{Min: 2, Desired: 4, Max: 8}); err != nil {
		t.Fatal(err)
	}
	j, err := b.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := j.JobDescriptor.Service; *s.Capacity != (legacyapi.Capacity{Min: 2, Desired: 4, Max: 8}) || s.Enabled || !s.ServiceJobProcesses.DisableIncreaseDesired {
		t.Errorf("service spec after resize and disable: %+v %+v", s, s.Capacity)
	}
	if d := j.JobDescriptor; d.Attributes["source"] != "spinnaker" || d.Attributes["cost-center"] != "42" || string(d.DisruptionBudget) == "" {
		t.Errorf("attributes %v, budget %s", d.Attributes, d.DisruptionBudget)
	}

	addPods(t, b, client, podOf(o, "w1", 1, scheduled("n1", 2), running(3)))
	if err := b.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, a := deployment(); n != 0 || a[AnnotationKilledAt] == "" {
		t.Errorf("killed: replicas %d, annotations %v", n, a)
	}
	if st := jobState(t, b, id); st.State != legacyapi.JobKillInitiated {
		t.Errorf("killed with a pod left: %+v", st)
	}
	wantErr(t, b.UpdateJob(ctx, id, legacyapi.JobUpdate{Attributes: map[string]string{"a": "b"}}), legacyapi.ErrTerminating)
	wantErr(t, enable(b, id, true), legacyapi.ErrTerminating)
	if err := client.CoreV1().Pods(testNS).Delete(ctx, o.meta.Name+"-w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "job finished", func() bool { return jobState(t, b, id).State == legacyapi.JobFinished })
	if task, err := b.GetTask(ctx, "kube-w1"); err != nil || task.Status.ReasonCode != "killed" {
		t.Errorf("task of the killed service: %+v, %v", task.Status, err)
	}
}

func TestKillTask(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	id, o := create(t, b, serviceDescriptor()) // min 1, desired 2
	_, batch := create(t, b, batchDescriptor())
	p1 := podOf(o, "k1", 1, scheduled("n1", 2), running(3))
	p2 := podOf(o, "k2", 1, scheduled("n1", 2), running(3))
	p3 := podOf(batch, "k3", 1, withIndex("0", ""), scheduled("n1", 2), running(3))
	addPods(t, b, client, p1, p2, p3)
	client.ClearActions()

	shrink := legacyapi.TaskKill{Shrink: true}
	if err := b.KillTask(ctx, "kube-k1", shrink); err != nil {
		t.Fatal(err)
	}
	// In order: mark the pod, lower the Deployment, delete the pod.
	var got []string
	for _, a := range writes(client) {
		got = append(got, a.GetVerb()+" "+a.GetResource().Resource)
		if p, ok := a.(k8stesting.PatchAction); ok && !strings.Contains(string(p.GetPatch()), `"`+corev1.PodDeletionCost+`":"`+strconv.Itoa(math.MinInt32)+`"`) {
			t.Errorf("pod patch %s", p.GetPatch())
		}
		if d, ok := a.(k8stesting.DeleteAction); ok && (d.GetName() != p1.Name || *d.GetDeleteOptions().Preconditions.UID != p1.UID) {
			t.Errorf("delete %s with %+v", d.GetName(), d.GetDeleteOptions().Preconditions)
		}
	}
	if want := "patch pods,update deployments,delete pods"; strings.Join(got, ",") != want {
		t.Errorf("writes %q, want %q", strings.Join(got, ","), want)
	}
	j, _ := b.GetJob(ctx, id)
	if j.JobDescriptor.Service.Capacity.Desired != 1 {
		t.Errorf("desired after shrink: %d", j.JobDescriptor.Service.Capacity.Desired)
	}
	if task, err := b.GetTask(ctx, "kube-k1"); err != nil || task.Status.State != legacyapi.TaskFinished || task.Status.ReasonCode != "killed" {
		t.Errorf("killed task: %+v, %v", task.Status, err)
	}

	client.ClearActions()
	// desired 1 = min: refused when the minimum must stay
	wantErr(t, b.KillTask(ctx, "kube-k2", legacyapi.TaskKill{Shrink: true, PreventMinSizeUpdate: true}), legacyapi.ErrConflict)
	if n := len(writes(client)); n != 0 {
		t.Errorf("a refused shrink wrote %d times", n)
	}
	wantErr(t, b.KillTask(ctx, "kube-k3", shrink), legacyapi.ErrInvalid) // batch
	wantErr(t, b.KillTask(ctx, "kube-k1", legacyapi.TaskKill{}), legacyapi.ErrNotFound)
	wantErr(t, b.KillTask(ctx, "kube-nope", legacyapi.TaskKill{}), legacyapi.ErrNotFound)

	if err := b.KillTask(ctx, "kube-k2", legacyapi.TaskKill{}); err != nil {
		t.Fatal(err)
	}
	if j, _ := b.GetJob(ctx, id); j.JobDescriptor.Service.Capacity.Desired != 1 {
		t.Errorf("desired after a plain kill: %d", j.JobDescriptor.Service.Capacity.Desired)
	}
	if task, err := b.GetTask(ctx, "kube-k2"); err != nil || task.Status.ReasonCode != "killed" {
		t.Errorf("killed task: %+v, %v", task.Status, err)
	}
}

// writes are the mutating calls the client received.
func writes(client interface{ Actions() []k8stesting.Action }) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range client.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a)
		}
	}
	return out
}

func jobStates(h []legacyapi.JobStatus) []string {
	out := make([]string, len(h))
	for i, s := range h {
		out[i] = s.State
	}
	return out
}
