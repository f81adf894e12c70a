package kube

import (
	"sync"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// memory remembers the last record of tasks whose pods were deleted, the
// oldest forgotten first once it holds max: Kubernetes keeps no trace of a
// deleted pod, and the job API still answers for it.
type memory struct {
	mu    sync.RWMutex
	max   int
	order []string // ids, a ring: order[next] is the oldest once full
	next  int
	byID  map[string]taskEntry
	byJob map[string][]string // ids per job, oldest first
}

func newMemory(max int) *memory {
	return &memory{max: max, byID: map[string]taskEntry{}, byJob: map[string][]string{}}
}

func (m *memory) add(e taskEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := e.task.ID
	if _, ok := m.byID[id]; ok {
		m.byID[id] = e
		return
	}
	if len(m.order) < m.max {
		m.order = append(m.order, id)
	} else {
		m.evict(m.order[m.next])
		m.order[m.next] = id
		m.next = (m.next + 1) % m.max
	}
	m.byID[id] = e
	m.byJob[e.task.JobID] = append(m.byJob[e.task.JobID], id)
}

// evict forgets the oldest task, which is also the oldest of its job.
func (m *memory) evict(id string) {
	job := m.byID[id].task.JobID
	delete(m.byID, id)
	if ids := m.byJob[job]; len(ids) > 1 {
		m.byJob[job] = ids[1:]
	} else {
		delete(m.byJob, job)
	}
}

func (m *memory) get(id string) (taskEntry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.byID[id]
	return e, ok
}

// list returns the tasks of jobIDs, or every task when there are none.
func (m *memory) list(jobIDs []string) []taskEntry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(jobIDs) == 0 {
		out := make([]taskEntry, 0, len(m.byID))
		for _, e := range m.byID {
			out = append(out, e)
		}
		return out
	}
	var out []taskEntry
	for _, job := range jobIDs {
		for _, id := range m.byJob[job] {
			out = append(out, m.byID[id])
		}
	}
	return out
}

// lastEnd is when the job's latest remembered task ended (0 for none).
func (m *memory) lastEnd(jobID string) legacyapi.U64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var last legacyapi.U64
	for _, id := range m.byJob[jobID] {
		last = max(last, m.byID[id].task.Status.Timestamp)
	}
	return last
}
