package legacyapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
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
		"container.resources.efsMounts":                func(d *JobDescriptor) { d.Container.Resources.EfsMounts = json.RawMessage(`[{"efsId":"x"}]`) },
		"container.resources.signedAddressAllocations": func(d *JobDescriptor) { d.Container.Resources.SignedAddressAllocations = json.RawMessage(`[{}, {}]`) },
		"container.resources.staticIPAddresses":        func(d *JobDescriptor) { d.Container.Resources.Pool = "p" },
		"container.resources.diskMB":                   func(d *JobDescriptor) { d.Container.Resources.DiskMB = 2000000 },
		"batch.runtimeLimitSec":                        func(d *JobDescriptor) { d.Batch.RuntimeLimitSec = 900000 },
	}
	l := TitusLimits()
	if err := l.Validate(validDescriptor()); err != nil {
		t.Fatalf("valid descriptor refused: %v", err)
	}
	for field, mutate := range cases {
		d := validDescriptor()
		mutate(&d)
		err := l.Validate(d)
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
