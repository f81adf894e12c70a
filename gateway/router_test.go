package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/migration"
)

// world is a backend holding jobs in memory under one id prefix.
type world struct {
	legacyapi.Backend // nil: calls the router must not make panic
	prefix            string
	jobs              []legacyapi.Job
	down              bool
}

func (w *world) CreateJob(_ context.Context, d legacyapi.JobDescriptor) (string, error) {
	id := fmt.Sprintf("%s%03d", w.prefix, len(w.jobs))
	w.jobs = append(w.jobs, legacyapi.Job{ID: id, JobDescriptor: d,
		Status: legacyapi.JobStatus{State: legacyapi.JobAccepted, Timestamp: legacyapi.U64(len(w.jobs))}})
	return id, nil
}

func (w *world) FindJobs(_ context.Context, q legacyapi.JobQuery) (legacyapi.JobQueryResult, error) {
	if w.down {
		return legacyapi.JobQueryResult{}, fmt.Errorf("%s: %w", w.prefix, legacyapi.ErrUnavailable)
	}
	items, pg, err := legacyapi.Paginate(append([]legacyapi.Job(nil), w.jobs...), legacyapi.JobKey, q.Page)
	return legacyapi.JobQueryResult{Items: items, Pagination: pg}, err
}

func (w *world) GetJob(_ context.Context, id string) (legacyapi.Job, error) {
	for _, j := range w.jobs {
		if j.ID == id {
			return j, nil
		}
	}
	return legacyapi.Job{}, legacyapi.NotFound("job", id)
}

type fixed migration.Stage

func (f fixed) Resolve(string, string) migration.Decision {
	return migration.Decision{Stage: migration.Stage(f)}
}

func newTestRouter(stage string) (*Router, *world, *world) {
	st, err := migration.ParseStage(stage)
	if err != nil {
		panic(err)
	}
	legacy, kube := &world{prefix: legacyapi.LegacyPrefix + "job-"}, &world{prefix: legacyapi.KubePrefix}
	return NewRouter(legacy, kube, fixed(st), logrus.New()), legacy, kube
}

func TestRouterSendsNewJobsByStageAndCallsByPrefix(t *testing.T) {
	ctx := context.Background()
	for stage, wantKube := range map[string]bool{"legacy": false, "kube": true, "0%": false, "100%": true} {
		r, _, _ := newTestRouter(stage)
		id, err := r.CreateJob(ctx, legacyapi.JobDescriptor{ApplicationName: "app"})
		if err != nil || strings.HasPrefix(id, legacyapi.KubePrefix) != wantKube {
			t.Errorf("stage %s: job %q %v", stage, id, err)
		}
		if _, err := r.GetJob(ctx, id); err != nil {
			t.Errorf("stage %s: get %s: %v", stage, id, err)
		}
	}
	r, _, _ := newTestRouter("legacy")
	if _, err := r.GetJob(ctx, "12345"); !errors.Is(err, legacyapi.ErrNotFound) {
		t.Errorf("foreign id: %v", err)
	}
}

func TestRouterMergesBothWorldsAndFailsWhole(t *testing.T) {
	ctx := context.Background()
	r, legacy, kube := newTestRouter("50%")
	for range 40 {
		if _, err := r.CreateJob(ctx, legacyapi.JobDescriptor{ApplicationName: "app"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(legacy.jobs) == 0 || len(kube.jobs) == 0 {
		t.Fatalf("50%%: %d legacy, %d kube", len(legacy.jobs), len(kube.jobs))
	}
	seen := map[string]bool{}
	q := legacyapi.JobQuery{Page: legacyapi.Page{PageSize: 7}}
	for {
		res, err := r.FindJobs(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.Items {
			if seen[j.ID] {
				t.Fatalf("%s twice", j.ID)
			}
			seen[j.ID] = true
		}
		if res.Pagination.TotalItems != 40 {
			t.Fatalf("totalItems %d", res.Pagination.TotalItems)
		}
		if !res.Pagination.HasMore {
			break
		}
		q.Cursor = res.Pagination.Cursor
	}
	if len(seen) != 40 {
		t.Fatalf("walked %d of 40", len(seen))
	}

	byNumber, err := r.FindJobs(ctx, legacyapi.JobQuery{Page: legacyapi.Page{PageSize: 7, PageNumber: 2}})
	if err != nil || len(byNumber.Items) != 7 || byNumber.Pagination.CursorPosition != 21 {
		t.Fatalf("page 2 by number: %d items, %+v, %v", len(byNumber.Items), byNumber.Pagination, err)
	}

	kube.down = true
	if _, err := r.FindJobs(ctx, legacyapi.JobQuery{}); !errors.Is(err, legacyapi.ErrUnavailable) {
		t.Fatalf("one world down: %v (a short list would read as lost jobs)", err)
	}
	if _, err := r.FindJobs(ctx, legacyapi.JobQuery{Criteria: legacyapi.Criteria{JobIDs: []string{legacy.jobs[0].ID}}}); err != nil {
		t.Fatalf("a query naming legacy ids only must not need kube: %v", err)
	}
}
