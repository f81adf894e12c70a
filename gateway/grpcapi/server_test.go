package grpcapi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/gateway"
	"github.com/vk-titus/vk-titus/gateway/grpcapi"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/legacyapi/legacyapitest"
	"github.com/vk-titus/vk-titus/migration"
)

// wait is generous: the machine running the tests is small and busy.
const wait = 20 * time.Second

// stages sends every application's new jobs to one stage, which a test
// may change.
type stages struct{ stage *migration.Stage }

func (s stages) Resolve(string, string) migration.Decision {
	return migration.Decision{Stage: *s.stage}
}

type env struct {
	client       titus.JobManagementServiceClient
	legacy, kube *legacyapitest.Mem
	hub          *observe.Hub
	stage        *migration.Stage
}

// start serves the gateway's gRPC API over bufconn: the router over two
// worlds in memory, the hub following both.
func start(t testing.TB, cfg observe.Config, dial ...grpc.DialOption) *env {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	e := &env{legacy: legacyapitest.NewMem(legacyapi.LegacyPrefix), kube: legacyapitest.NewMem(legacyapi.KubePrefix)}
	st, _ := migration.ParseStage("legacy")
	e.stage = &st
	router := gateway.NewRouter(e.legacy, e.kube, stages{e.stage}, log)
	var err error
	e.hub, err = observe.New(cfg, []observe.Source{
		{Name: "legacy", Feed: e.legacy, Backend: e.legacy}, {Name: "kube", Feed: e.kube, Backend: e.kube},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go e.hub.Run(ctx)

	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpcapi.Options(10000)...)
	grpcapi.New(router, e.hub, legacyapi.TitusLimits(), log).Register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, dial...)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.client = titus.NewJobManagementServiceClient(conn)
	return e
}

func (e *env) setStage(t *testing.T, s string) {
	st, err := migration.ParseStage(s)
	if err != nil {
		t.Fatal(err)
	}
	*e.stage = st
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func spinnakerJob(app string, desired uint32) *titus.JobDescriptor {
	return &titus.JobDescriptor{
		ApplicationName: app, Owner: &titus.Owner{TeamEmail: "deploy@example.com"},
		Attributes: map[string]string{"source": "spinnaker", "name": app + "-v000"},
		Container: &titus.Container{Image: &titus.Image{Name: "nginx", Tag: "1.25"},
			Resources: &titus.ContainerResources{Cpu: 0.5, EfsMounts: nil}},
		JobSpec: &titus.JobDescriptor_Service{Service: &titus.ServiceJobSpec{
			Capacity: &titus.Capacity{Min: 1, Desired: desired, Max: 10}, Enabled: true,
			MigrationPolicy: &titus.MigrationPolicy{Policy: &titus.MigrationPolicy_SystemDefault_{SystemDefault: &titus.MigrationPolicy_SystemDefault{}}}}},
		DisruptionBudget: &titus.JobDisruptionBudget{Policy: &titus.JobDisruptionBudget_SelfManaged_{SelfManaged: &titus.JobDisruptionBudget_SelfManaged{RelocationTimeMs: 60000}},
			Rate: &titus.JobDisruptionBudget_RateUnlimited_{RateUnlimited: &titus.JobDisruptionBudget_RateUnlimited{}}},
	}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%v: code %v, want %v", err, got, code)
	}
}

// The calls clouddriver makes, in both worlds: create, a cursor loop with
// filters and projection, tasks by state, resizing, enabling, killing.
func TestUnaryCallsInBothWorlds(t *testing.T) {
	e := start(t, observe.Config{})
	ctx := ctxT(t)
	var ids []string
	for _, stage := range []string{"legacy", "kube", "legacy", "kube", "kube"} {
		e.setStage(t, stage)
		id, err := e.client.CreateJob(ctx, spinnakerJob("web", 2))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(id.GetId(), stage+"-") {
			t.Fatalf("stage %s: job %s", stage, id.GetId())
		}
		ids = append(ids, id.GetId())
	}
	if _, err := e.client.CreateJob(ctx, &titus.JobDescriptor{ApplicationName: "x"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "owner.teamEmail") {
		t.Fatalf("bad descriptor: %v", err)
	}

	job, err := e.client.FindJob(ctx, &titus.JobId{Id: ids[1]})
	if err != nil {
		t.Fatal(err)
	}
	r := job.GetJobDescriptor().GetContainer().GetResources()
	if r.GetCpu() != 1 || r.GetMemoryMB() != 512 || r.GetDiskMB() != 10000 || job.GetJobDescriptor().GetCapacityGroup() != "DEFAULT" ||
		job.GetJobDescriptor().GetDisruptionBudget().GetSelfManaged().GetRelocationTimeMs() != 60000 {
		t.Fatalf("job as created: %v", job.GetJobDescriptor())
	}

	// clouddriver's loop: pageSize, cursor, attributes, projection.
	seen := map[string]bool{}
	q := &titus.JobQuery{Page: &titus.Page{PageSize: 2},
		FilteringCriteria: map[string]string{"jobType": "SERVICE", "attributes": "source:spinnaker,name:web-v000", "attributes.op": "and", "appName": "web"},
		Fields:            []string{"id", "jobDescriptor.attributes.name"}}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		res, err := e.client.FindJobs(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.GetItems() {
			if seen[j.GetId()] || j.GetStatus() != nil || len(j.GetJobDescriptor().GetAttributes()) != 1 {
				t.Fatalf("page item %v", j)
			}
			seen[j.GetId()] = true
		}
		if res.GetPagination().GetTotalItems() != 5 {
			t.Fatalf("pagination %v", res.GetPagination())
		}
		if !res.GetPagination().GetHasMore() {
			break
		}
		q.Page.Cursor = res.GetPagination().GetCursor()
	}
	if len(seen) != 5 {
		t.Fatalf("walked %d jobs of 5", len(seen))
	}

	tasks, err := e.client.FindTasks(ctx, &titus.TaskQuery{Page: &titus.Page{PageSize: 1000},
		FilteringCriteria: map[string]string{"jobIds": ids[0] + "," + ids[1], "taskStates": "Launched,StartInitiated,Started"}})
	if err != nil || len(tasks.GetItems()) != 4 {
		t.Fatalf("tasks of two jobs: %d, %v", len(tasks.GetItems()), err)
	}

	for i, id := range ids[:2] { // one job per world
		if _, err := e.client.UpdateJobCapacity(ctx, &titus.JobCapacityUpdate{JobId: id, Capacity: &titus.Capacity{Min: 1, Desired: 3, Max: 10}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.UpdateJobCapacityWithOptionalAttributes(ctx, &titus.JobCapacityUpdateWithOptionalAttributes{JobId: id,
			JobCapacityWithOptionalAttributes: &titus.JobCapacityWithOptionalAttributes{Max: wrapperspb.UInt32(8)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.UpdateJobStatus(ctx, &titus.JobStatusUpdate{Id: id, EnableStatus: false}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.UpdateJobDisruptionBudget(ctx, &titus.JobDisruptionBudgetUpdate{JobId: id, DisruptionBudget: &titus.JobDisruptionBudget{
			Policy: &titus.JobDisruptionBudget_UnhealthyTasksLimit_{UnhealthyTasksLimit: &titus.JobDisruptionBudget_UnhealthyTasksLimit{LimitOfUnhealthyContainers: 1}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.UpdateJobAttributes(ctx, &titus.JobAttributesUpdate{JobId: id, Attributes: map[string]string{"team": "t"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.DeleteJobAttributes(ctx, &titus.JobAttributesDeleteRequest{JobId: id, Keys: []string{"name"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.UpdateJobProcesses(ctx, &titus.JobProcessesUpdate{JobId: id,
			ServiceJobProcesses: &titus.ServiceJobSpec_ServiceJobProcesses{DisableDecreaseDesired: true}}); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.UpdateJobCapacity(ctx, &titus.JobCapacityUpdate{JobId: id, Capacity: &titus.Capacity{Min: 1, Desired: 2, Max: 8}})
		wantCode(t, err, codes.InvalidArgument) // processes forbid it
		j, _ := e.client.FindJob(ctx, &titus.JobId{Id: id})
		s := j.GetJobDescriptor().GetService()
		if c := s.GetCapacity(); c.GetDesired() != 3 || c.GetMax() != 8 || s.GetEnabled() || j.GetJobDescriptor().GetAttributes()["team"] != "t" ||
			j.GetJobDescriptor().GetAttributes()["name"] != "" || j.GetJobDescriptor().GetDisruptionBudget().GetUnhealthyTasksLimit() == nil {
			t.Fatalf("world %d: job after updates: %v", i, j.GetJobDescriptor())
		}
		if _, err := e.client.UpdateJobProcesses(ctx, &titus.JobProcessesUpdate{JobId: id,
			ServiceJobProcesses: &titus.ServiceJobSpec_ServiceJobProcesses{}}); err != nil {
			t.Fatal(err)
		}

		ts, _ := e.client.FindTasks(ctx, &titus.TaskQuery{Page: &titus.Page{PageSize: 10}, FilteringCriteria: map[string]string{"jobIds": id, "taskStates": "Started"}})
		victim := ts.GetItems()[0].GetId()
		if _, err := e.client.UpdateTaskAttributes(ctx, &titus.TaskAttributesUpdate{TaskId: victim, Attributes: map[string]string{"a": "b"}}); err != nil {
			t.Fatal(err)
		}
		if task, _ := e.client.FindTask(ctx, &titus.TaskId{Id: victim}); task.GetAttributes()["a"] != "b" {
			t.Fatalf("task attributes %v", task.GetAttributes())
		}
		if _, err := e.client.DeleteTaskAttributes(ctx, &titus.TaskAttributesDeleteRequest{TaskId: victim, Keys: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.KillTask(ctx, &titus.TaskKillRequest{TaskId: victim, Shrink: true}); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.KillTask(ctx, &titus.TaskKillRequest{TaskId: victim, Shrink: true})
		wantCode(t, err, codes.NotFound) // clouddriver counts it a success
		_, err = e.client.MoveTask(ctx, &titus.TaskMoveRequest{SourceJobId: id, TargetJobId: ids[2], TaskId: ts.GetItems()[1].GetId()})
		wantCode(t, err, codes.Unimplemented)
		if _, err := e.client.KillJob(ctx, &titus.JobId{Id: id}); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.UpdateJobCapacity(ctx, &titus.JobCapacityUpdate{JobId: id, Capacity: &titus.Capacity{Min: 0, Desired: 1, Max: 1}})
		wantCode(t, err, codes.FailedPrecondition)
	}

	_, err = e.client.FindJob(ctx, &titus.JobId{Id: "kube-nope"})
	wantCode(t, err, codes.NotFound)
	_, err = e.client.FindJobs(ctx, &titus.JobQuery{Page: &titus.Page{PageSize: 0}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = e.client.FindJobs(ctx, &titus.JobQuery{Page: &titus.Page{PageSize: 1}, FilteringCriteria: map[string]string{"colour": "red"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Unrecognized field(s)") {
		t.Fatalf("unknown criterion: %v", err)
	}
	e.kube.SetDown(true)
	_, err = e.client.FindJobs(ctx, &titus.JobQuery{Page: &titus.Page{PageSize: 1}})
	wantCode(t, err, codes.Unavailable)
}

// recv reads the next notification, described as the hub's tests do.
func recv(t *testing.T, s grpc.ServerStreamingClient[titus.JobChangeNotification]) *titus.JobChangeNotification {
	t.Helper()
	n, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func describe(n *titus.JobChangeNotification) string {
	archived := map[bool]string{true: " archived"}
	switch {
	case n.GetJobUpdate() != nil:
		u := n.GetJobUpdate()
		return "job " + u.GetJob().GetStatus().GetState().String() + archived[u.GetArchived()]
	case n.GetTaskUpdate() != nil:
		u := n.GetTaskUpdate()
		return "task " + u.GetTask().GetStatus().GetState().String() + archived[u.GetArchived()]
	case n.GetSnapshotEnd() != nil:
		return "snapshotEnd"
	case n.GetKeepAliveResponse() != nil:
		return "keepAlive"
	}
	return "?"
}

// ObserveJobs: the snapshot, snapshotEnd, then each change as it happens,
// across a stage change; archived when a job ends; fields projected.
func TestObserveJobsSnapshotThenChanges(t *testing.T) {
	e := start(t, observe.Config{})
	ctx := ctxT(t)
	before, err := e.client.CreateJob(ctx, spinnakerJob("app", 1))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.ObserveJobs(ctx, &titus.ObserveJobsQuery{FilteringCriteria: map[string]string{"appName": "app"},
		JobFields: []string{"status"}, TaskFields: []string{"status.state", "jobId"}})
	if err != nil {
		t.Fatal(err)
	}
	snap := []string{describe(recv(t, stream)), describe(recv(t, stream)), describe(recv(t, stream))}
	if strings.Join(snap, ",") != "job Accepted,task Started,snapshotEnd" {
		t.Fatalf("snapshot %v", snap)
	}

	e.setStage(t, "kube")
	after, err := e.client.CreateJob(ctx, spinnakerJob("app", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateJob(ctx, spinnakerJob("other", 1)); err != nil { // filtered out
		t.Fatal(err)
	}
	n := recv(t, stream)
	if j := n.GetJobUpdate().GetJob(); j.GetId() != after.GetId() || j.GetStatus() == nil || j.GetJobDescriptor() != nil {
		t.Fatalf("projected job update %v", n)
	}
	n = recv(t, stream)
	if task := n.GetTaskUpdate().GetTask(); task.GetJobId() != after.GetId() || task.GetId() == "" || task.GetStatusHistory() != nil {
		t.Fatalf("projected task update %v", n)
	}
	if _, err := e.client.KillJob(ctx, before); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "job Finished archived" {
		got = append(got, describe(recv(t, stream)))
	}
	// The kill: the task ends and leaves, then the job (a KillInitiated
	// between may coalesce away: the world is read as it is).
	if s := strings.Join(got, ","); !strings.HasSuffix(s, "task Finished archived,job Finished archived") {
		t.Fatalf("kill seen as %v", got)
	}
}

func TestObserveJobEndsWithItsJob(t *testing.T) {
	e := start(t, observe.Config{})
	ctx := ctxT(t)
	id, err := e.client.CreateJob(ctx, spinnakerJob("one", 1))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.ObserveJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"job Accepted", "task Started", "snapshotEnd"} {
		if got := describe(recv(t, stream)); got != want {
			t.Fatalf("%s, want %s", got, want)
		}
	}
	if _, err := e.client.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		n, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, describe(n))
	}
	if s := strings.Join(got, ","); !strings.HasSuffix(s, "task Finished archived,job Finished archived") {
		t.Fatalf("until the end: %v", got)
	}
	// A finished job: its last state, then the end.
	stream, _ = e.client.ObserveJob(ctx, id)
	if got := describe(recv(t, stream)); got != "job Finished archived" {
		t.Fatalf("finished job: %s", got)
	}
	nope, _ := e.client.ObserveJob(ctx, &titus.JobId{Id: "legacy-job-nope"})
	_, err = nope.Recv()
	wantCode(t, err, codes.NotFound)
}

func TestKeepAliveFollowsPendingNotifications(t *testing.T) {
	e := start(t, observe.Config{}, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	ctx := ctxT(t)
	stream, err := e.client.ObserveJobsWithKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&titus.ObserveJobsWithKeepAliveRequest{Kind: &titus.ObserveJobsWithKeepAliveRequest_Query{Query: &titus.ObserveJobsQuery{}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := stream.Recv(); err != nil || n.GetSnapshotEnd() == nil {
		t.Fatalf("empty snapshot: %v %v", n, err)
	}
	if _, err := e.client.CreateJob(ctx, spinnakerJob("ka", 1)); err != nil {
		t.Fatal(err)
	}
	// The job and its task are queued before the keep-alive is.
	for {
		if _, tasks, _ := e.hub.Stats(); tasks == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the hub never saw the task")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := stream.Send(&titus.ObserveJobsWithKeepAliveRequest{Kind: &titus.ObserveJobsWithKeepAliveRequest_KeepAliveRequest{
		KeepAliveRequest: &titus.KeepAliveRequest{RequestId: 42, Timestamp: 1}}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		n, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, describe(n))
		if ka := n.GetKeepAliveResponse(); ka != nil && ka.GetRequest().GetRequestId() != 42 {
			t.Fatalf("keep-alive answers %v", ka)
		}
	}
	if strings.Join(got, ",") != "job Accepted,task Started,keepAlive" {
		t.Fatalf("%v", got)
	}
}

// A client that stops reading is dropped with RESOURCE_EXHAUSTED; the hub
// keeps no more than its buffer for it.
func TestSlowStreamGetsResourceExhausted(t *testing.T) {
	e := start(t, observe.Config{StreamBuffer: 8},
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)) // fixed windows: no growth while unread
	ctx := ctxT(t)
	stream, err := e.client.ObserveJobs(ctx, &titus.ObserveJobsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if n := recv(t, stream); n.GetSnapshotEnd() == nil {
		t.Fatalf("first: %v", n)
	}
	id, err := e.client.CreateJob(ctx, spinnakerJob("flood", 1))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4<<10)
	for i := 0; ; i++ {
		if _, _, streams := e.hub.Stats(); streams == 0 {
			break // dropped
		}
		if ctx.Err() != nil {
			t.Fatal("a stream that is not read was never dropped")
		}
		// Each update is a notification of some 4 KiB: the windows fill.
		if _, err := e.client.UpdateJobAttributes(ctx, &titus.JobAttributesUpdate{JobId: id.GetId(),
			Attributes: map[string]string{"n": big + string(rune('a'+i%26))}}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		_, err := stream.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted)
			return
		}
	}
}
