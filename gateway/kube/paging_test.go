package kube

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// A cursor walk visits every task once, in key order, even where creation
// times tie (the API server stamps whole seconds) and while tasks change.
func TestTaskCursorWalk(t *testing.T) {
	b, client := newTestBackend(t)
	id, o := create(t, b, serviceDescriptor())
	var pods []*corev1.Pod
	for i := range 25 {
		pods = append(pods, podOf(o, fmt.Sprintf("p%02d", i), i/3, scheduled("n1", 30), running(31)))
	}
	addPods(t, b, client, pods...)

	var seen []string
	var last legacyapi.Key
	page := legacyapi.Page{PageSize: 7}
	for n := 0; ; n++ {
		res, err := b.FindTasks(context.Background(), legacyapi.TaskQuery{Page: page, Criteria: legacyapi.Criteria{JobIDs: []string{id}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Pagination.TotalItems != 25 {
			t.Fatalf("totalItems %d", res.Pagination.TotalItems)
		}
		for _, task := range res.Items {
			if k := legacyapi.TaskKey(task); k.Less(last) {
				t.Fatalf("%s comes before the previous task", task.ID)
			} else {
				last = k
			}
			seen = append(seen, task.ID)
		}
		if !res.Pagination.HasMore {
			break
		}
		if n > 5 {
			t.Fatal("the walk does not end")
		}
		page.Cursor = res.Pagination.Cursor
	}
	if len(seen) != 25 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 25 {
		t.Errorf("walk saw %d tasks, %d distinct", len(seen), len(slices.Compact(slices.Sorted(slices.Values(seen)))))
	}

	_, err := b.FindTasks(context.Background(), legacyapi.TaskQuery{Page: legacyapi.Page{Cursor: "not-a-cursor"}})
	wantErr(t, err, legacyapi.ErrInvalid)
}

func TestJobCursorWalk(t *testing.T) {
	b, _ := newTestBackend(t)
	want := map[string]bool{}
	for range 3 {
		id, _ := create(t, b, batchDescriptor())
		want[id] = true
		id, _ = create(t, b, serviceDescriptor())
		want[id] = true
	}
	got := map[string]bool{}
	page := legacyapi.Page{PageSize: 4}
	for {
		res, err := b.FindJobs(context.Background(), legacyapi.JobQuery{Page: page})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.Items {
			if got[j.ID] {
				t.Fatalf("%s twice", j.ID)
			}
			got[j.ID] = true
		}
		if !res.Pagination.HasMore {
			break
		}
		page.Cursor = res.Pagination.Cursor
	}
	if len(got) != len(want) {
		t.Errorf("walk saw %d jobs, want %d", len(got), len(want))
	}
	res, err := b.FindJobs(context.Background(), legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobType: "service", ApplicationName: "web"}})
	if err != nil || len(res.Items) != 3 {
		t.Errorf("service jobs: %d, %v", len(res.Items), err)
	}
}

// BenchmarkFindTasks: one page of running tasks out of 10,000 pods.
func BenchmarkFindTasks(b *testing.B) {
	setup, _ := newTestBackend(b)
	_, o := create(b, setup, serviceDescriptor())
	objs := make([]runtime.Object, 0, 10000)
	for i := range 10000 {
		pod := podOf(o, fmt.Sprintf("p%05d", i), i%600, scheduled("n1", 600), running(601))
		pod.ResourceVersion = "1"
		objs = append(objs, pod)
	}
	be, _ := newTestBackend(b, objs...)
	q := legacyapi.TaskQuery{Criteria: legacyapi.Criteria{TaskStates: []string{legacyapi.TaskStarted}}, Page: legacyapi.Page{PageSize: 100}}
	b.ResetTimer()
	for b.Loop() {
		res, err := be.FindTasks(context.Background(), q)
		if err != nil || res.Pagination.TotalItems != 10000 {
			b.Fatalf("%d tasks, %v", res.Pagination.TotalItems, err)
		}
	}
}
