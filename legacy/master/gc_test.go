package master

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/vk-titus/vk-titus/internal/zktest"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacyapi"
)

func zkConn(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// taskZnode reads a task record as stored; ok false when it is absent.
func taskZnode(t *testing.T, conn *zk.Conn, jobID, taskID string) (taskRecord, bool) {
	t.Helper()
	data, _, err := conn.Get("/mesos-jobs/" + jobID + "/" + taskID)
	if errors.Is(err, zk.ErrNoNode) {
		return taskRecord{}, false
	}
	if err != nil {
		t.Fatalf("reading task %s: %v", taskID, err)
	}
	var r taskRecord
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("task %s record: %v", taskID, err)
	}
	return r, true
}

func znodeExists(t *testing.T, conn *zk.Conn, p string) bool {
	t.Helper()
	ok, _, err := conn.Exists(p)
	if err != nil {
		t.Fatalf("exists %s: %v", p, err)
	}
	return ok
}

// containerGone: the agent answers WAIT_CONTAINER with 404, as it does
// once the container was removed.
func containerGone(agentURL, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := agentclient.New(agentURL, agentclient.Options{}).Wait(ctx, id)
	return errors.Is(err, agentclient.ErrNotFound)
}

func hasState(task legacyapi.Task, state string) bool {
	return strings.Contains(","+states(task)+",", ","+state+",")
}

// TestKillSurvivesFailover: kills acknowledged by a leader that goes away
// before the tasks end are finished by the next leader, with SIGKILL after
// the grace (the tasks ignore SIGTERM), ending Finished with the reason of
// the kill; nothing is relaunched or replaced.
func TestKillSurvivesFailover(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	conn := zkConn(t, addr)
	grace := func(c *Config) { c.KillGrace = 4 * time.Second }
	m1 := startMaster(t, "m1", zkURL, grace)
	eventually(t, jobWait, "m1 to lead", m1.IsLeader)
	ag := startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "the agent at m1", func() bool { return len(m1.Agents()) == 1 })
	c1 := readyJobs(t, jobClient(m1.url))
	ctx := context.Background()

	d := serviceJob("stubborn", 0, 3, 3)
	d.Container.EntryPoint = []string{"/bin/sh", "-c"}
	d.Container.Command = []string{"trap '' TERM; while :; do sleep 1; done"} // only SIGKILL ends it
	id := createJob(t, c1, d)
	waitTasks(t, c1, id, legacyapi.TaskStarted, 3)

	// Scale down to 2: the newest task is killed, scaledDown.
	if err := c1.UpdateCapacity(ctx, id, legacyapi.Capacity{Min: 0, Desired: 2, Max: 3}); err != nil {
		t.Fatal(err)
	}
	m1.mu.Lock()
	var scaled, victim, kept string
	for _, jt := range m1.jobs.jobs[id].tasks {
		switch {
		case jt.kill != nil && jt.kill.code == reasonScaledDown:
			scaled = string(jt.id)
		case victim == "":
			victim = string(jt.id)
		default:
			kept = string(jt.id)
		}
	}
	m1.mu.Unlock()
	if scaled == "" || victim == "" || kept == "" {
		t.Fatalf("after the scale-down: scaled %q, others %q %q", scaled, victim, kept)
	}
	// And kill one with shrink: desired 1, no replacement.
	if err := c1.KillTask(ctx, victim, true); err != nil {
		t.Fatal(err)
	}
	// Acknowledged means stored, with the kill.
	for task, code := range map[string]string{scaled: reasonScaledDown, victim: reasonKilled} {
		if r, ok := taskZnode(t, conn, id, task); !ok || r.Kill == nil || r.Kill.ReasonCode != code || r.Kill.GraceMs != 4000 {
			t.Fatalf("task %s record after the acknowledged kill: %+v (%v)", task, r.Kill, ok)
		}
	}
	m1.Stop()

	// The tasks outlived m1 (it had no time for SIGKILL): the new leader
	// must finish the kills.
	cs, err := agentclient.New(ag.url, agentclient.Options{}).Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]bool{}
	for _, c := range cs {
		running[c.ID] = true
	}
	if !running[scaled] || !running[victim] || !running[kept] {
		t.Fatalf("precondition: the killed tasks should still run when m1 stops (this machine is too slow?): %v", running)
	}

	m2 := startMaster(t, "m2", zkURL, grace)
	eventually(t, jobWait, "m2 to lead", m2.IsLeader)
	c2 := readyJobs(t, jobClient(m2.url))
	for task, code := range map[string]string{scaled: reasonScaledDown, victim: reasonKilled} {
		var got legacyapi.Task
		eventually(t, jobWait, "task "+task+" Finished", func() bool {
			got, err = c2.GetTask(ctx, task)
			return err == nil && got.Status.State == legacyapi.TaskFinished
		})
		if got.Status.ReasonCode != code || got.TaskContext[legacyapi.ContextExitCode] != "137" || !hasState(got, legacyapi.TaskKillInitiated) {
			t.Fatalf("task %s: %+v context %v history %s; want %s, SIGKILLed (137)", task, got.Status, got.TaskContext, states(got), code)
		}
	}
	// Both containers are removed once their ends are stored; their
	// records say so.
	for _, task := range []string{scaled, victim} {
		eventually(t, jobWait, "the container of "+task+" removed", func() bool {
			r, ok := taskZnode(t, conn, id, task)
			return ok && r.ContainerRemoved && containerGone(ag.url, task)
		})
	}
	// Nothing relaunched or replaced: the same three tasks, one running.
	j, err := c2.GetJob(ctx, id)
	if err != nil || j.JobDescriptor.Service.Capacity.Desired != 1 {
		t.Fatalf("job after failover: %+v, %v", j.JobDescriptor.Service, err)
	}
	ts := jobTasks(c2, id)
	if len(ts) != 3 || len(inState(ts, legacyapi.TaskStarted)) != 1 {
		t.Fatalf("%d tasks after failover (want 3, 1 Started): %+v", len(ts), ts)
	}
	for _, task := range ts {
		if task.ID != scaled && task.ID != victim && task.ID != kept {
			t.Fatalf("unexpected task %s", task.ID)
		}
	}
	if got, err := c2.GetTask(ctx, kept); err != nil || got.Status.State != legacyapi.TaskStarted {
		t.Fatalf("the untouched task: %+v, %v", got.Status, err)
	}
}

// TestFinishedContainersRemoved: the container of a finished job task and
// of a launch-path task is REMOVEd on its agent.
func TestFinishedContainersRemoved(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	conn := zkConn(t, addr)
	m := startMaster(t, "m1", zkURL)
	ag := startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "m1 to lead with the agent", func() bool { return m.IsLeader() && len(m.Agents()) == 1 })
	c := readyJobs(t, jobClient(m.url))

	id := createJob(t, c, shJob("done", 2, 0, "exit 0"))
	waitJob(t, c, id, legacyapi.JobFinished)
	for _, task := range jobTasks(c, id) {
		eventually(t, jobWait, "the container of "+task.ID+" removed", func() bool {
			r, ok := taskZnode(t, conn, id, task.ID)
			return ok && r.ContainerRemoved && r.StatusHistory[len(r.StatusHistory)-1].State == legacyapi.TaskFinished &&
				containerGone(ag.url, task.ID)
		})
		// The record outlives the container: the job API still has it all.
		if got, err := c.GetTask(context.Background(), task.ID); err != nil || got.TaskContext[legacyapi.ContextExitCode] != "0" {
			t.Fatalf("task %s after removal: %+v, %v", task.ID, got, err)
		}
	}

	lt, err := m.LaunchTask(context.Background(), TaskSpec{Name: "plain", Command: "exit 0", Resources: Resources{"cpus": 0.1, "mem": 8}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, jobWait, "the launch-path task's container removed", func() bool {
		task, _ := m.Task(lt)
		return task.State == mesos.TASK_FINISHED && containerGone(ag.url, string(lt))
	})
}

// TestRemovalGivesUp: a REMOVE whose agent stays away is retried with a
// backoff a bounded number of times, then dropped.
func TestRemovalGivesUp(t *testing.T) {
	m, err := New(Config{Listen: "127.0.0.1:1", Logger: testLogger("m")})
	if err != nil {
		t.Fatal(err)
	}
	m.setLeading(true)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queueRemovalOfLocked("legacy-x-00000000", "gone-agent", nil)
	now := time.Now()
	for i := 1; i <= maxRemoveAttempts; i++ {
		r := m.removals["legacy-x-00000000"]
		if r == nil {
			t.Fatalf("dropped after %d attempts, want %d", i-1, maxRemoveAttempts)
		}
		if acts := m.dueRemovalsLocked(now); len(acts) != 0 {
			t.Fatalf("attempt %d: a REMOVE sent to an agent that is not registered", i)
		}
		if r.attempts != i {
			t.Fatalf("attempts %d, want %d", r.attempts, i)
		}
		if i < maxRemoveAttempts && (!r.next.After(now) || r.next.Sub(now) > removeBackoffMax) {
			t.Fatalf("attempt %d: next try at %v", i, r.next.Sub(now))
		}
		now = r.next
	}
	if len(m.removals) != 0 {
		t.Fatalf("removals left: %d", len(m.removals))
	}
}

// TestRetention: finished tasks beyond the per-job bound, finished jobs
// beyond the count and then beyond the age are pruned from memory and
// ZooKeeper, by the leader (a new one too), and answer 404.
func TestRetention(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	conn := zkConn(t, addr)
	m1 := startMaster(t, "m1", zkURL, func(c *Config) {
		c.JobRetentionCount, c.TaskRetentionPerJob, c.PruneInterval = 2, 2, 100*time.Millisecond
	})
	startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "m1 to lead with the agent", func() bool { return m1.IsLeader() && len(m1.Agents()) == 1 })
	c := readyJobs(t, jobClient(m1.url))
	ctx := context.Background()

	// Tries of a batch index beyond the bound are pruned, and still count:
	// exactly 1 + 5 retries run.
	retried := createJob(t, c, shJob("retried", 1, 5, "exit 3"))
	if j := waitJob(t, c, retried, legacyapi.JobFinished); j.Status.ReasonCode != reasonFailed {
		t.Fatalf("retried job: %+v", j.Status)
	}
	eventually(t, jobWait, "the retried job's tasks pruned to 2", func() bool {
		children, _, err := conn.Children("/mesos-jobs/" + retried)
		return err == nil && len(children) == 2 && len(jobTasks(c, retried)) == 2
	})
	m1.mu.Lock()
	rj := m1.jobs.jobs[retried]
	last := rj.tasks[len(rj.tasks)-1]
	attempt, n := last.attempt, len(rj.tasks)
	m1.mu.Unlock()
	if attempt != 6 || n != 2 {
		t.Fatalf("retried job: last attempt %d, %d tasks in memory; want attempt 6 and 2 tasks", attempt, n)
	}

	// Three more finished jobs: only the two most recently finished stay.
	var ids []string
	for _, app := range []string{"j1", "j2", "j3"} {
		id := createJob(t, c, shJob(app, 1, 0, "exit 0"))
		waitJob(t, c, id, legacyapi.JobFinished)
		ids = append(ids, id)
	}
	prunedTasks := map[string]string{}
	for _, id := range []string{retried, ids[0]} {
		for _, task := range jobTasks(c, id) {
			prunedTasks[task.ID] = id
		}
	}
	for _, id := range []string{retried, ids[0]} {
		eventually(t, jobWait, "job "+id+" pruned", func() bool {
			_, err := c.GetJob(ctx, id)
			return errors.Is(err, legacyapi.ErrNotFound) && !znodeExists(t, conn, "/mesos-jobs/"+id)
		})
	}
	for task := range prunedTasks {
		if _, err := c.GetTask(ctx, task); !errors.Is(err, legacyapi.ErrNotFound) {
			t.Fatalf("task %s of a pruned job: %v, want 404", task, err)
		}
		if _, ok := m1.Task(TaskID(task)); ok {
			t.Fatalf("task %s of a pruned job still in the master's tasks", task)
		}
	}
	for _, id := range ids[1:] {
		if _, err := c.GetJob(ctx, id); err != nil || !znodeExists(t, conn, "/mesos-jobs/"+id) {
			t.Fatalf("job %s within the count: %v", id, err)
		}
	}

	// A new leader loads the rest and prunes them by age.
	m1.Stop()
	m2 := startMaster(t, "m2", zkURL, func(c *Config) {
		c.JobRetentionAge, c.PruneInterval = time.Second, 100*time.Millisecond
	})
	eventually(t, jobWait, "m2 to lead", m2.IsLeader)
	c2 := readyJobs(t, jobClient(m2.url))
	for _, id := range ids[1:] {
		eventually(t, jobWait, "job "+id+" pruned by age", func() bool {
			_, err := c2.GetJob(ctx, id)
			return errors.Is(err, legacyapi.ErrNotFound) && !znodeExists(t, conn, "/mesos-jobs/"+id)
		})
	}
	if children, _, err := conn.Children("/mesos-jobs"); err != nil || len(children) != 0 {
		t.Fatalf("job records left: %v, %v", children, err)
	}
	// A job still running is not pruned, however old.
	svc := createJob(t, c2, serviceJob("web", 1, 1, 1))
	waitTasks(t, c2, svc, legacyapi.TaskStarted, 1)
	time.Sleep(1500 * time.Millisecond) // past the retention age, several prune passes
	if _, err := c2.GetJob(ctx, svc); err != nil {
		t.Fatalf("running job: %v", err)
	}
}
