package kube

import (
	"testing"

	"github.com/vk-titus/vk-titus/legacyapi"
)

func TestMemoryForgetsOldestFirst(t *testing.T) {
	m := newMemory(2)
	entry := func(id, job string, end legacyapi.U64) taskEntry {
		return taskEntry{task: legacyapi.Task{ID: id, JobID: job, Status: legacyapi.TaskStatus{State: legacyapi.TaskFinished, Timestamp: end}}}
	}
	m.add(entry("a", "j1", 1))
	m.add(entry("b", "j2", 2))
	m.add(entry("a", "j1", 3)) // again: updated, not added
	if got := m.lastEnd("j1"); got != 3 {
		t.Errorf("lastEnd(j1) = %d", got)
	}
	m.add(entry("c", "j1", 4))
	if _, ok := m.get("a"); ok {
		t.Error("the oldest task is still remembered")
	}
	if got := len(m.list(nil)); got != 2 {
		t.Errorf("%d remembered, want 2", got)
	}
	if got := m.list([]string{"j1"}); len(got) != 1 || got[0].task.ID != "c" {
		t.Errorf("tasks of j1: %+v", got)
	}
	m.add(entry("d", "j3", 5))
	if got := m.list([]string{"j2"}); len(got) != 0 || m.lastEnd("j2") != 0 {
		t.Errorf("j2 still has tasks: %+v", got)
	}
}
