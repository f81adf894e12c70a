package gateway

import (
	"context"
	"fmt"
	"strings"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// FindJobs asks both worlds and merges (see fanOut).
func (r *Router) FindJobs(ctx context.Context, q legacyapi.JobQuery) (legacyapi.JobQueryResult, error) {
	ids := append(append([]string(nil), q.JobIDs...), q.TaskIDs...)
	items, pg, err := fanOut(ctx, r, q.Page, ids, legacyapi.JobKey,
		func(ctx context.Context, b legacyapi.Backend, p legacyapi.Page) (legacyapi.Part[legacyapi.Job], error) {
			q := q
			q.Page = p
			res, err := b.FindJobs(ctx, q)
			return legacyapi.Part[legacyapi.Job]{Items: res.Items, Pagination: res.Pagination}, err
		})
	return legacyapi.JobQueryResult{Items: items, Pagination: pg}, err
}

// FindTasks asks both worlds and merges (see fanOut).
func (r *Router) FindTasks(ctx context.Context, q legacyapi.TaskQuery) (legacyapi.TaskQueryResult, error) {
	ids := append(append([]string(nil), q.JobIDs...), q.TaskIDs...)
	items, pg, err := fanOut(ctx, r, q.Page, ids, legacyapi.TaskKey,
		func(ctx context.Context, b legacyapi.Backend, p legacyapi.Page) (legacyapi.Part[legacyapi.Task], error) {
			q := q
			q.Page = p
			res, err := b.FindTasks(ctx, q)
			return legacyapi.Part[legacyapi.Task]{Items: res.Items, Pagination: res.Pagination}, err
		})
	return legacyapi.TaskQueryResult{Items: items, Pagination: pg}, err
}

// fanOut runs one page request on every world that can hold a match and
// merges the answers. Both are asked at once; if either fails the list
// fails (503) rather than come back short: a tool that sees its job
// missing might submit it again.
//
// A cursor means the same position in both worlds, so it is passed as is.
// A page number is not: without a cursor, page N is cut from the first
// (N+1)×size items of each.
func fanOut[T any](ctx context.Context, r *Router, p legacyapi.Page, ids []string, key func(T) legacyapi.Key,
	find func(context.Context, legacyapi.Backend, legacyapi.Page) (legacyapi.Part[T], error)) ([]T, legacyapi.Pagination, error) {
	if err := legacyapi.CheckPage(&p); err != nil {
		return nil, legacyapi.Pagination{}, err
	}
	ask := p
	if p.Cursor == "" && p.PageNumber > 0 {
		ask = legacyapi.Page{PageSize: (p.PageNumber + 1) * p.PageSize}
		if ask.PageSize > legacyapi.MaxPageSize {
			return nil, legacyapi.Pagination{}, &legacyapi.FieldError{Field: "pageNumber",
				Msg: fmt.Sprintf("%d × pageSize %d reaches past %d items: page on with the cursor", p.PageNumber, p.PageSize, legacyapi.MaxPageSize)}
		}
	}
	worlds := r.worldsFor(ids)
	parts := make([]legacyapi.Part[T], len(worlds))
	errs := make([]error, len(worlds))
	done := make(chan int, len(worlds))
	for i, b := range worlds {
		go func() {
			parts[i], errs[i] = find(ctx, b, ask)
			done <- i
		}()
	}
	for range worlds {
		<-done
	}
	for _, err := range errs {
		if err != nil {
			return nil, legacyapi.Pagination{}, err
		}
	}
	if ask != p {
		all, pg := legacyapi.Merge(ask, key, parts...)
		return pageOut(all, pg, p, key)
	}
	items, pg := legacyapi.Merge(p, key, parts...)
	return items, pg, nil
}

// pageOut cuts page p.PageNumber from the first items of the merged list.
func pageOut[T any](all []T, merged legacyapi.Pagination, p legacyapi.Page, key func(T) legacyapi.Key) ([]T, legacyapi.Pagination, error) {
	start := min(p.PageNumber*p.PageSize, len(all))
	page := all[start:min(start+p.PageSize, len(all))]
	pg := legacyapi.Pagination{
		CurrentPage:    p,
		HasMore:        merged.TotalItems > start+len(page),
		TotalItems:     merged.TotalItems,
		TotalPages:     (merged.TotalItems + p.PageSize - 1) / p.PageSize,
		CursorPosition: start + len(page),
	}
	if len(page) > 0 {
		pg.Cursor = legacyapi.EncodeCursor(key(page[len(page)-1]))
	}
	return page, pg, nil
}

// worldsFor narrows a query that names ids to the worlds those ids live in.
func (r *Router) worldsFor(ids []string) []legacyapi.Backend {
	if len(ids) == 0 {
		return []legacyapi.Backend{r.legacy, r.kube}
	}
	var legacy, kube bool
	for _, id := range ids {
		legacy = legacy || strings.HasPrefix(id, legacyapi.LegacyPrefix)
		kube = kube || strings.HasPrefix(id, legacyapi.KubePrefix)
	}
	var out []legacyapi.Backend
	if legacy {
		out = append(out, r.legacy)
	}
	if kube {
		out = append(out, r.kube)
	}
	if len(out) == 0 {
		out = append(out, r.legacy) // ids of neither world: let one answer "nothing"
	}
	return out
}
