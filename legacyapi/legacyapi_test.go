package legacyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func validDescriptor() JobDescriptor {
	return JobDescriptor{
		Owner:           &Owner{TeamEmail: "team@example.com"},
		ApplicationName: "myapp",
		Container: &Container{
			Resources: &ContainerResources{CPU: 1, MemoryMB: 128},
			Image:     &Image{Name: "busybox", Tag: "latest"},
			Command:   []string{"sleep", "1"},
		},
		Batch: &BatchJobSpec{Size: 1},
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := map[string]func(d *JobDescriptor){
		"applicationName":              func(d *JobDescriptor) { d.ApplicationName = "" },
		"owner.teamEmail":              func(d *JobDescriptor) { d.Owner = nil },
		"container.resources.cpu":      func(d *JobDescriptor) { d.Container.Resources.CPU = 0 },
		"container.resources.memoryMB": func(d *JobDescriptor) { d.Container.Resources.MemoryMB = 0 },
		"container.image.name":         func(d *JobDescriptor) { d.Container.Image.Name = "" },
		"container.image":              func(d *JobDescriptor) { d.Container.Image.Digest = "sha256:ab" },
		"batch":                        func(d *JobDescriptor) { d.Batch = nil },
		"batch.size":                   func(d *JobDescriptor) { d.Batch.Size = 0 },
		"batch.retryPolicy":            func(d *JobDescriptor) { d.Batch.RetryPolicy = &RetryPolicy{} },
		"service.capacity": func(d *JobDescriptor) {
			d.Batch = nil
			d.Service = &ServiceJobSpec{Capacity: &Capacity{Min: 2, Desired: 1, Max: 3}}
		},
		"volumes": func(d *JobDescriptor) { d.Volumes = json.RawMessage(`[{"name":"x"}]`) },
		"container.hardConstraints.expression": func(d *JobDescriptor) {
			d.Container.HardConstraints = &Constraints{Expression: "zone == a"}
		},
	}
	if err := Validate(validDescriptor()); err != nil {
		t.Fatalf("valid descriptor refused: %v", err)
	}
	for field, mutate := range cases {
		d := validDescriptor()
		mutate(&d)
		err := Validate(d)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func job(id string, at uint64) Job {
	return Job{ID: id, Status: JobStatus{State: JobAccepted, Timestamp: U64(at)}}
}

func TestPaginateWalksWithCursor(t *testing.T) {
	var all []Job
	for i := range 7 {
		all = append(all, job(fmt.Sprintf("j%d", i), uint64(100+i/2))) // equal times: id decides
	}
	var seen []string
	p := Page{PageSize: 3}
	for range 10 {
		page, pg, err := Paginate(append([]Job(nil), all...), JobKey, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			seen = append(seen, j.ID)
		}
		if pg.TotalItems != 7 {
			t.Fatalf("totalItems %d", pg.TotalItems)
		}
		if !pg.HasMore {
			break
		}
		p.Cursor = pg.Cursor
	}
	if got := strings.Join(seen, ","); got != "j0,j1,j2,j3,j4,j5,j6" {
		t.Fatalf("walk: %s", got)
	}
	if _, _, err := Paginate(all, JobKey, Page{PageSize: 1, Cursor: "garbage!"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestMergeEqualsOneList(t *testing.T) {
	var a, b, all []Job
	for i := range 9 {
		j := job(fmt.Sprintf("k%02d", i), uint64(i*10))
		all = append(all, j)
		if i%3 == 0 {
			a = append(a, j)
		} else {
			b = append(b, j)
		}
	}
	p := Page{PageSize: 4}
	var merged []string
	for {
		pa, ga, _ := Paginate(append([]Job(nil), a...), JobKey, p)
		pb, gb, _ := Paginate(append([]Job(nil), b...), JobKey, p)
		items, pg := Merge(p, JobKey, Part[Job]{pa, ga}, Part[Job]{pb, gb})
		want, wpg, _ := Paginate(append([]Job(nil), all...), JobKey, p)
		if len(items) != len(want) || pg.HasMore != wpg.HasMore || pg.TotalItems != wpg.TotalItems || pg.CursorPosition != wpg.CursorPosition {
			t.Fatalf("merged page %+v differs from %+v", pg, wpg)
		}
		for _, j := range items {
			merged = append(merged, j.ID)
		}
		if !pg.HasMore {
			break
		}
		p.Cursor = pg.Cursor
	}
	if len(merged) != 9 {
		t.Fatalf("merged walk: %v", merged)
	}
}

// memBackend is the smallest Backend: enough to drive the HTTP layer.
type memBackend struct{ jobs []Job }

func (m *memBackend) CreateJob(_ context.Context, d JobDescriptor) (string, error) {
	id := fmt.Sprintf("legacy-job-%d", len(m.jobs))
	m.jobs = append(m.jobs, Job{ID: id, JobDescriptor: d, Status: JobStatus{State: JobAccepted, Timestamp: U64(len(m.jobs))}})
	return id, nil
}
func (m *memBackend) FindJobs(_ context.Context, q JobQuery) (JobQueryResult, error) {
	var match []Job
	for _, j := range m.jobs {
		if MatchJob(q, j) {
			match = append(match, j)
		}
	}
	items, pg, err := Paginate(match, JobKey, q.Page)
	return JobQueryResult{Items: items, Pagination: pg}, err
}
func (m *memBackend) GetJob(_ context.Context, id string) (Job, error) {
	for _, j := range m.jobs {
		if j.ID == id {
			return j, nil
		}
	}
	return Job{}, NotFound("job", id)
}
func (m *memBackend) KillJob(context.Context, string) error { return nil }
func (m *memBackend) UpdateCapacity(context.Context, string, Capacity) error {
	return fmt.Errorf("batch job: %w", ErrConflict)
}
func (m *memBackend) SetEnabled(context.Context, string, bool) error { return nil }
func (m *memBackend) FindTasks(context.Context, TaskQuery) (TaskQueryResult, error) {
	return TaskQueryResult{}, nil
}
func (m *memBackend) GetTask(_ context.Context, id string) (Task, error) {
	return Task{}, NotFound("task", id)
}
func (m *memBackend) KillTask(context.Context, string, bool) error { return nil }

func TestHandlerAndClientRoundTrip(t *testing.T) {
	srv := httptest.NewServer(NewHandler(&memBackend{}, logrus.New()))
	defer srv.Close()
	c := NewClient(StaticBase(srv.URL), srv.Client())
	ctx := context.Background()

	d := validDescriptor()
	d.Container.Image.Tag = ""
	id, err := c.CreateJob(ctx, d)
	if err != nil || id == "" {
		t.Fatalf("create: %q %v", id, err)
	}
	got, err := c.GetJob(ctx, id)
	if err != nil || got.JobDescriptor.Container.Image.Tag != DefaultTag || got.JobDescriptor.CapacityGroup != DefaultCapGrp {
		t.Fatalf("get: %+v %v (defaults not filled)", got, err)
	}
	res, err := c.FindJobs(ctx, JobQuery{ApplicationName: "myapp", Page: Page{PageSize: 10}})
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("find: %+v %v", res, err)
	}
	if _, err := c.GetJob(ctx, "legacy-job-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	if err := c.UpdateCapacity(ctx, id, Capacity{Desired: 1, Max: 1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("resize batch: %v", err)
	}
	if err := c.UpdateCapacity(ctx, id, Capacity{Min: 2, Desired: 1, Max: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad capacity: %v", err)
	}

	post := func(body string) (int, string) {
		resp, err := http.Post(srv.URL+"/api/v3/jobs", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for body, want := range map[string]string{
		`{"applicationName":"x","bogus":1}`: `unknown field \"bogus\"`,
		`{"applicationName":"x"}`:           "owner.teamEmail: required",
		`not json`:                          "request body",
		``:                                  "empty",
	} {
		code, msg := post(body)
		if code != http.StatusBadRequest || !strings.Contains(msg, want) {
			t.Errorf("%q: %d %s", body, code, msg)
		}
	}
	if code, _ := post(`{"applicationName":"` + strings.Repeat("a", MaxBodyBytes) + `"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize body: %d", code)
	}
	resp, err := http.Get(srv.URL + "/api/v3/jobs?pageSize=5000")
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("pageSize 5000: %v %v", resp.StatusCode, err)
	}
}

func TestNumbersAsProto3JSON(t *testing.T) {
	var b BatchJobSpec
	if err := json.Unmarshal([]byte(`{"size":"3","runtimeLimitSec":60}`), &b); err != nil || b.Size != 3 || b.RuntimeLimitSec != 60 {
		t.Fatalf("%+v %v", b, err)
	}
	out, _ := json.Marshal(b)
	if !strings.Contains(string(out), `"runtimeLimitSec":"60"`) || !strings.Contains(string(out), `"size":3`) {
		t.Fatalf("encoded %s", out)
	}
}
