package legacyapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/legacyapi/legacyapitest"
)

// readmeJob is a descriptor as Titus's own examples write it: no resources
// block, no capacity group; Titus fills both.
const readmeJob = `{
  "applicationName": "myApp",
  "owner": {"teamEmail": "me@me.com"},
  "container": {
    "image": {"name": "alpine", "tag": "latest"},
    "entryPoint": ["/bin/sleep", "1h"],
    "securityProfile": {"iamRole": "test-role", "securityGroups": ["sg-test"]}
  },
  "batch": {"size": 1, "retryPolicy": {"delayed": {"delayMs": "1000", "retries": 3}}}
}`

// uiJob is a service descriptor as Titus's UI submits it: fields of the
// current definitions, empty.
const uiJob = `{
  "applicationName": "webui",
  "owner": {"teamEmail": "ui@example.com"},
  "capacityGroup": "web",
  "attributes": {"source": "titusui", "name": "webui-v001"},
  "jobGroupInfo": {"stack": "prod", "detail": "", "sequence": "v001"},
  "container": {
    "resources": {"cpu": 2, "memoryMB": 4096, "diskMB": 20000, "networkMbps": 256, "efsMounts": [], "signedAddressAllocations": []},
    "image": {"name": "nginx", "tag": "1.25"},
    "softConstraints": {"constraints": {}, "expression": ""},
    "hardConstraints": {"constraints": {"zonebalance": "true"}, "expression": ""},
    "env": {"PORT": "8080"}
  },
  "service": {
    "capacity": {"min": 1, "desired": 2, "max": 4},
    "enabled": true,
    "retryPolicy": {"exponentialBackOff": {"initialDelayMs": "1000", "maxDelayIntervalMs": "60000", "retries": 10}},
    "migrationPolicy": {"systemDefault": {}}
  },
  "disruptionBudget": {"selfManaged": {"relocationTimeMs": "60000"}, "rateUnlimited": {}, "timeWindows": [], "containerHealthProviders": []},
  "networkConfiguration": {"networkMode": "Ipv6AndIpv4"},
  "platformSidecars": [],
  "extraContainers": [],
  "volumes": []
}`

type rest struct {
	t   *testing.T
	url string
	mem *legacyapitest.Mem
}

func newREST(t *testing.T) *rest {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	mem := legacyapitest.NewMem(legacyapi.LegacyPrefix)
	srv := httptest.NewServer(legacyapi.NewHandler(mem, log, legacyapi.WithLimits(legacyapi.TitusLimits())))
	t.Cleanup(srv.Close)
	return &rest{t: t, url: srv.URL, mem: mem}
}

// call sends body (a string, or nil) and decodes a JSON answer.
func (r *rest) call(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	}
	req, _ := http.NewRequest(method, r.url+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		r.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
	}
	return resp.StatusCode, out
}

func (r *rest) must(code int, method, path string, body any) map[string]any {
	r.t.Helper()
	got, out := r.call(method, path, body)
	if got != code {
		r.t.Fatalf("%s %s: %d %v, want %d", method, path, got, out, code)
	}
	return out
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func TestRESTFillsTitusDefaults(t *testing.T) {
	r := newREST(t)
	id := r.must(202, "POST", "/api/v3/jobs", readmeJob)["id"].(string)
	job := r.must(200, "GET", "/api/v3/jobs/"+id, nil)
	res := dig(job, "jobDescriptor", "container", "resources")
	for field, want := range map[string]any{"cpu": 1.0, "memoryMB": 512.0, "diskMB": 10000.0, "networkMbps": 128.0} {
		if got := dig(res, field); got != want {
			t.Errorf("resources.%s = %v, want %v", field, got, want)
		}
	}
	if got := dig(job, "jobDescriptor", "capacityGroup"); got != "DEFAULT" {
		t.Errorf("capacityGroup %v", got)
	}
	if got := dig(job, "jobDescriptor", "batch", "runtimeLimitSec"); got != "432000" {
		t.Errorf("runtimeLimitSec %v", got)
	}
	// Proto3 JSON with defaults: fields never set are there, empty.
	if got, ok := dig(job, "jobDescriptor", "container").(map[string]any)["volumeMounts"]; !ok || len(got.([]any)) != 0 {
		t.Errorf("volumeMounts %v (%v)", got, ok)
	}
	if got := dig(job, "jobDescriptor", "container", "securityProfile", "iamRole"); got != "test-role" {
		t.Errorf("securityProfile kept as given: %v", got)
	}
}

func TestRESTAcceptsEmptyKnownFieldsAndNamesUnknownOnes(t *testing.T) {
	r := newREST(t)
	id := r.must(202, "POST", "/api/v3/jobs", uiJob)["id"].(string)
	job := r.must(200, "GET", "/api/v3/jobs/"+id, nil)
	if got := dig(job, "jobDescriptor", "disruptionBudget", "selfManaged", "relocationTimeMs"); got != "60000" {
		t.Errorf("disruption budget not kept: %v", got)
	}
	if got := dig(job, "jobDescriptor", "networkConfiguration", "networkMode"); got != "Ipv6AndIpv4" {
		t.Errorf("network configuration not kept: %v", got)
	}
	if got := dig(job, "jobDescriptor", "service", "migrationPolicy", "systemDefault"); got == nil {
		t.Errorf("migration policy not kept")
	}
	for name, c := range map[string]struct {
		body, msg string
		code      int
	}{
		"unknown nested field": {strings.Replace(uiJob, `"rateUnlimited": {}`, `"rateUnlimited": {}, "bogusRate": 1`, 1), `bogusRate`, 400},
		"unknown top field":    {strings.Replace(uiJob, `"volumes": []`, `"volumes": [], "nope": 1`, 1), `nope`, 400},
		"set efs mount":        {strings.Replace(uiJob, `"efsMounts": []`, `"efsMounts": [{"efsId": "fs-1", "mountPoint": "/efs"}]`, 1), "efsMounts", 400},
		"an expression":        {strings.Replace(uiJob, `"zonebalance": "true"}, "expression": ""`, `}, "expression": "zone == a"`, 1), "expression", 400},
		"batch and service":    {strings.Replace(uiJob, `"service": {`, `"batch": {"size": 1}, "service": {`, 1), "batch", 400},
		"bad enum":             {strings.Replace(uiJob, `Ipv6AndIpv4`, `Ipv9`, 1), "networkMode", 400},
		"negative cpu":         {strings.Replace(uiJob, `"cpu": 2`, `"cpu": -1`, 1), "container.resources.cpu", 400},
		"cpu above max":        {strings.Replace(uiJob, `"cpu": 2`, `"cpu": 65`, 1), "container.resources.cpu", 400},
		"service too big":      {strings.Replace(uiJob, `"max": 4`, `"max": 2501`, 1), "service.capacity.max", 400},
	} {
		code, out := r.call("POST", "/api/v3/jobs", c.body)
		if msg, _ := out["message"].(string); code != c.code || !strings.Contains(msg, c.msg) || out["statusCode"] != float64(c.code) {
			t.Errorf("%s: %d %v, want %d naming %q", name, code, out, c.code, c.msg)
		}
	}
}

func TestRESTFiltersAndProjection(t *testing.T) {
	r := newREST(t)
	ui := r.must(202, "POST", "/api/v3/jobs", uiJob)["id"].(string)
	readme := r.must(202, "POST", "/api/v3/jobs", readmeJob)["id"].(string)
	for i := 0; i < 11; i++ {
		r.must(202, "POST", "/api/v3/jobs", strings.Replace(readmeJob, "myApp", "filler", 1))
	}
	ids := func(query string) []string {
		t.Helper()
		out := r.must(200, "GET", "/api/v3/jobs?"+query, nil)
		var got []string
		for _, it := range out["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		return got
	}
	for query, want := range map[string][]string{
		"attributes=source:titusui&attributes.op=and&pageSize=100":           {ui},
		"attributes=source:titusui,name:other&attributes.op=or&pageSize=100": {ui},
		"attributes=source:titusui,name:other&pageSize=100":                  nil,
		"appName=myApp":                    {readme},
		"applicationName=webui":            {ui},
		"jobType=SERVICE":                  {ui},
		"jobGroupStack=prod&imageTag=1.25": {ui},
		"capacityGroup=web&owner=ui@example.com&jobState=accepted": {ui},
		"imageName=alpine&appName=myApp":                           {readme},
		"taskStates=Started&appName=webui":                         {ui},
		"taskStates=Finished&appName=webui":                        nil,
		"needsMigration=true&pageSize=100":                         nil,
	} {
		if got := ids(query); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", query, got, want)
		}
	}
	if got := ids(""); len(got) != legacyapi.DefaultPageSize {
		t.Errorf("default page: %d jobs, want %d", len(got), legacyapi.DefaultPageSize)
	}
	code, out := r.call("GET", "/api/v3/jobs?applicationName=x&bogus=1", nil)
	if code != 400 || !strings.Contains(out["message"].(string), "Unrecognized field(s) [bogus]") {
		t.Errorf("unknown key: %d %v", code, out)
	}
	if code, _ := r.call("GET", "/api/v3/jobs?pageSize=0", nil); code != 400 {
		t.Errorf("pageSize 0: %d", code)
	}

	out = r.must(200, "GET", "/api/v3/jobs?appName=webui&fields=status,jobDescriptor.attributes.name", nil)
	item := out["items"].([]any)[0].(map[string]any)
	if item["id"] != ui || item["status"] == nil || item["statusHistory"] != nil {
		t.Errorf("projected job %v", item)
	}
	if attrs := dig(item, "jobDescriptor", "attributes").(map[string]any); len(attrs) != 1 || attrs["name"] != "webui-v001" {
		t.Errorf("projected attributes %v", attrs)
	}
	if dig(item, "jobDescriptor", "container") != nil {
		t.Errorf("projection kept the container")
	}
	tasks := r.must(200, "GET", "/api/v3/tasks?jobIds="+ui+"&fields=status.state", nil)["items"].([]any)
	if len(tasks) != 2 || dig(tasks[0], "status", "state") != "Started" || dig(tasks[0], "jobId") != nil {
		t.Errorf("projected tasks %v", tasks)
	}
}

func TestRESTUpdatesAndErrors(t *testing.T) {
	r := newREST(t)
	ctx := context.Background()
	id := r.must(202, "POST", "/api/v3/jobs", uiJob)["id"].(string)
	jobPath := "/api/v3/jobs/" + id
	desc := func() map[string]any { return r.must(200, "GET", jobPath, nil)["jobDescriptor"].(map[string]any) }

	r.must(200, "PUT", jobPath+"/capacityAttributes", `{"desired": 3}`)
	if c := dig(desc(), "service", "capacity"); dig(c, "min") != 1.0 || dig(c, "desired") != 3.0 || dig(c, "max") != 4.0 {
		t.Errorf("capacity after desired alone: %v", c)
	}
	r.must(200, "PUT", jobPath+"/jobprocesses", `{"disableIncreaseDesired": true}`)
	if code, out := r.call("PUT", jobPath+"/instances", `{"min": 1, "desired": 4, "max": 4}`); code != 400 || !strings.Contains(out["message"].(string), "disableIncreaseDesired") {
		t.Errorf("increase with processes forbidding it: %d %v", code, out)
	}
	r.must(200, "PUT", jobPath+"/disruptionBudget", `{"unhealthyTasksLimit": {"limitOfUnhealthyContainers": 2}, "rateUnlimited": {}}`)
	if got := dig(desc(), "disruptionBudget", "unhealthyTasksLimit", "limitOfUnhealthyContainers"); got != 2.0 {
		t.Errorf("budget %v", got)
	}
	r.must(200, "PUT", jobPath+"/attributes", `{"attributes": {"team": "web"}}`)
	r.must(400, "PUT", jobPath+"/attributes", `{"jobId": "legacy-job-other", "attributes": {"team": "web"}}`)
	r.must(200, "DELETE", jobPath+"/attributes?keys=name,source", nil)
	if attrs := desc()["attributes"].(map[string]any); len(attrs) != 1 || attrs["team"] != "web" {
		t.Errorf("attributes %v", attrs)
	}
	r.must(400, "DELETE", jobPath+"/attributes", nil)
	r.must(200, "POST", jobPath+"/disable", nil)
	if dig(desc(), "service", "enabled") != false {
		t.Errorf("still enabled")
	}

	tasks, _ := r.mem.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{JobIDs: []string{id}}})
	task := tasks.Items[0].ID
	r.must(200, "PUT", "/api/v3/tasks/"+task+"/attributes", `{"attributes": {"k": "v"}}`)
	if got := dig(r.must(200, "GET", "/api/v3/tasks/"+task, nil), "attributes", "k"); got != "v" {
		t.Errorf("task attributes %v", got)
	}
	r.must(200, "DELETE", "/api/v3/tasks/"+task+"/attributes?keys=k", nil)
	r.must(200, "DELETE", "/api/v3/tasks/"+task+"?shrink=true", nil)
	r.must(404, "DELETE", "/api/v3/tasks/"+task+"?shrink=true", nil) // a second kill
	r.must(501, "POST", "/api/v3/tasks/move", `{"sourceJobId": "`+id+`", "targetJobId": "legacy-job-x", "taskId": "`+task+`"}`)
	r.must(400, "POST", "/api/v3/tasks/move", `{"sourceJobId": "`+id+`", "targetJobId": "`+id+`", "taskId": "`+task+`"}`)

	r.must(200, "DELETE", jobPath, nil)
	if code, out := r.call("PUT", jobPath+"/instances", `{"min": 0, "desired": 1, "max": 1}`); code != 412 || out["statusCode"] != 412.0 {
		t.Errorf("resizing a finished job: %d %v, want 412", code, out)
	}
	r.must(404, "GET", "/api/v3/jobs/legacy-job-nope", nil)
	r.must(404, "GET", "/api/v3/nothing", nil)
	r.mem.SetDown(true)
	r.must(503, "GET", jobPath, nil)
}

// The Client speaks to the handler in the same proto3 JSON; errors come
// back as the sentinels they were.
func TestClientRoundTrip(t *testing.T) {
	r := newREST(t)
	c := legacyapi.NewClient(legacyapi.StaticBase(r.url), &http.Client{}, &http.Client{})
	ctx := context.Background()
	var d legacyapi.JobDescriptor
	p := r.must(202, "POST", "/api/v3/jobs", uiJob)["id"].(string)
	j, err := c.GetJob(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	d = j.JobDescriptor
	id, err := c.CreateJob(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.GetJob(ctx, id)
	if err != nil || string(again.JobDescriptor.DisruptionBudget) != string(d.DisruptionBudget) || again.JobDescriptor.Attributes["source"] != "titusui" {
		t.Fatalf("round trip: %+v, %v", again.JobDescriptor, err)
	}
	desired := legacyapi.U32(1)
	if err := c.UpdateJob(ctx, id, legacyapi.JobUpdate{Capacity: &legacyapi.CapacityUpdate{Desired: &desired}}); err != nil {
		t.Fatal(err)
	}
	res, err := c.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobIDs: []string{id}, Attributes: map[string][]string{"source": nil}}})
	if err != nil || len(res.Items) != 1 || res.Items[0].JobDescriptor.Service.Capacity.Desired != 1 {
		t.Fatalf("find: %+v, %v", res, err)
	}
	tasks, err := c.FindTasks(ctx, legacyapi.TaskQuery{Criteria: legacyapi.Criteria{JobIDs: []string{id}}})
	if err != nil || len(tasks.Items) != 2 {
		t.Fatalf("tasks: %+v, %v", tasks, err)
	}
	live := ""
	for _, task := range tasks.Items {
		if task.Status.State == legacyapi.TaskStarted {
			live = task.ID
		}
	}
	err = c.KillTask(ctx, live, legacyapi.TaskKill{Shrink: true, PreventMinSizeUpdate: true}) // desired 1 = min 1
	if !errors.Is(err, legacyapi.ErrConflict) {
		t.Fatalf("shrink below min: %v", err)
	}
	for want, err := range map[error]error{
		legacyapi.ErrNotFound:      func() error { _, err := c.GetTask(ctx, "legacy-task-nope"); return err }(),
		legacyapi.ErrInvalid:       c.UpdateJob(ctx, id, legacyapi.JobUpdate{DeleteAttributes: []string{}}),
		legacyapi.ErrUnimplemented: c.MoveTask(ctx, legacyapi.TaskMove{SourceJobID: id, TargetJobID: p, TaskID: live}),
	} {
		if !errors.Is(err, want) {
			t.Errorf("%v, want %v", err, want)
		}
	}
	if err := c.KillJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateJob(ctx, id, legacyapi.JobUpdate{Attributes: map[string]string{"a": "b"}}); !errors.Is(err, legacyapi.ErrTerminating) {
		t.Fatalf("update of a finished job: %v", err)
	}
	if _, err := c.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobType: "service"}, Page: legacyapi.Page{Cursor: url.QueryEscape("!!")}}); !errors.Is(err, legacyapi.ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// The change feed over HTTP: snapshot, its end, then the changes.
func TestFeedOverHTTP(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	mem := legacyapitest.NewMem(legacyapi.LegacyPrefix)
	srv := httptest.NewServer(legacyapi.NewHandler(mem, log))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before, _ := mem.CreateJob(ctx, descriptor("before"))
	c := legacyapi.NewClient(legacyapi.StaticBase(srv.URL), &http.Client{}, &http.Client{})
	changes := make(chan legacyapi.Change, 100)
	go func() {
		_ = c.Observe(ctx, func(ch legacyapi.Change) error { changes <- ch; return nil })
	}()
	var got []string
	for len(got) < 4 {
		ch := <-changes
		switch {
		case ch.SnapshotEnd:
			got = append(got, "end")
			if _, err := mem.CreateJob(ctx, descriptor("after")); err != nil {
				t.Error(err)
			}
		case ch.Job != nil:
			got = append(got, "job "+ch.Job.JobDescriptor.ApplicationName)
		case ch.Task != nil:
			got = append(got, "task")
		}
	}
	if want := "job before,task,end,job after"; strings.Join(got, ",") != want {
		t.Fatalf("feed %v, want %s (job %s)", got, want, before)
	}
}

func descriptor(app string) legacyapi.JobDescriptor {
	return legacyapi.JobDescriptor{
		Owner: &legacyapi.Owner{TeamEmail: "t@example.com"}, ApplicationName: app,
		Container: &legacyapi.Container{Resources: &legacyapi.ContainerResources{CPU: 1, MemoryMB: 512},
			Image: &legacyapi.Image{Name: "busybox", Tag: "latest"}},
		Batch: &legacyapi.BatchJobSpec{Size: 1},
	}
}
