package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests speak to the gateway as the old tools do: raw HTTP and JSON,
// no client library of this project.

const jobsNS = "vk-titus-jobs"

type obj = map[string]any

func legacyAPI(t *testing.T) string {
	t.Helper()
	u := env.JobAPI
	if u == "" {
		t.Fatal("the stack runs no gateway: LEGACY_API is not in .local/env (the stack was started with MASTERS=0 or VK_TITUS=0; make test-e2e starts it with MASTERS=2)")
	}
	return u
}

// jobAPIClient authenticates as the stack's test client (system:masters:
// allowed everything); its connections are shared by every call. The
// timeout only stops a hung gateway from holding a test for ever.
var jobAPIClient = sync.OnceValue(func() *http.Client { return env.JobAPIClient(2*time.Minute, false) })

// call sends a JSON request as the stack's test client and decodes the
// JSON answer (nil body: none).
func call(t *testing.T, method, path string, body any) (int, obj) {
	t.Helper()
	return callAs(t, jobAPIClient(), "", method, path, body)
}

// callAs is call with another client and, unless "", a bearer token.
func callAs(t *testing.T, c *http.Client, token, method, path string, body any) (int, obj) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, legacyAPI(t)+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out obj
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		out = obj{"raw": string(raw)}
	}
	return res.StatusCode, out
}

func mustCall(t *testing.T, want int, method, path string, body any) obj {
	t.Helper()
	code, out := call(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d (want %d): %v", method, path, code, want, out)
	}
	return out
}

func setStage(t *testing.T, app, stage string) {
	t.Helper()
	mustCall(t, 200, "PUT", "/api/v3/migration/stages/application/"+app, obj{"stage": stage, "by": "e2e"})
}

// descriptor is a job as a deploy pipeline would submit it.
func descriptor(app string, script string, spec obj) obj {
	d := obj{
		"owner":           obj{"teamEmail": "e2e@example.com"},
		"applicationName": app,
		"capacityGroup":   "e2e",
		"container": obj{
			"resources":  obj{"cpu": 0.05, "memoryMB": 32, "diskMB": 10},
			"image":      obj{"name": "busybox", "tag": "latest"},
			"entryPoint": []string{"sh", "-c"},
			"command":    []string{script},
			"env":        obj{"E2E": "yes"},
		},
	}
	for k, v := range spec {
		d[k] = v
	}
	return d
}

func batch(size int) obj { return obj{"batch": obj{"size": size, "runtimeLimitSec": "600"}} }

func service(desired, max int) obj {
	return obj{"service": obj{"capacity": obj{"min": 0, "desired": desired, "max": max}, "enabled": true,
		"retryPolicy": obj{"immediate": obj{"retries": 3}}}}
}

func createJob(t *testing.T, d obj) string {
	t.Helper()
	out := mustCall(t, 202, "POST", "/api/v3/jobs", d)
	id, _ := out["id"].(string)
	if id == "" {
		t.Fatalf("no job id in %v", out)
	}
	return id
}

func tasksOf(t *testing.T, jobID string) []obj {
	t.Helper()
	out := mustCall(t, 200, "GET", "/api/v3/tasks?jobIds="+url.QueryEscape(jobID)+"&pageSize=100", nil)
	var tasks []obj
	items, _ := out["items"].([]any)
	for _, it := range items {
		tasks = append(tasks, it.(obj))
	}
	return tasks
}

func status(o obj) (state, reason string) {
	st, _ := o["status"].(obj)
	state, _ = st["state"].(string)
	reason, _ = st["reasonCode"].(string)
	return
}

func taskContext(task obj, key string) string {
	tc, _ := task["taskContext"].(obj)
	v, _ := tc[key].(string)
	return v
}

// waitTasks polls the job's tasks until cond holds for the list.
func waitTasks(t *testing.T, jobID string, d time.Duration, what string, cond func([]obj) bool) []obj {
	t.Helper()
	deadline := time.Now().Add(d)
	var last []obj
	for time.Now().Before(deadline) {
		if last = tasksOf(t, jobID); cond(last) {
			return last
		}
		time.Sleep(500 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("job %s: tasks not %s within %s; last:\n%s", jobID, what, d, b)
	return nil
}

func allIn(state, reason string, n int) func([]obj) bool {
	return func(ts []obj) bool {
		if len(ts) != n {
			return false
		}
		for _, task := range ts {
			if s, r := status(task); s != state || (reason != "" && r != reason) {
				return false
			}
		}
		return true
	}
}

func jobPods(t *testing.T, jobID string) int {
	t.Helper()
	list, err := client.CoreV1().Pods(jobsNS).List(context.Background(), metav1.ListOptions{LabelSelector: "vk-titus.io/job-id=" + jobID})
	if err != nil {
		t.Fatalf("pods of %s: %v", jobID, err)
	}
	return len(list.Items)
}

func appName(t *testing.T, what string) string {
	return fmt.Sprintf("e2e-%s-%d", what, time.Now().UnixNano()%1e9)
}

// Stage legacy: the job runs through the legacy master; no pod exists.
// Stage kube: the next job of the same application is a Kubernetes Job
// whose pod runs on a virtual node, Started, then Finished/normal with its
// real exit code; a failing one ends Finished/failed with its code.
func TestGatewayStagesRouteNewJobs(t *testing.T) {
	app := appName(t, "route")
	setStage(t, app, "legacy")
	legacyJob := createJob(t, descriptor(app, "echo legacy; exit 0", batch(1)))
	if !strings.HasPrefix(legacyJob, "legacy-") {
		t.Fatalf("stage legacy: job %s not in the legacy world", legacyJob)
	}
	tasks := waitTasks(t, legacyJob, 2*time.Minute, "Finished/normal", allIn("Finished", "normal", 1))
	if code := taskContext(tasks[0], "task.exitCode"); code != "0" {
		t.Errorf("legacy task exit code %q", code)
	}
	if n := jobPods(t, legacyJob); n != 0 {
		t.Errorf("legacy job has %d pods", n)
	}

	setStage(t, app, "kube")
	kubeJob := createJob(t, descriptor(app, "sleep 4; exit 0", batch(1)))
	if !strings.HasPrefix(kubeJob, "kube-") {
		t.Fatalf("stage kube: job %s not in the kube world", kubeJob)
	}
	waitTasks(t, kubeJob, 2*time.Minute, "Started", allIn("Started", "", 1))
	pods, err := client.CoreV1().Pods(jobsNS).List(context.Background(), metav1.ListOptions{LabelSelector: "vk-titus.io/job-id=" + kubeJob})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("kube job pods: %v %v", pods, err)
	}
	node, err := client.CoreV1().Nodes().Get(context.Background(), pods.Items[0].Spec.NodeName, metav1.GetOptions{})
	if err != nil || node.Labels["type"] != "virtual-kubelet" {
		t.Fatalf("pod on node %q, not a virtual node (%v)", pods.Items[0].Spec.NodeName, err)
	}
	if pods.Items[0].Annotations["vk-titus.io/container-info"] == "" {
		t.Errorf("pod lacks the container-info annotation")
	}
	tasks = waitTasks(t, kubeJob, 2*time.Minute, "Finished/normal", allIn("Finished", "normal", 1))
	if code := taskContext(tasks[0], "task.exitCode"); code != "0" {
		t.Errorf("kube task exit code %q", code)
	}
	var states []string
	for _, h := range tasks[0]["statusHistory"].([]any) {
		s, _ := status(obj{"status": h})
		states = append(states, s)
	}
	if !strings.Contains(strings.Join(states, ","), "Started") || states[len(states)-1] != "Finished" {
		t.Errorf("kube task history %v", states)
	}
	waitJobState(t, kubeJob, "Finished")

	failing := createJob(t, descriptor(app, "exit 3", batch(1)))
	tasks = waitTasks(t, failing, 2*time.Minute, "Finished/failed", allIn("Finished", "failed", 1))
	if code := taskContext(tasks[0], "task.exitCode"); code != "3" {
		t.Errorf("failing kube task exit code %q", code)
	}
}

func waitJobState(t *testing.T, id, state string) obj {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last obj
	for time.Now().Before(deadline) {
		last = mustCall(t, 200, "GET", "/api/v3/jobs/"+id, nil)
		if s, _ := status(last); s == state {
			return last
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("job %s not %s: %v", id, state, last["status"])
	return nil
}

// A service job: PUT instances changes the Deployment and the task list;
// DELETE ends its pods gracefully (SIGTERM reaches the process).
func TestGatewayServiceJobScaleAndKill(t *testing.T) {
	app := appName(t, "svc")
	setStage(t, app, "kube")
	marker := fmt.Sprintf("svc-%d", time.Now().UnixNano())
	id := createJob(t, descriptor(app, "trap 'echo bye; exit 0' TERM; while true; do sleep 0.2; done # "+marker, service(1, 5)))
	waitTasks(t, id, 2*time.Minute, "1 Started", allIn("Started", "", 1))

	mustCall(t, 200, "PUT", "/api/v3/jobs/"+id+"/instances", obj{"min": 0, "desired": 3, "max": 5})
	deps, err := client.AppsV1().Deployments(jobsNS).List(context.Background(), metav1.ListOptions{LabelSelector: "vk-titus.io/job-id=" + id})
	if err != nil || len(deps.Items) != 1 || deps.Items[0].Spec.Replicas == nil || *deps.Items[0].Spec.Replicas != 3 {
		t.Fatalf("deployment after resize: %v %v", deps, err)
	}
	waitTasks(t, id, 2*time.Minute, "3 Started", allIn("Started", "", 3))
	job := mustCall(t, 200, "GET", "/api/v3/jobs/"+id, nil)
	if c := job["jobDescriptor"].(obj)["service"].(obj)["capacity"].(obj); c["desired"] != float64(3) {
		t.Errorf("job capacity after resize: %v", c)
	}

	code, out := call(t, "PUT", "/api/v3/jobs/"+id+"/instances", obj{"min": 4, "desired": 3, "max": 5})
	if code != 400 {
		t.Errorf("min > desired: %d %v", code, out)
	}

	mustCall(t, 200, "DELETE", "/api/v3/jobs/"+id, nil)
	waitJobState(t, id, "Finished")
	waitNoProcess(t, marker, time.Minute)
	if n := jobPods(t, id); n != 0 {
		t.Errorf("%d pods left after the kill", n)
	}
}

// A percentage stage sends about that share of new jobs to Kubernetes
// (service jobs of desired 0: the routing is what is measured).
func TestGatewayPercentageStage(t *testing.T) {
	app := appName(t, "pct")
	setStage(t, app, "30%")
	kube := 0
	var ids []string
	for range 100 {
		id := createJob(t, descriptor(app, "true", service(0, 1)))
		ids = append(ids, id)
		if strings.HasPrefix(id, "kube-") {
			kube++
		}
	}
	t.Cleanup(func() {
		for _, id := range ids {
			call(t, "DELETE", "/api/v3/jobs/"+id, nil)
		}
	})
	t.Logf("30%%: %d of 100 new jobs went to kube", kube)
	if kube < 15 || kube > 45 {
		t.Errorf("30%% stage sent %d of 100 jobs to kube", kube)
	}
	out := mustCall(t, 200, "GET", "/api/v3/jobs?applicationName="+app+"&pageSize=1000", nil)
	if got := len(out["items"].([]any)); got != 100 {
		t.Errorf("list of the app's jobs across both worlds: %d, want 100", got)
	}
}

// Rolling back to legacy leaves running kube jobs alone and sends new jobs
// to legacy; every change is in the history.
func TestGatewayRollback(t *testing.T) {
	app := appName(t, "rollback")
	setStage(t, app, "kube")
	running := createJob(t, descriptor(app, "sleep 3600", service(1, 1)))
	before := waitTasks(t, running, 2*time.Minute, "Started", allIn("Started", "", 1))

	setStage(t, app, "legacy")
	next := createJob(t, descriptor(app, "sleep 3600", service(1, 1)))
	if !strings.HasPrefix(next, "legacy-") {
		t.Fatalf("after rollback: new job %s", next)
	}
	waitTasks(t, next, 2*time.Minute, "Started", allIn("Started", "", 1))
	after := tasksOf(t, running)
	if len(after) != 1 || after[0]["id"] != before[0]["id"] {
		t.Fatalf("the running kube job was touched by the rollback: %v → %v", before, after)
	}
	if s, _ := status(after[0]); s != "Started" {
		t.Fatalf("kube task after rollback: %s", s)
	}

	hist := mustCall(t, 200, "GET", "/api/v3/migration/history?scope=application&name="+app, nil)
	var changes []string
	for _, it := range hist["items"].([]any) {
		c := it.(obj)
		changes = append(changes, fmt.Sprintf("%v→%v by %v", c["old"], c["new"], c["by"]))
	}
	if len(changes) != 2 || !strings.Contains(changes[0], "kube→legacy") || !strings.Contains(changes[1], "→kube") {
		t.Errorf("history (newest first): %v", changes)
	}
	for _, id := range []string{running, next} {
		mustCall(t, 200, "DELETE", "/api/v3/jobs/"+id, nil)
	}
}

// Bad input gets a 4xx with a message that says what is wrong.
func TestGatewayRefusesBadInput(t *testing.T) {
	app := appName(t, "bad")
	noCPU := descriptor(app, "true", batch(1))
	// Titus raises a missing cpu to its minimum; a negative one is refused.
	noCPU["container"].(obj)["resources"] = obj{"cpu": -1, "memoryMB": 32}
	both := descriptor(app, "true", batch(1))
	both["service"] = service(1, 1)["service"]
	for name, c := range map[string]struct {
		method, path string
		body         any
		code         int
		msg          string
	}{
		"negative cpu":   {"POST", "/api/v3/jobs", noCPU, 400, "container.resources.cpu"},
		"batch+service":  {"POST", "/api/v3/jobs", both, 400, "batch"},
		"unknown field":  {"POST", "/api/v3/jobs", `{"applicationName":"x","nope":1}`, 400, "nope"},
		"not json":       {"POST", "/api/v3/jobs", `{{{`, 400, "request body"},
		"oversize":       {"POST", "/api/v3/jobs", `{"applicationName":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "larger than"},
		"unknown job":    {"GET", "/api/v3/jobs/kube-00000000-0000-0000-0000-000000000000", nil, 404, "not found"},
		"unknown legacy": {"GET", "/api/v3/jobs/legacy-job-nope", nil, 404, "not found"},
		"foreign id":     {"GET", "/api/v3/tasks/1234", nil, 404, "not found"},
		"bad cursor":     {"GET", "/api/v3/tasks?cursor=%21%21", nil, 400, "cursor"},
		"bad page size":  {"GET", "/api/v3/jobs?pageSize=100000", nil, 400, "pageSize"},
		"bad task state": {"GET", "/api/v3/tasks?taskStates=Sleeping", nil, 400, "taskStates"},
		"bad stage":      {"PUT", "/api/v3/migration/stages/application/" + app, obj{"stage": "sideways"}, 400, "sideways"},
		"kill unknown":   {"DELETE", "/api/v3/tasks/kube-00000000-0000-0000-0000-000000000000", nil, 404, "not found"},
		"resize unknown": {"PUT", "/api/v3/jobs/legacy-job-nope/instances", obj{"min": 0, "desired": 1, "max": 1}, 404, "not found"},
		// No authorization rule maps it, so the guard refuses it (apiauth:
		// an unmapped route stays closed) before the router could say 404.
		"no such path": {"GET", "/api/v3/nothing", nil, 403, "no authorization rule"},
	} {
		code, out := call(t, c.method, c.path, c.body)
		msg := fmt.Sprint(out["message"], out["error"])
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q (want %d with %q)", name, code, msg, c.code, c.msg)
		}
	}
}

// One cursor pages through both worlds: every job once, in order.
func TestGatewayPagingAcrossWorlds(t *testing.T) {
	app := appName(t, "paging")
	want := map[string]bool{}
	for i, stage := range []string{"legacy", "kube", "legacy", "kube", "kube"} {
		setStage(t, app, stage)
		want[createJob(t, descriptor(app, fmt.Sprint("true # ", i), service(0, 1)))] = true
	}
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("paging does not end")
		}
		out := mustCall(t, 200, "GET", "/api/v3/jobs?applicationName="+app+"&pageSize=2&cursor="+url.QueryEscape(cursor), nil)
		for _, it := range out["items"].([]any) {
			id := it.(obj)["id"].(string)
			if seen[id] {
				t.Fatalf("job %s on two pages", id)
			}
			seen[id] = true
		}
		pg := out["pagination"].(obj)
		if pg["totalItems"] != float64(5) {
			t.Fatalf("totalItems %v", pg["totalItems"])
		}
		if pg["hasMore"] != true {
			break
		}
		cursor = pg["cursor"].(string)
	}
	if len(seen) != len(want) {
		t.Fatalf("paged %d jobs, created %d", len(seen), len(want))
	}
}

// A gateway killed mid-way and restarted loses no job and no stage.
func TestGatewayRestartLosesNothing(t *testing.T) {
	app := appName(t, "restart")
	setStage(t, app, "kube")
	kubeJob := createJob(t, descriptor(app, "sleep 3600", service(1, 1)))
	setStage(t, app, "legacy")
	legacyJob := createJob(t, descriptor(app, "sleep 3600", service(1, 1)))
	setStage(t, app, "50%")

	if err := env.Kill("gateway"); err != nil {
		t.Fatal(err)
	}
	if err := env.Start("gateway"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{kubeJob, legacyJob} {
		waitTasks(t, id, 2*time.Minute, "Started", allIn("Started", "", 1))
		mustCall(t, 200, "GET", "/api/v3/jobs/"+id, nil)
	}
	st := mustCall(t, 200, "GET", "/api/v3/migration/stages/application/"+app, nil)
	if st["stage"] != "50%" {
		t.Errorf("stage after restart: %v", st)
	}
	for _, id := range []string{kubeJob, legacyJob} {
		mustCall(t, 200, "DELETE", "/api/v3/jobs/"+id, nil)
		waitJobState(t, id, "Finished")
	}
}
