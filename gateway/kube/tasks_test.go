package kube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
)

func TestFindAndGetTasks(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	id, o := create(t, b, batchDescriptor())
	other, _ := create(t, b, serviceDescriptor())
	first := podOf(o, "a0", 10, withIndex("0", ""), scheduled("n1", 11), exited("failed", 2, 12, 20))
	retry := podOf(o, "a1", 20, withIndex("0", "1"), scheduled("n1", 21), running(22))
	second := podOf(o, "b0", 10, withIndex("1", ""), scheduled("n2", 11), running(12))
	addPods(t, b, client, first, retry, second)

	res, err := b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{JobIDs: []string{id}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 3 || res.Pagination.TotalItems != 3 {
		t.Fatalf("tasks of the job: %+v", res)
	}
	byID := map[string]legacyapi.Task{}
	for _, task := range res.Items {
		byID[task.ID] = task
	}
	if got := byID["kube-a1"].TaskContext[legacyapi.ContextResubmitOf]; got != "kube-a0" {
		t.Errorf("retry resubmitOf = %q, want kube-a0", got)
	}
	for _, id := range []string{"kube-a0", "kube-b0"} {
		if got, ok := byID[id].TaskContext[legacyapi.ContextResubmitOf]; ok {
			t.Errorf("%s: resubmitOf %q on a first try", id, got)
		}
	}

	res, err = b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{TaskStates: []string{legacyapi.TaskStarted}, ApplicationName: "My_App.v2"}})
	if err != nil || len(res.Items) != 2 {
		t.Fatalf("started tasks: %+v, %v", res.Items, err)
	}
	res, err = b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{JobIDs: []string{other}}})
	if err != nil || len(res.Items) != 0 || res.Items == nil {
		t.Fatalf("tasks of the service job: %#v, %v", res.Items, err)
	}
	res, err = b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{TaskIDs: []string{"kube-a1"}}})
	if err != nil || len(res.Items) != 1 || res.Items[0].TaskContext[legacyapi.ContextResubmitOf] != "kube-a0" {
		t.Fatalf("task by id: %+v, %v", res.Items, err)
	}
	res, err = b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{TaskIDs: []string{"kube-nope"}}})
	if err != nil || len(res.Items) != 0 {
		t.Fatalf("unknown task by id: %+v, %v", res.Items, err)
	}

	task, err := b.GetTask(ctx, "kube-a0")
	if err != nil {
		t.Fatal(err)
	}
	if task.Status.State != legacyapi.TaskFinished || task.Status.ReasonCode != "failed" ||
		task.Status.ReasonMessage != "exited with code 2" || task.TaskContext[legacyapi.ContextExitCode] != "2" {
		t.Errorf("finished task %+v", task)
	}
	if task, err = b.GetTask(ctx, "kube-a1"); err != nil || task.TaskContext[legacyapi.ContextResubmitOf] != "kube-a0" {
		t.Errorf("retry %+v, %v", task, err)
	}

	for _, id := range []string{"kube-nope", "legacy-a0", "a0", ""} {
		_, err := b.GetTask(ctx, id)
		wantErr(t, err, legacyapi.ErrNotFound)
	}
	_, err = b.GetJob(ctx, "kube-nope")
	wantErr(t, err, legacyapi.ErrNotFound)
}

// Deleted pods leave the cache; their tasks stay, ended for the reason the
// deletion had.
func TestDeletedPodsAreRemembered(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	_, svc := create(t, b, serviceDescriptor())
	_, batch := create(t, b, batchDescriptor())
	scaled := podOf(svc, "s1", 1, scheduled("n1", 2), running(3))
	done := podOf(batch, "d1", 1, withIndex("0", ""), scheduled("n1", 2), exited("succeeded", 0, 3, 4))
	addPods(t, b, client, scaled, done)
	for _, p := range []*corev1.Pod{scaled, done} {
		if err := client.CoreV1().Pods(testNS).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, b, "tasks remembered", func() bool {
		_, ok1 := b.finished.get("kube-s1")
		_, ok2 := b.finished.get("kube-d1")
		return ok1 && ok2
	})
	for id, reason := range map[string]string{"kube-s1": "scaledDown", "kube-d1": "normal"} {
		task, err := b.GetTask(ctx, id)
		if err != nil || task.Status.State != legacyapi.TaskFinished || task.Status.ReasonCode != reason {
			t.Errorf("%s: %+v, %v; want Finished %s", id, task.Status, err, reason)
		}
	}
	res, err := b.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{TaskStates: []string{legacyapi.TaskFinished}}})
	if err != nil || len(res.Items) != 2 {
		t.Errorf("finished tasks: %+v, %v", res.Items, err)
	}
}
