package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/vk-titus/vk-titus/api/titus"
)

// grpcJobAPI dials the gateway's gRPC job API as clouddriver does, with
// the stack's test client certificate (allowed everything).
func grpcJobAPI(t *testing.T) titus.JobManagementServiceClient {
	t.Helper()
	return grpcJobAPIWith(t, env.JobAPICredentials(false))
}

// grpcJobAPIWith dials the gRPC job API with creds.
func grpcJobAPIWith(t *testing.T, creds credentials.TransportCredentials) titus.JobManagementServiceClient {
	t.Helper()
	addr := env.JobAPIGRPC
	if addr == "" {
		t.Fatal("the stack has no gRPC job API (LEGACY_API_GRPC): it needs the gateway (MASTERS > 0)")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return titus.NewJobManagementServiceClient(conn)
}

func spinnakerCtx(t *testing.T, d time.Duration) context.Context {
	return metadata.AppendToOutgoingContext(ctxFor(t, d), "X-Titus-CallerId", "clouddriver", "X-Titus-CallReason", "e2e")
}

// observed collects an ObserveJobs stream once its snapshot has ended.
type observed struct {
	mu      sync.Mutex
	jobs    map[string][]string // job id -> states seen
	tasks   map[string]int      // job id -> task updates seen
	ended   bool                // snapshotEnd came
	archive map[string]bool     // ids seen archived
}

func observeJobs(t *testing.T, c titus.JobManagementServiceClient, app string) *observed {
	t.Helper()
	ctx, cancel := context.WithCancel(spinnakerCtx(t, 10*time.Minute))
	t.Cleanup(cancel)
	s, err := c.ObserveJobs(ctx, &titus.ObserveJobsQuery{FilteringCriteria: map[string]string{"applicationName": app}})
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{jobs: map[string][]string{}, tasks: map[string]int{}, archive: map[string]bool{}}
	snapshot := make(chan struct{})
	go func() {
		for {
			n, err := s.Recv()
			if err != nil {
				return
			}
			o.mu.Lock()
			switch {
			case n.GetSnapshotEnd() != nil && !o.ended:
				o.ended = true
				close(snapshot)
			case n.GetJobUpdate() != nil:
				j := n.GetJobUpdate().GetJob()
				o.jobs[j.GetId()] = append(o.jobs[j.GetId()], j.GetStatus().GetState().String())
				if n.GetJobUpdate().GetArchived() {
					o.archive[j.GetId()] = true
				}
			case n.GetTaskUpdate() != nil:
				o.tasks[n.GetTaskUpdate().GetTask().GetJobId()]++
			}
			o.mu.Unlock()
		}
	}()
	select {
	case <-snapshot:
	case <-time.After(time.Minute):
		t.Fatal("ObserveJobs: no snapshotEnd within a minute")
	}
	return o
}

// waitTasksGRPC polls FindTasks (clouddriver's query) until n tasks of the
// job are in a live state.
func waitTasksGRPC(t *testing.T, c titus.JobManagementServiceClient, job string, n int) []*titus.Task {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last []*titus.Task
	for time.Now().Before(deadline) {
		res, err := c.FindTasks(spinnakerCtx(t, 30*time.Second), &titus.TaskQuery{Page: &titus.Page{PageSize: 1000},
			FilteringCriteria: map[string]string{"jobIds": job, "taskStates": "Launched,StartInitiated,Started"}})
		if err == nil {
			last = res.GetItems()
			started := 0
			for _, task := range last {
				if task.GetStatus().GetState() == titus.TaskStatus_Started {
					started++
				}
			}
			if len(last) == n && started == n {
				return last
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("job %s: want %d Started tasks, have %v", job, n, last)
	return nil
}

// What Spinnaker's clouddriver does, over gRPC, in both migration stages
// and across a stage change: create, a FindJobs cursor loop with the
// attributes filter and a projection, FindTasks by state, ObserveJobs to
// snapshotEnd and then the job's updates, resize, disable, KillTask with
// shrink (NOT_FOUND on a second kill), KillJob.
func TestSpinnakerOverGRPC(t *testing.T) {
	c := grpcJobAPI(t)
	app := appName(t, "spinnaker")
	var jobs []string
	for _, stage := range []string{"legacy", "kube"} {
		setStage(t, app, stage)
		obs := observeJobs(t, c, app)
		id, err := c.CreateJob(spinnakerCtx(t, time.Minute), &titus.JobDescriptor{
			ApplicationName: app, Owner: &titus.Owner{TeamEmail: "deploy@example.com"},
			Attributes: map[string]string{"source": "spinnaker", "name": app + "-" + stage},
			Container: &titus.Container{Image: &titus.Image{Name: "busybox", Tag: "latest"},
				Resources:  &titus.ContainerResources{Cpu: 0.05, MemoryMB: 32, DiskMB: 10},
				EntryPoint: []string{"sh", "-c"}, Command: []string{"sleep 600"}},
			JobSpec: &titus.JobDescriptor_Service{Service: &titus.ServiceJobSpec{
				Capacity: &titus.Capacity{Min: 0, Desired: 2, Max: 5}, Enabled: true}},
		})
		if err != nil {
			t.Fatalf("stage %s: CreateJob: %v", stage, err)
		}
		job := id.GetId()
		if !strings.HasPrefix(job, stage+"-") {
			t.Fatalf("stage %s: job %s went to the other world", stage, job)
		}
		jobs = append(jobs, job)

		// The cursor loop, one job a page, with the attributes filter and
		// clouddriver's projection: every job of the app so far, once.
		seen := map[string]bool{}
		q := &titus.JobQuery{Page: &titus.Page{PageSize: 1},
			FilteringCriteria: map[string]string{"jobType": "SERVICE", "attributes": "source:spinnaker", "attributes.op": "and", "appName": app},
			Fields:            []string{"id", "jobDescriptor.attributes.name"}}
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("FindJobs: the cursor loop does not end")
			}
			res, err := c.FindJobs(spinnakerCtx(t, 30*time.Second), q)
			if err != nil {
				t.Fatalf("FindJobs: %v", err)
			}
			for _, j := range res.GetItems() {
				if j.GetStatus() != nil || j.GetJobDescriptor().GetAttributes()["name"] == "" {
					t.Errorf("projection: %v", j)
				}
				seen[j.GetId()] = true
			}
			if !res.GetPagination().GetHasMore() {
				break
			}
			q.Page.Cursor = res.GetPagination().GetCursor()
		}
		for _, j := range jobs {
			if !seen[j] {
				t.Errorf("stage %s: FindJobs missed %s (saw %v)", stage, j, seen)
			}
		}

		tasks := waitTasksGRPC(t, c, job, 2)
		if _, err := c.UpdateJobCapacity(spinnakerCtx(t, 30*time.Second), &titus.JobCapacityUpdate{JobId: job,
			Capacity: &titus.Capacity{Min: 0, Desired: 3, Max: 5}}); err != nil {
			t.Fatalf("UpdateJobCapacity: %v", err)
		}
		waitTasksGRPC(t, c, job, 3)
		if _, err := c.UpdateJobStatus(spinnakerCtx(t, 30*time.Second), &titus.JobStatusUpdate{Id: job, EnableStatus: false}); err != nil {
			t.Fatalf("UpdateJobStatus: %v", err)
		}
		victim := tasks[0].GetId()
		if _, err := c.KillTask(spinnakerCtx(t, 30*time.Second), &titus.TaskKillRequest{TaskId: victim, Shrink: true}); err != nil {
			t.Fatalf("KillTask: %v", err)
		}
		if _, err := c.KillTask(spinnakerCtx(t, 30*time.Second), &titus.TaskKillRequest{TaskId: victim, Shrink: true}); grpcstatus.Code(err) != codes.NotFound {
			t.Errorf("second KillTask of %s: %v, want NOT_FOUND", victim, err)
		}
		waitTasksGRPC(t, c, job, 2)
		if _, err := c.KillJob(spinnakerCtx(t, 30*time.Second), &titus.JobId{Id: job}); err != nil {
			t.Fatalf("KillJob: %v", err)
		}
		// The stream saw the job and its tasks change, and the job end.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			obs.mu.Lock()
			states, tasksSeen, archived := obs.jobs[job], obs.tasks[job], obs.archive[job]
			obs.mu.Unlock()
			if archived && tasksSeen >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stage %s: ObserveJobs saw job %s states %v, %d task updates, archived %v", stage, job, states, tasksSeen, archived)
			}
			time.Sleep(time.Second)
		}
	}
	// After the stage change the legacy job is still found where it lives.
	if j, err := c.FindJob(spinnakerCtx(t, 30*time.Second), &titus.JobId{Id: jobs[0]}); err != nil || j.GetId() != jobs[0] {
		t.Errorf("FindJob of the legacy job after the stage change: %v %v", j, err)
	}
}
