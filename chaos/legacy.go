package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// LegacyClient speaks the Titus v3 job API of the gateway (LEGACY_API) as
// the old tools do: raw JSON.
type LegacyClient struct {
	Base string
	// HTTP sends every call; it carries the credentials the job API
	// demands and the calls' timeout (stack.Env.JobAPIClient). Required.
	HTTP *http.Client
}

type obj = map[string]any

func (c *LegacyClient) call(ctx context.Context, method, path string, body any) (int, obj, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.HTTP == nil {
		return 0, nil, errors.New("chaos: LegacyClient has no HTTP client")
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out obj
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		out = obj{"raw": string(raw)}
	}
	return res.StatusCode, out, nil
}

// SetStage sets an application's migration stage (legacy, kube, NN%).
func (c *LegacyClient) SetStage(ctx context.Context, app, stage string) error {
	code, out, err := c.call(ctx, "PUT", "/api/v3/migration/stages/application/"+app, obj{"stage": stage, "by": "vk-chaos"})
	if err == nil && code != 200 {
		err = fmt.Errorf("set stage %s=%s: %d %v", app, stage, code, out)
	}
	return err
}

// LegacyJob is a job the chaos workload created through the gateway.
type LegacyJob struct {
	ID      string
	App     string
	Batch   bool
	Size    int // batch size or service desired
	Killed  bool
	Created time.Time
}

// Descriptor builds a job descriptor: a batch job of size tasks that each
// run script, or a service job of that many instances.
func Descriptor(app, script string, batch bool, size int) obj {
	d := obj{
		"owner":           obj{"teamEmail": "chaos@example.com"},
		"applicationName": app,
		"capacityGroup":   "chaos",
		"container": obj{
			"resources":  obj{"cpu": 0.05, "memoryMB": 32, "diskMB": 10},
			"image":      obj{"name": "busybox", "tag": "latest"},
			"entryPoint": []string{"sh", "-c"},
			"command":    []string{script},
		},
	}
	if batch {
		d["batch"] = obj{"size": size, "runtimeLimitSec": "600", "retryPolicy": obj{"immediate": obj{"retries": 5}}}
	} else {
		d["service"] = obj{"capacity": obj{"min": 0, "desired": size, "max": size + 1}, "enabled": true,
			"retryPolicy": obj{"immediate": obj{"retries": 10}}}
	}
	return d
}

// CreateJob submits a descriptor and returns the job id.
func (c *LegacyClient) CreateJob(ctx context.Context, d obj) (string, error) {
	code, out, err := c.call(ctx, "POST", "/api/v3/jobs", d)
	if err != nil {
		return "", err
	}
	id, _ := out["id"].(string)
	if code != 202 || id == "" {
		return "", fmt.Errorf("create job: %d %v", code, out)
	}
	return id, nil
}

// KillJob kills a job (DELETE /api/v3/jobs/ID).
func (c *LegacyClient) KillJob(ctx context.Context, id string) error {
	code, out, err := c.call(ctx, "DELETE", "/api/v3/jobs/"+id, nil)
	if err == nil && code != 200 && code != 404 {
		err = fmt.Errorf("kill job %s: %d %v", id, code, out)
	}
	return err
}

func stateOf(o obj) (string, string) {
	st, _ := o["status"].(obj)
	s, _ := st["state"].(string)
	r, _ := st["reasonCode"].(string)
	return s, r
}

// Job reads a job: code 404 when it does not exist.
func (c *LegacyClient) Job(ctx context.Context, id string) (int, string, error) {
	code, out, err := c.call(ctx, "GET", "/api/v3/jobs/"+id, nil)
	if err != nil {
		return 0, "", err
	}
	s, _ := stateOf(out)
	return code, s, nil
}

// Task is the part of a task the checks read.
type Task struct {
	ID, State, Reason, ExitCode string
}

// Tasks lists a job's tasks.
func (c *LegacyClient) Tasks(ctx context.Context, jobID string) ([]Task, error) {
	code, out, err := c.call(ctx, "GET", "/api/v3/tasks?jobIds="+url.QueryEscape(jobID)+"&pageSize=1000", nil)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("tasks of %s: %d %v", jobID, code, out)
	}
	var ts []Task
	items, _ := out["items"].([]any)
	for _, it := range items {
		o, _ := it.(obj)
		id, _ := o["id"].(string)
		s, r := stateOf(o)
		tc, _ := o["taskContext"].(obj)
		ec, _ := tc["task.exitCode"].(string)
		ts = append(ts, Task{id, s, r, ec})
	}
	return ts, nil
}

// AppJobs lists the ids of an application's jobs in both worlds.
func (c *LegacyClient) AppJobs(ctx context.Context, app string) ([]string, error) {
	code, out, err := c.call(ctx, "GET", "/api/v3/jobs?applicationName="+url.QueryEscape(app)+"&pageSize=1000", nil)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("jobs of %s: %d %v", app, code, out)
	}
	var ids []string
	items, _ := out["items"].([]any)
	for _, it := range items {
		if id, ok := it.(obj)["id"].(string); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// CheckLegacyJobs: no legacy-API job lost or doubled. Every job the
// workload created still exists; an application lists no job the workload
// did not create; a batch job has ended with at most one successful task
// per index (never more than its size); a killed job is Finished and no
// process of its tasks runs; live processes of a service job's tasks never
// outnumber its desired size. live maps container id → pids on all agents.
func CheckLegacyJobs(ctx context.Context, c *LegacyClient, jobs []LegacyJob, apps []string, live map[string][]int) []Violation {
	var out []Violation
	known := map[string]bool{}
	for _, j := range jobs {
		known[j.ID] = true
	}
	for _, app := range apps {
		ids, err := c.AppJobs(ctx, app)
		if err != nil {
			out = append(out, Violation{KindCheck, "app " + app, err.Error()})
			continue
		}
		for _, id := range ids {
			if !known[id] {
				out = append(out, Violation{KindLegacyJob, id, fmt.Sprintf("application %s lists a job the workload never created (created twice?)", app)})
			}
		}
	}
	for _, j := range jobs {
		subject := "legacy job " + j.ID
		code, state, err := c.Job(ctx, j.ID)
		if err != nil {
			out = append(out, Violation{KindCheck, subject, err.Error()})
			continue
		}
		if code == 404 {
			out = append(out, Violation{KindLegacyJob, subject, "lost: the job API no longer knows it"})
			continue
		}
		tasks, err := c.Tasks(ctx, j.ID)
		if err != nil {
			out = append(out, Violation{KindCheck, subject, err.Error()})
			continue
		}
		normal, running := 0, 0
		for _, t := range tasks {
			if t.State == "Finished" && t.Reason == "normal" {
				normal++
			}
			if len(live[t.ID]) > 0 {
				running++
				if t.State == "Finished" {
					out = append(out, Violation{KindOrphan, t.ID, fmt.Sprintf("task of %s is Finished (%s) but its process %v runs", j.ID, t.Reason, live[t.ID])})
				}
			}
		}
		switch {
		case j.Batch && state != "Finished":
			out = append(out, Violation{KindLegacyJob, subject, fmt.Sprintf("batch job not Finished after the settle time (%s)", state)})
		case j.Batch && normal > j.Size:
			out = append(out, Violation{KindLegacyJob, subject, fmt.Sprintf("doubled: %d tasks finished normally for a batch of %d", normal, j.Size)})
		case j.Killed && state != "Finished":
			out = append(out, Violation{KindLegacyJob, subject, fmt.Sprintf("killed but %s", state)})
		case j.Killed && running > 0:
			out = append(out, Violation{KindOrphan, subject, fmt.Sprintf("killed but %d of its tasks still run", running)})
		case !j.Batch && running > j.Size:
			out = append(out, Violation{KindLegacyJob, subject, fmt.Sprintf("doubled: %d tasks run for a desired size of %d", running, j.Size)})
		}
	}
	return out
}
