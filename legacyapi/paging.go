package legacyapi

import (
	"encoding/base64"
	"encoding/json"
	"sort"
)

// Page sizes: Titus's REST default, and a ceiling that keeps one reply
// bounded (clouddriver pages by 1000).
const (
	DefaultPageSize = 10
	MaxPageSize     = 1000
)

// Key orders jobs and tasks: creation time (ms), then id. Both worlds sort
// by it, so one cursor means the same position in each.
type Key struct {
	At uint64 `json:"t"`
	ID string `json:"id"`
}

// Less orders keys.
func (k Key) Less(o Key) bool {
	if k.At != o.At {
		return k.At < o.At
	}
	return k.ID < o.ID
}

// JobKey is a job's position: the time of its first status.
func JobKey(j Job) Key {
	at := j.Status.Timestamp
	if len(j.StatusHistory) > 0 {
		at = j.StatusHistory[0].Timestamp
	}
	return Key{At: uint64(at), ID: j.ID}
}

// TaskKey is a task's position: the time of its first status.
func TaskKey(t Task) Key {
	at := t.Status.Timestamp
	if len(t.StatusHistory) > 0 {
		at = t.StatusHistory[0].Timestamp
	}
	return Key{At: uint64(at), ID: t.ID}
}

// EncodeCursor makes the opaque cursor that resumes after k.
func EncodeCursor(k Key) string {
	b, _ := json.Marshal(k)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor; "" is the start.
func DecodeCursor(s string) (Key, bool, error) {
	if s == "" {
		return Key{}, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	var k Key
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err != nil || k.ID == "" {
		return Key{}, false, fieldErr("cursor", "%q is not a cursor this API issued", s)
	}
	return k, true, nil
}

// CheckPage validates a page request and fills the default size.
func CheckPage(p *Page) error {
	switch {
	case p.PageSize < 0 || p.PageSize > MaxPageSize:
		return fieldErr("pageSize", "%d: must be between 1 and %d", p.PageSize, MaxPageSize)
	case p.PageNumber < 0:
		return fieldErr("pageNumber", "%d: must be ≥ 0", p.PageNumber)
	case p.PageSize == 0:
		p.PageSize = DefaultPageSize
	}
	_, _, err := DecodeCursor(p.Cursor)
	return err
}

// Paginate cuts one page out of a full, filtered list: the items after the
// cursor (or, without one, from PageNumber × PageSize) in key order.
func Paginate[T any](all []T, key func(T) Key, p Page) ([]T, Pagination, error) {
	if err := CheckPage(&p); err != nil {
		return nil, Pagination{}, err
	}
	sort.Slice(all, func(i, j int) bool { return key(all[i]).Less(key(all[j])) })
	start := p.PageNumber * p.PageSize
	if after, ok, _ := DecodeCursor(p.Cursor); ok {
		start = sort.Search(len(all), func(i int) bool { return after.Less(key(all[i])) })
	}
	start = min(start, len(all))
	end := min(start+p.PageSize, len(all))
	page := all[start:end]
	return page, pagination(p, len(all), end, len(all) > end, page, key), nil
}

func pagination[T any](p Page, total, position int, more bool, page []T, key func(T) Key) Pagination {
	out := Pagination{
		CurrentPage:    p,
		HasMore:        more,
		TotalItems:     total,
		TotalPages:     (total + p.PageSize - 1) / p.PageSize,
		CursorPosition: position,
		Cursor:         p.Cursor,
	}
	if len(page) > 0 {
		out.Cursor = EncodeCursor(key(page[len(page)-1]))
	}
	return out
}

// Part is one world's answer to the same page request.
type Part[T any] struct {
	Items      []T
	Pagination Pagination
}

// Merge combines the answers of several backends to one page request into
// the page a single ordered list would have given: each part holds its
// items after the cursor in key order, so the first PageSize of their
// merge are exactly the next page.
func Merge[T any](p Page, key func(T) Key, parts ...Part[T]) ([]T, Pagination) {
	if p.PageSize == 0 {
		p.PageSize = DefaultPageSize
	}
	var all []T
	total, before, more := 0, 0, false
	for _, part := range parts {
		all = append(all, part.Items...)
		total += part.Pagination.TotalItems
		// Items of this part before the page: its position minus what it returned.
		before += part.Pagination.CursorPosition - len(part.Items)
		more = more || part.Pagination.HasMore
	}
	sort.Slice(all, func(i, j int) bool { return key(all[i]).Less(key(all[j])) })
	if len(all) > p.PageSize {
		all, more = all[:p.PageSize], true
	}
	return all, pagination(p, total, before+len(all), more, all, key)
}
