package kube

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// Observe: the snapshot of the caches, then each informer change as the
// caches show it; a deleted pod's task ends in the feed too.
func TestObserveFollowsTheInformers(t *testing.T) {
	b, client := newTestBackend(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before, o := create(t, b, serviceDescriptor())
	addPods(t, b, client, podOf(o, "s1", 1, scheduled("n1", 2), running(3)))

	changes := make(chan legacyapi.Change, 1000)
	go func() { _ = b.Observe(ctx, func(c legacyapi.Change) error { changes <- c; return nil }) }()
	next := func(what string, ok func(legacyapi.Change) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case c := <-changes:
				if ok(c) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s in the feed", what)
			}
		}
	}
	var snap []legacyapi.Change
	next("the snapshot end", func(c legacyapi.Change) bool { snap = append(snap, c); return c.SnapshotEnd })
	if len(snap) != 3 || snap[0].Job.ID != before || snap[1].Task.ID != "kube-s1" || snap[1].Task.Status.State != legacyapi.TaskStarted {
		t.Fatalf("snapshot %+v", snap)
	}

	id, batch := create(t, b, batchDescriptor())
	next("the new job", func(c legacyapi.Change) bool { return c.Job != nil && c.Job.ID == id })
	addPods(t, b, client, podOf(batch, "b1", 5, withIndex("0", ""), scheduled("n1", 6), running(7)))
	next("its task", func(c legacyapi.Change) bool {
		return c.Task != nil && c.Task.ID == "kube-b1" && c.Task.Status.State == legacyapi.TaskStarted
	})
	if err := client.CoreV1().Pods(testNS).Delete(ctx, o.meta.Name+"-s1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next("the deleted pod's task ended", func(c legacyapi.Change) bool {
		return c.Task != nil && c.Task.ID == "kube-s1" && c.Task.Status.State == legacyapi.TaskFinished
	})
	if err := b.UpdateJob(ctx, before, legacyapi.JobUpdate{Attributes: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	next("the attribute change", func(c legacyapi.Change) bool {
		return c.Job != nil && c.Job.ID == before && c.Job.JobDescriptor.Attributes["k"] == "v"
	})
}

func TestTaskAttributesAndMove(t *testing.T) {
	b, client := newTestBackend(t)
	ctx := context.Background()
	id, o := create(t, b, serviceDescriptor())
	addPods(t, b, client, podOf(o, "a1", 1, scheduled("n1", 2), running(3)))
	if err := b.UpdateTask(ctx, "kube-a1", legacyapi.TaskUpdate{Attributes: map[string]string{"k": "v", "x": "y"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateTask(ctx, "kube-a1", legacyapi.TaskUpdate{DeleteAttributes: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	task, err := b.GetTask(ctx, "kube-a1")
	if err != nil || len(task.Attributes) != 1 || task.Attributes["k"] != "v" {
		t.Fatalf("task attributes %v, %v", task.Attributes, err)
	}
	wantErr(t, b.UpdateTask(ctx, "kube-nope", legacyapi.TaskUpdate{Attributes: map[string]string{"k": "v"}}), legacyapi.ErrNotFound)
	wantErr(t, b.MoveTask(ctx, legacyapi.TaskMove{SourceJobID: id, TargetJobID: "kube-other", TaskID: "kube-a1"}), legacyapi.ErrUnimplemented)
}
