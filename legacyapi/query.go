package legacyapi

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// pageFromURL reads pageNumber/pageSize/cursor, also in the page.* form
// that gRPC-transcoded clients send.
func pageFromURL(v url.Values) (Page, error) {
	var p Page
	for _, f := range []struct {
		names []string
		into  *int
	}{{[]string{"pageSize", "page.pageSize"}, &p.PageSize}, {[]string{"page", "pageNumber", "page.pageNumber"}, &p.PageNumber}} {
		for _, n := range f.names {
			if s := v.Get(n); s != "" {
				i, err := strconv.Atoi(s)
				if err != nil {
					return p, fieldErr(n, "%q is not a number", s)
				}
				*f.into = i
			}
		}
	}
	p.Cursor = first(v, "cursor", "page.cursor")
	return p, CheckPage(&p)
}

func first(v url.Values, names ...string) string {
	for _, n := range names {
		if s := v.Get(n); s != "" {
			return s
		}
	}
	return ""
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// JobQueryFromURL reads a job query the way Titus's REST gateway takes it.
// attributes is "k1:v1,k2" (k2: present with any value).
func JobQueryFromURL(v url.Values) (JobQuery, error) {
	p, err := pageFromURL(v)
	q := JobQuery{
		Page:            p,
		JobIDs:          list(v.Get("jobIds")),
		ApplicationName: first(v, "applicationName", "appName"),
		Owner:           v.Get("owner"),
		CapacityGroup:   v.Get("capacityGroup"),
		ImageName:       v.Get("imageName"),
		JobType:         v.Get("jobType"),
		JobState:        v.Get("jobState"),
	}
	if err != nil {
		return q, err
	}
	if q.JobType != "" && q.JobType != "batch" && q.JobType != "service" {
		return q, fieldErr("jobType", "%q: batch or service", q.JobType)
	}
	if q.JobState != "" && !slices.Contains([]string{JobAccepted, JobKillInitiated, JobFinished}, q.JobState) {
		return q, fieldErr("jobState", "%q: one of Accepted, KillInitiated, Finished", q.JobState)
	}
	for _, kv := range list(v.Get("attributes")) {
		k, val, _ := strings.Cut(kv, ":")
		if q.Attributes == nil {
			q.Attributes = map[string]string{}
		}
		q.Attributes[k] = val
	}
	return q, nil
}

// TaskQueryFromURL reads a task query.
func TaskQueryFromURL(v url.Values) (TaskQuery, error) {
	p, err := pageFromURL(v)
	q := TaskQuery{
		Page:            p,
		JobIDs:          list(first(v, "jobIds", "jobId")),
		TaskIDs:         list(v.Get("taskIds")),
		TaskStates:      list(v.Get("taskStates")),
		ApplicationName: first(v, "applicationName", "appName"),
	}
	if err != nil {
		return q, err
	}
	for _, s := range q.TaskStates {
		if !slices.Contains(taskStates, s) {
			return q, fieldErr("taskStates", "%q: one of %s", s, strings.Join(taskStates, ", "))
		}
	}
	return q, nil
}

var taskStates = []string{TaskAccepted, TaskLaunched, TaskStartInitiated, TaskStarted, TaskKillInitiated, TaskDisconnected, TaskFinished}

// Values writes q back as URL parameters (Client).
func (q JobQuery) Values() url.Values {
	v := q.Page.values()
	set(v, "jobIds", strings.Join(q.JobIDs, ","))
	set(v, "applicationName", q.ApplicationName)
	set(v, "owner", q.Owner)
	set(v, "capacityGroup", q.CapacityGroup)
	set(v, "imageName", q.ImageName)
	set(v, "jobType", q.JobType)
	set(v, "jobState", q.JobState)
	var attrs []string
	for k, val := range q.Attributes {
		if val != "" {
			k += ":" + val
		}
		attrs = append(attrs, k)
	}
	slices.Sort(attrs)
	set(v, "attributes", strings.Join(attrs, ","))
	return v
}

// Values writes q back as URL parameters (Client).
func (q TaskQuery) Values() url.Values {
	v := q.Page.values()
	set(v, "jobIds", strings.Join(q.JobIDs, ","))
	set(v, "taskIds", strings.Join(q.TaskIDs, ","))
	set(v, "taskStates", strings.Join(q.TaskStates, ","))
	set(v, "applicationName", q.ApplicationName)
	return v
}

func (p Page) values() url.Values {
	v := url.Values{}
	if p.PageSize > 0 {
		v.Set("pageSize", strconv.Itoa(p.PageSize))
	}
	if p.PageNumber > 0 {
		v.Set("page", strconv.Itoa(p.PageNumber))
	}
	set(v, "cursor", p.Cursor)
	return v
}

func set(v url.Values, k, val string) {
	if val != "" {
		v.Set(k, val)
	}
}

// MatchJob tells whether j passes q's filters (for backends that filter a
// full list in memory).
func MatchJob(q JobQuery, j Job) bool {
	d := j.JobDescriptor
	switch {
	case len(q.JobIDs) > 0 && !slices.Contains(q.JobIDs, j.ID),
		q.ApplicationName != "" && q.ApplicationName != d.ApplicationName,
		q.Owner != "" && (d.Owner == nil || q.Owner != d.Owner.TeamEmail),
		q.CapacityGroup != "" && q.CapacityGroup != d.CapacityGroup,
		q.JobState != "" && q.JobState != j.Status.State,
		q.JobType == "batch" && d.Batch == nil,
		q.JobType == "service" && d.Service == nil,
		q.ImageName != "" && (d.Container == nil || d.Container.Image == nil || d.Container.Image.Name != q.ImageName):
		return false
	}
	for k, v := range q.Attributes {
		got, ok := d.Attributes[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// MatchTask tells whether t (of a job of application app) passes q.
func MatchTask(q TaskQuery, t Task, app string) bool {
	switch {
	case len(q.JobIDs) > 0 && !slices.Contains(q.JobIDs, t.JobID),
		len(q.TaskIDs) > 0 && !slices.Contains(q.TaskIDs, t.ID),
		len(q.TaskStates) > 0 && !slices.Contains(q.TaskStates, t.Status.State),
		q.ApplicationName != "" && q.ApplicationName != app:
		return false
	}
	return true
}
