package master

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/vk-titus/vk-titus/internal/zktest"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// The machine running these is small and busy: waits are generous, and
// every wait polls.
const jobWait = 60 * time.Second

// jobsClient is the job API over HTTP with the shorthands the tests use.
type jobsClient struct{ *legacyapi.Client }

func jobClient(url string) jobsClient {
	return jobsClient{legacyapi.NewClient(legacyapi.StaticBase(url), &http.Client{Timeout: jobWait}, &http.Client{})}
}

func (c jobsClient) UpdateCapacity(ctx context.Context, id string, cp legacyapi.Capacity) error {
	return c.UpdateJob(ctx, id, legacyapi.JobUpdate{Capacity: legacyapi.FullCapacity(cp)})
}

func (c jobsClient) SetEnabled(ctx context.Context, id string, on bool) error {
	return c.UpdateJob(ctx, id, legacyapi.JobUpdate{Enabled: &on})
}

func (c jobsClient) KillTask(ctx context.Context, id string, shrink bool) error {
	return c.Client.KillTask(ctx, id, legacyapi.TaskKill{Shrink: shrink})
}

// shJob is a batch job of size tasks running script with /bin/sh -c as
// the entrypoint.
func shJob(app string, size, retries int, script string) legacyapi.JobDescriptor {
	return legacyapi.JobDescriptor{
		Owner:           &legacyapi.Owner{TeamEmail: "team@example.com"},
		ApplicationName: app,
		Container: &legacyapi.Container{
			Resources:  &legacyapi.ContainerResources{CPU: 0.1, MemoryMB: 16},
			Image:      &legacyapi.Image{Name: "busybox", Tag: "latest"},
			EntryPoint: []string{"/bin/sh", "-c"},
			Command:    []string{script},
		},
		Batch: &legacyapi.BatchJobSpec{
			Size:        legacyapi.U32(size),
			RetryPolicy: &legacyapi.RetryPolicy{Immediate: &legacyapi.ImmediateRetry{Retries: legacyapi.U32(retries)}},
		},
	}
}

// serviceJob runs `sleep 300` through the image's default entrypoint
// (busybox has none, so the command is the whole argv).
func serviceJob(app string, min, desired, max int) legacyapi.JobDescriptor {
	d := shJob(app, 1, 0, "")
	d.Batch = nil
	d.Container.EntryPoint = nil
	d.Container.Command = []string{"sleep", "300"}
	d.Service = &legacyapi.ServiceJobSpec{
		Enabled:  true,
		Capacity: &legacyapi.Capacity{Min: legacyapi.U32(min), Desired: legacyapi.U32(desired), Max: legacyapi.U32(max)},
	}
	return d
}

// readyJobs waits for the master behind c to lead with its job records
// loaded, and returns c.
func readyJobs(t *testing.T, c jobsClient) jobsClient {
	t.Helper()
	eventually(t, jobWait, "the job API", func() bool {
		_, err := c.FindJobs(context.Background(), legacyapi.JobQuery{})
		return err == nil
	})
	return c
}

func createJob(t *testing.T, c jobsClient, d legacyapi.JobDescriptor) string {
	t.Helper()
	id, err := c.CreateJob(context.Background(), d)
	if err != nil {
		t.Fatalf("CreateJob %s: %v", d.ApplicationName, err)
	}
	if !strings.HasPrefix(id, jobIDPrefix) {
		t.Fatalf("job id %q", id)
	}
	return id
}

func jobTasks(c jobsClient, jobID string) []legacyapi.Task {
	res, err := c.FindTasks(context.Background(), legacyapi.TaskQuery{Criteria: legacyapi.Criteria{JobIDs: []string{jobID}}, Page: legacyapi.Page{PageSize: legacyapi.MaxPageSize}})
	if err != nil {
		return nil
	}
	return res.Items
}

// waitJob waits for the job to reach state; calls may fail meanwhile (a
// leader changing), so errors only count as "not yet".
func waitJob(t *testing.T, c jobsClient, id, state string) legacyapi.Job {
	t.Helper()
	var j legacyapi.Job
	eventually(t, jobWait, "job "+id+" "+state, func() bool {
		var err error
		j, err = c.GetJob(context.Background(), id)
		return err == nil && j.Status.State == state
	})
	return j
}

// waitTasks waits until the job has n tasks in state and returns them all.
func waitTasks(t *testing.T, c jobsClient, jobID, state string, n int) []legacyapi.Task {
	t.Helper()
	var ts []legacyapi.Task
	eventually(t, jobWait, "job "+jobID+": tasks "+state, func() bool {
		ts = jobTasks(c, jobID)
		return len(inState(ts, state)) == n
	})
	return ts
}

func inState(ts []legacyapi.Task, state string) []legacyapi.Task {
	var out []legacyapi.Task
	for _, t := range ts {
		if t.Status.State == state {
			out = append(out, t)
		}
	}
	return out
}

func states(t legacyapi.Task) string {
	var s []string
	for _, st := range t.StatusHistory {
		s = append(s, st.State)
	}
	return strings.Join(s, ",")
}

func TestJobAPIBatch(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m := startMaster(t, "m1", zkURL)
	startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "m1 to lead with the agent", func() bool { return m.IsLeader() && len(m.Agents()) == 1 })
	c := readyJobs(t, jobClient(m.url))
	ctx := context.Background()

	t.Run("succeeds", func(t *testing.T) {
		id := createJob(t, c, shJob("ok", 2, 0, "exit 0"))
		j := waitJob(t, c, id, legacyapi.JobFinished)
		if j.Status.ReasonCode != reasonNormal || len(j.StatusHistory) != 2 {
			t.Fatalf("job status %+v, history %+v", j.Status, j.StatusHistory)
		}
		ts := jobTasks(c, id)
		if len(ts) != 2 {
			t.Fatalf("%d tasks, want 2", len(ts))
		}
		indexes := map[string]bool{}
		for _, task := range ts {
			ctx := task.TaskContext
			if task.Status.State != legacyapi.TaskFinished || task.Status.ReasonCode != reasonNormal ||
				ctx[legacyapi.ContextExitCode] != "0" || ctx[legacyapi.ContextBackend] != "legacy" ||
				ctx[legacyapi.ContextAgentID] != "agent-0" || ctx[legacyapi.ContextAgentHost] != "127.0.0.1" ||
				!strings.HasPrefix(task.ID, legacyapi.LegacyPrefix) || task.ID == id {
				t.Fatalf("task %+v", task)
			}
			if got := states(task); got != "Accepted,Launched,Started,Finished" {
				t.Fatalf("task %s history %s", task.ID, got)
			}
			indexes[ctx[legacyapi.ContextTaskIndex]] = true
		}
		if !indexes["0"] || !indexes["1"] {
			t.Fatalf("task indexes %v", indexes)
		}
	})

	t.Run("retries a failure", func(t *testing.T) {
		id := createJob(t, c, shJob("fails", 1, 1, "exit 3"))
		j := waitJob(t, c, id, legacyapi.JobFinished)
		if j.Status.ReasonCode != reasonFailed {
			t.Fatalf("job status %+v", j.Status)
		}
		ts := jobTasks(c, id)
		if len(ts) != 2 {
			t.Fatalf("%d tasks, want 2 (one retry)", len(ts))
		}
		first, second := ts[0], ts[1] // key order: creation
		if second.TaskContext[legacyapi.ContextResubmitOf] != first.ID || first.TaskContext[legacyapi.ContextResubmitOf] != "" {
			t.Fatalf("resubmitOf: first %v, second %v", first.TaskContext, second.TaskContext)
		}
		for _, task := range ts {
			if task.Status.ReasonCode != reasonFailed || task.Status.ReasonMessage != "exited with code 3" ||
				task.TaskContext[legacyapi.ContextExitCode] != "3" || task.TaskContext[legacyapi.ContextTaskIndex] != "0" {
				t.Fatalf("task %s: status %+v context %v", task.ID, task.Status, task.TaskContext)
			}
		}
	})

	t.Run("unknown image", func(t *testing.T) {
		d := shJob("noimage", 1, 3, "")
		d.Container.Image.Name = "no-such-image"
		d.Container.EntryPoint, d.Container.Command = nil, nil // the image must supply the command
		id := createJob(t, c, d)
		waitJob(t, c, id, legacyapi.JobFinished)
		ts := jobTasks(c, id)
		if len(ts) != 1 { // refused requests are not retried
			t.Fatalf("%d tasks", len(ts))
		}
		st := ts[0].Status
		if st.ReasonCode != reasonInvalidRequest || !strings.Contains(st.ReasonMessage, "not found in catalog") {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("runtime limit", func(t *testing.T) {
		d := shJob("slow", 1, 2, "sleep 60")
		d.Batch.RuntimeLimitSec = 1
		id := createJob(t, c, d)
		waitJob(t, c, id, legacyapi.JobFinished)
		ts := jobTasks(c, id)
		if len(ts) != 1 { // not retried without retryOnRuntimeLimit
			t.Fatalf("%d tasks", len(ts))
		}
		if st := ts[0].Status; st.ReasonCode != reasonRuntimeLimit || !strings.Contains(states(ts[0]), "KillInitiated") {
			t.Fatalf("status %+v, history %s", st, states(ts[0]))
		}
	})

	t.Run("pages with a cursor", func(t *testing.T) {
		all, err := c.FindTasks(ctx, legacyapi.TaskQuery{Page: legacyapi.Page{PageSize: legacyapi.MaxPageSize}})
		if err != nil || all.Pagination.HasMore || len(all.Items) < 5 {
			t.Fatalf("all tasks: %d, %+v, %v", len(all.Items), all.Pagination, err)
		}
		var walked []string
		cursor := ""
		for {
			res, err := c.FindTasks(ctx, legacyapi.TaskQuery{Page: legacyapi.Page{PageSize: 1, Cursor: cursor}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Items) != 1 || res.Pagination.TotalItems != len(all.Items) {
				t.Fatalf("page after %d: %d items, %+v", len(walked), len(res.Items), res.Pagination)
			}
			walked = append(walked, res.Items[0].ID)
			if !res.Pagination.HasMore {
				break
			}
			cursor = res.Pagination.Cursor
		}
		for i, task := range all.Items {
			if i >= len(walked) || walked[i] != task.ID {
				t.Fatalf("walked %v, want the order of %d tasks", walked, len(all.Items))
			}
		}
		jobs, err := c.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobType: "batch", JobState: legacyapi.JobFinished}})
		if err != nil || len(jobs.Items) != 4 {
			t.Fatalf("finished batch jobs: %d, %v", len(jobs.Items), err)
		}
	})

	t.Run("unknown ids and wrong kinds", func(t *testing.T) {
		for what, err := range map[string]error{
			"GetJob":   func() error { _, err := c.GetJob(ctx, "legacy-job-nope"); return err }(),
			"GetTask":  func() error { _, err := c.GetTask(ctx, "legacy-nope"); return err }(),
			"KillJob":  c.KillJob(ctx, "legacy-job-nope"),
			"KillTask": c.KillTask(ctx, "legacy-nope", false),
		} {
			var re *legacyapi.RemoteError
			if !errors.Is(err, legacyapi.ErrNotFound) || !errors.As(err, &re) || re.Code != http.StatusNotFound {
				t.Errorf("%s: %v, want 404", what, err)
			}
		}
		jobs, err := c.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobType: "batch"}})
		if err != nil || len(jobs.Items) == 0 {
			t.Fatalf("batch jobs: %+v, %v", jobs, err)
		}
		id := jobs.Items[0].ID
		if err := c.UpdateCapacity(ctx, id, legacyapi.Capacity{Desired: 1, Max: 1}); !errors.Is(err, legacyapi.ErrInvalid) {
			t.Fatalf("UpdateCapacity of a batch job: %v, want 400", err)
		}
		if err := c.KillJob(ctx, id); err != nil { // a finished job: no-op
			t.Fatalf("KillJob of a finished job: %v", err)
		}
	})
}

func TestJobAPIService(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m := startMaster(t, "m1", zkURL)
	startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "m1 to lead with the agent", func() bool { return m.IsLeader() && len(m.Agents()) == 1 })
	c := readyJobs(t, jobClient(m.url))
	ctx := context.Background()

	id := createJob(t, c, serviceJob("web", 1, 2, 5))
	waitTasks(t, c, id, legacyapi.TaskStarted, 2)

	if err := c.UpdateCapacity(ctx, id, legacyapi.Capacity{Min: 1, Desired: 3, Max: 5}); err != nil {
		t.Fatal(err)
	}
	ts := waitTasks(t, c, id, legacyapi.TaskStarted, 3)

	// Shrink: one task fewer, and desired with it.
	victim := inState(ts, legacyapi.TaskStarted)[0].ID
	if err := c.KillTask(ctx, victim, true); err != nil {
		t.Fatal(err)
	}
	if err := c.KillTask(ctx, victim, true); !errors.Is(err, legacyapi.ErrNotFound) {
		t.Fatalf("a second kill of %s: %v, want 404", victim, err)
	}
	ts = waitTasks(t, c, id, legacyapi.TaskStarted, 2)
	eventually(t, jobWait, "the shrunk task Finished", func() bool {
		task, err := c.GetTask(ctx, victim)
		return err == nil && task.Status.State == legacyapi.TaskFinished
	})
	if task, _ := c.GetTask(ctx, victim); task.Status.ReasonCode != reasonKilled || !strings.Contains(states(task), "KillInitiated") {
		t.Fatalf("shrunk task: %+v (%s)", task.Status, states(task))
	}
	if j, _ := c.GetJob(ctx, id); j.JobDescriptor.Service.Capacity.Desired != 2 {
		t.Fatalf("desired after shrink: %+v", j.JobDescriptor.Service.Capacity)
	}

	// A kill without shrink is replaced.
	victim = inState(ts, legacyapi.TaskStarted)[0].ID
	if err := c.KillTask(ctx, victim, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, jobWait, "a replacement", func() bool {
		ts = jobTasks(c, id)
		return len(ts) == 4 && len(inState(ts, legacyapi.TaskStarted)) == 2
	})

	// Enable/disable only records the flag.
	if err := c.SetEnabled(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if j, _ := c.GetJob(ctx, id); j.JobDescriptor.Service.Enabled {
		t.Fatal("still enabled")
	}

	// Scale down to the minimum; below it a shrink is refused.
	if err := c.UpdateCapacity(ctx, id, legacyapi.Capacity{Min: 1, Desired: 1, Max: 5}); err != nil {
		t.Fatal(err)
	}
	ts = waitTasks(t, c, id, legacyapi.TaskStarted, 1)
	eventually(t, jobWait, "the scaled-down task Finished", func() bool {
		ts = jobTasks(c, id)
		for _, task := range ts {
			if task.Status.ReasonCode == reasonScaledDown && task.Status.State == legacyapi.TaskFinished {
				return true
			}
		}
		return false
	})
	last := inState(ts, legacyapi.TaskStarted)[0].ID
	if err := c.Client.KillTask(ctx, last, legacyapi.TaskKill{Shrink: true, PreventMinSizeUpdate: true}); !errors.Is(err, legacyapi.ErrConflict) {
		t.Fatalf("shrink below min, preventMinSizeUpdate: %v, want 409", err)
	}

	// Attributes of the job and of a task, stored with them.
	if err := c.UpdateJob(ctx, id, legacyapi.JobUpdate{Attributes: map[string]string{"source": "spinnaker", "name": "web"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateJob(ctx, id, legacyapi.JobUpdate{DeleteAttributes: []string{"name"}}); err != nil {
		t.Fatal(err)
	}
	if j, _ := c.GetJob(ctx, id); j.JobDescriptor.Attributes["source"] != "spinnaker" || j.JobDescriptor.Attributes["name"] != "" {
		t.Fatalf("job attributes %v", j.JobDescriptor.Attributes)
	}
	if err := c.UpdateTask(ctx, last, legacyapi.TaskUpdate{Attributes: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if task, _ := c.GetTask(ctx, last); task.Attributes["k"] != "v" {
		t.Fatalf("task attributes %v", task.Attributes)
	}
	found, err := c.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{Attributes: map[string][]string{"source": {"spinnaker"}}}})
	if err != nil || len(found.Items) != 1 || found.Items[0].ID != id {
		t.Fatalf("jobs with attribute source=spinnaker: %+v, %v", found.Items, err)
	}
	if err := c.MoveTask(ctx, legacyapi.TaskMove{SourceJobID: id, TargetJobID: "legacy-job-other", TaskID: last}); !errors.Is(err, legacyapi.ErrUnimplemented) {
		t.Fatalf("MoveTask: %v, want 501", err)
	}

	// KillJob: every task killed, then the job Finished.
	if err := c.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, id, legacyapi.JobFinished)
	if j.Status.ReasonCode != reasonKilled || j.StatusHistory[1].State != legacyapi.JobKillInitiated {
		t.Fatalf("job: %+v", j.StatusHistory)
	}
	for _, task := range jobTasks(c, id) {
		if task.Status.State != legacyapi.TaskFinished || (task.Status.ReasonCode != reasonKilled && task.Status.ReasonCode != reasonScaledDown) {
			t.Fatalf("task %s after KillJob: %+v", task.ID, task.Status)
		}
	}
	if err := c.UpdateCapacity(ctx, id, legacyapi.Capacity{Min: 1, Desired: 2, Max: 5}); !errors.Is(err, legacyapi.ErrTerminating) {
		t.Fatalf("resizing a finished job: %v, want 412", err)
	}
}

// TestJobTasksWaitForRoom: a task with no room stays Accepted and is
// placed once room frees up, by the job loop.
func TestJobTasksWaitForRoom(t *testing.T) {
	m := startMaster(t, "m", "") // standalone: jobs in memory
	startAgent(t, "agent-0", m.url, "cpus:1;mem:1024")
	eventually(t, jobWait, "agent registered", func() bool { return len(m.Agents()) == 1 })
	c := readyJobs(t, jobClient(m.url))
	d := shJob("big", 2, 0, "sleep 2")
	d.Container.Resources.CPU = 0.6
	id := createJob(t, c, d)
	eventually(t, jobWait, "one task Started, one Accepted", func() bool {
		ts := jobTasks(c, id)
		return len(inState(ts, legacyapi.TaskStarted)) == 1 && len(inState(ts, legacyapi.TaskAccepted)) == 1
	})
	waitJob(t, c, id, legacyapi.JobFinished)
	for _, task := range jobTasks(c, id) {
		if task.Status.ReasonCode != reasonNormal {
			t.Fatalf("task %s: %+v", task.ID, task.Status)
		}
	}
}

func TestJobAPIRedirectAndFailover(t *testing.T) {
	addr, _ := zktest.Start(t)
	zkURL := "zk://" + addr + "/mesos"
	m1 := startMaster(t, "m1", zkURL)
	eventually(t, jobWait, "m1 to lead", m1.IsLeader)
	ag := startAgent(t, "agent-0", zkURL, "cpus:4;mem:2048")
	eventually(t, jobWait, "the agent at m1", func() bool { return len(m1.Agents()) == 1 })
	ctx := context.Background()

	// A master that leads not and knows no leader answers 503, Titus-shaped.
	lost := startMaster(t, "lost", "zk://127.0.0.1:1/nowhere")
	resp, err := http.Get(lost.url + "/api/v3/jobs")
	if err != nil {
		t.Fatal(err)
	}
	var eb legacyapi.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || eb.StatusCode != http.StatusServiceUnavailable || eb.Message == "" {
		t.Fatalf("no leader: %d %+v", resp.StatusCode, eb)
	}

	svc := createJob(t, readyJobs(t, jobClient(m1.url)), serviceJob("web", 0, 2, 4))
	batch := createJob(t, jobClient(m1.url), shJob("short", 1, 0, "sleep 3; exit 4"))
	waitTasks(t, jobClient(m1.url), svc, legacyapi.TaskStarted, 2)
	bt := waitTasks(t, jobClient(m1.url), batch, legacyapi.TaskStarted, 1)[0]

	// A follower redirects: raw, a 307 to the leader; through the client,
	// the call simply works.
	m2 := startMaster(t, "m2", zkURL)
	eventually(t, jobWait, "m2 to know m1 leads", func() bool { l, ok := m2.Leader(); return ok && l.ID == "m1" })
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(m2.url + "/api/v3/jobs/" + svc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != m1.url+"/api/v3/jobs/"+svc {
		t.Fatalf("follower: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	viaFollower := jobClient(m2.url)
	if j, err := viaFollower.GetJob(ctx, svc); err != nil || j.ID != svc {
		t.Fatalf("GetJob via the follower: %+v, %v", j, err)
	}
	if err := viaFollower.UpdateCapacity(ctx, svc, legacyapi.Capacity{Min: 0, Desired: 3, Max: 4}); err != nil {
		t.Fatalf("PUT instances via the follower: %v", err)
	}
	before := waitTasks(t, viaFollower, svc, legacyapi.TaskStarted, 3)

	// m2 stops contending for now, so that the batch task can end while no
	// master leads; then m1 goes, and m2 comes back to lead.
	m2.Stop()
	m1.Stop()
	if _, err := agentclient.New(ag.url, agentclient.Options{}).Wait(ctx, bt.ID); err != nil {
		t.Fatalf("waiting for the batch task on its agent: %v", err)
	}
	m3 := startMaster(t, "m3", zkURL)
	eventually(t, jobWait, "m3 to lead", m3.IsLeader)
	c := readyJobs(t, jobClient(m3.url))

	// The service job survived with its capacity; its running tasks were
	// adopted, not replaced.
	j := waitJob(t, c, svc, legacyapi.JobAccepted)
	if j.JobDescriptor.Service.Capacity.Desired != 3 {
		t.Fatalf("capacity after failover: %+v", j.JobDescriptor.Service.Capacity)
	}
	after := waitTasks(t, c, svc, legacyapi.TaskStarted, 3)
	if len(after) != 3 {
		t.Fatalf("%d tasks after failover, want the same 3", len(after))
	}
	ids := map[string]bool{}
	for _, task := range before {
		ids[task.ID] = true
	}
	for _, task := range after {
		if !ids[task.ID] || task.TaskContext[legacyapi.ContextAgentID] != "agent-0" {
			t.Fatalf("task %s after failover is not one of %v", task.ID, ids)
		}
	}
	// The batch task ended between leaders: the agent still knows how.
	waitJob(t, c, batch, legacyapi.JobFinished)
	task, err := c.GetTask(ctx, bt.ID)
	if err != nil || task.Status.ReasonCode != reasonFailed || task.TaskContext[legacyapi.ContextExitCode] != "4" {
		t.Fatalf("batch task after failover: %+v, %v", task, err)
	}

	// The new leader runs the job as its own.
	if err := c.KillJob(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, svc, legacyapi.JobFinished)
	for _, task := range jobTasks(c, svc) {
		if task.Status.ReasonCode != reasonKilled {
			t.Fatalf("task %s: %+v", task.ID, task.Status)
		}
	}
}

func TestPlacementPrefersSoftConstraints(t *testing.T) {
	agent := func(zone string) *agentState {
		return &agentState{info: mesos.AgentInfo{Attributes: []mesos.Attribute{{
			Name: "zone", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: zone},
		}}}}
	}
	p := &placement{
		ids:    []string{"a", "b", "c"},
		agents: map[string]*agentState{"a": agent("z1"), "b": agent("z2"), "c": agent("z2")},
		free:   map[string]Resources{"a": {"cpus": 1, "mem": 100}, "b": {"cpus": 1, "mem": 100}, "c": {"cpus": 1, "mem": 100}},
	}
	spec := TaskSpec{Resources: Resources{"cpus": 0.6, "mem": 10}}
	if got, _ := p.pick(spec); got != "a" { // first fit
		t.Fatalf("no preference: %q", got)
	}
	spec.Preferences = map[string]string{"zone": "z2"}
	if got, _ := p.pick(spec); got != "b" {
		t.Fatalf("prefer z2: %q", got)
	}
	if got, _ := p.pick(spec); got != "c" { // b is full now
		t.Fatalf("prefer z2, b full: %q", got)
	}
	spec.Constraints = map[string]string{"zone": "z2"}
	if got, why := p.pick(spec); got != "" || !strings.Contains(why, "a: attribute zone") || !strings.Contains(why, "b: free") {
		t.Fatalf("require z2, all full: %q (%s)", got, why)
	}
}

func TestRetryDelay(t *testing.T) {
	exp := &legacyapi.RetryPolicy{ExponentialBackOff: &legacyapi.ExponentialRetry{InitialDelayMs: 100, MaxDelayIntervalMs: 1000, Retries: 10}}
	delayed := &legacyapi.RetryPolicy{Delayed: &legacyapi.DelayedRetry{InitialDelayMs: 50, DelayMs: 300, Retries: 3}}
	for _, c := range []struct {
		p    *legacyapi.RetryPolicy
		n    int
		want time.Duration
	}{
		{nil, 1, 0},
		{exp, 0, 0},
		{exp, 1, 100 * time.Millisecond},
		{exp, 3, 400 * time.Millisecond},
		{exp, 9, time.Second},
		{delayed, 1, 50 * time.Millisecond},
		{delayed, 2, 300 * time.Millisecond},
		{&legacyapi.RetryPolicy{Immediate: &legacyapi.ImmediateRetry{Retries: 1}}, 1, 0},
	} {
		if got := retryDelay(c.p, c.n); got != c.want {
			t.Errorf("retryDelay(%+v, %d) = %v, want %v", c.p, c.n, got, c.want)
		}
	}
}

// TestJobFeed follows the change feed over HTTP: the snapshot holds the
// active jobs and tasks, then every change comes as it happens, up to the
// job's end; a new leadership ends the feed.
func TestJobFeed(t *testing.T) {
	m := startMaster(t, "m", "") // standalone: jobs in memory
	startAgent(t, "agent-0", m.url, "cpus:2;mem:1024")
	eventually(t, jobWait, "agent registered", func() bool { return len(m.Agents()) == 1 })
	c := readyJobs(t, jobClient(m.url))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := createJob(t, c, serviceJob("before", 0, 1, 1))
	waitTasks(t, c, before, legacyapi.TaskStarted, 1)

	changes := make(chan legacyapi.Change, 1024)
	ended := make(chan error, 1)
	go func() {
		ended <- c.Observe(ctx, func(ch legacyapi.Change) error {
			select {
			case changes <- ch:
				return nil
			default:
				return errors.New("test reader full")
			}
		})
	}()
	next := func(what string, ok func(legacyapi.Change) bool) {
		t.Helper()
		timeout := time.After(jobWait)
		for {
			select {
			case ch := <-changes:
				if ok(ch) {
					return
				}
			case err := <-ended:
				t.Fatalf("feed ended waiting for %s: %v", what, err)
			case <-timeout:
				t.Fatalf("no %s in the feed", what)
			}
		}
	}
	snapJob, snapTask := false, false
	next("the snapshot end", func(ch legacyapi.Change) bool {
		snapJob = snapJob || (ch.Job != nil && ch.Job.ID == before)
		snapTask = snapTask || (ch.Task != nil && ch.Task.JobID == before && ch.Task.Status.State == legacyapi.TaskStarted)
		return ch.SnapshotEnd
	})
	if !snapJob || !snapTask {
		t.Fatalf("snapshot: job %v, its Started task %v", snapJob, snapTask)
	}

	id := createJob(t, c, shJob("feed", 1, 0, "sleep 1"))
	next("the new job", func(ch legacyapi.Change) bool { return ch.Job != nil && ch.Job.ID == id })
	next("its task Started", func(ch legacyapi.Change) bool {
		return ch.Task != nil && ch.Task.JobID == id && ch.Task.Status.State == legacyapi.TaskStarted
	})
	next("its task Finished", func(ch legacyapi.Change) bool {
		return ch.Task != nil && ch.Task.JobID == id && ch.Task.Status.State == legacyapi.TaskFinished
	})
	next("the job Finished", func(ch legacyapi.Change) bool {
		return ch.Job != nil && ch.Job.ID == id && ch.Job.Status.State == legacyapi.JobFinished
	})
	if err := c.UpdateJob(ctx, before, legacyapi.JobUpdate{Attributes: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	next("the attribute change", func(ch legacyapi.Change) bool {
		return ch.Job != nil && ch.Job.ID == before && ch.Job.JobDescriptor.Attributes["a"] == "b"
	})

	m.setLeading(false) // as a deposed master: the feed must end
	select {
	case err := <-ended:
		if !errors.Is(err, legacyapi.ErrUnavailable) {
			t.Fatalf("feed after the leadership: %v", err)
		}
	case <-time.After(jobWait):
		t.Fatal("the feed outlived the leadership")
	}
}
