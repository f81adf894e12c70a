package legacyapi

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Criteria are Titus's filtering criteria, one set for job and task
// queries and event streams alike (ParseCriteria reads them); empty fields
// match everything.
type Criteria struct {
	JobIDs  []string
	TaskIDs []string
	// Job fields, matched exactly.
	Owner, ApplicationName, CapacityGroup string
	ImageName, ImageTag                   string
	JobGroupStack, JobGroupDetail         string
	JobGroupSequence                      string
	PlatformSidecar                       string
	PlatformSidecarChannel                string
	JobType                               string // "batch" or "service"
	JobState                              string // a job state, as the constants below
	// Attributes: key → values, any of which matches (none: the key's
	// presence); every key must match, or with AttributesOr any one.
	Attributes   map[string][]string
	AttributesOr bool
	// Task fields.
	TaskStates       []string
	TaskStateReasons []string
	// NeedsMigration matches only tasks that need migrating: none here.
	NeedsMigration bool
	// SkipSystemFailures leaves out tasks that ended for a system error.
	SkipSystemFailures bool
}

// JobQuery filters and pages jobs.
type JobQuery struct {
	Page
	Criteria
	// Fields projects the answer (Project); backends ignore it.
	Fields []string
}

// TaskQuery filters and pages tasks.
type TaskQuery struct {
	Page
	Criteria
	Fields []string
}

// criteriaKeys are every filter key Titus knows.
var criteriaKeys = []string{
	"jobIds", "taskIds", "owner", "appName", "applicationName", "imageName", "imageTag", "capacityGroup",
	"jobGroupStack", "jobGroupDetail", "jobGroupSequence", "jobType", "attributes", "attributes.op",
	"labels", "labels.op", "jobState", "taskStates", "taskStateReasons", "needsMigration",
	"skipSystemFailures", "platformSidecar", "platformSidecarChannel",
}

var (
	jobStates  = []string{JobAccepted, JobKillInitiated, JobFinished}
	taskStates = []string{TaskAccepted, TaskLaunched, TaskStartInitiated, TaskStarted, TaskKillInitiated, TaskDisconnected, TaskFinished}
	// systemErrors are the reason codes Titus counts as its own failures.
	systemErrors = []string{"stuckInState", "crashed", "transientSystemError", "localSystemError", "unknownSystemError"}
)

// ParseCriteria reads Titus's filteringCriteria map: an unknown key is
// refused ("Unrecognized field(s)"), enum values are case-insensitive,
// lists are comma-separated, taskStates "any" is every state, and
// attributes is "k1,k2:v2,k2:v3" ("labels" is its older name).
func ParseCriteria(m map[string]string) (Criteria, error) {
	var unknown []string
	for k := range m {
		if !slices.Contains(criteriaKeys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return Criteria{}, fmt.Errorf("Unrecognized field(s) [%s]: %w", strings.Join(unknown, ", "), ErrInvalid)
	}
	get := func(k string) string { return strings.TrimSpace(m[k]) }
	c := Criteria{
		JobIDs: splitComma(m["jobIds"]), TaskIDs: splitComma(m["taskIds"]),
		Owner: get("owner"), ApplicationName: get("appName"), CapacityGroup: get("capacityGroup"),
		ImageName: get("imageName"), ImageTag: get("imageTag"),
		JobGroupStack: get("jobGroupStack"), JobGroupDetail: get("jobGroupDetail"), JobGroupSequence: get("jobGroupSequence"),
		PlatformSidecar: get("platformSidecar"), PlatformSidecarChannel: get("platformSidecarChannel"),
		TaskStateReasons:   splitComma(m["taskStateReasons"]),
		NeedsMigration:     strings.EqualFold(get("needsMigration"), "true"),
		SkipSystemFailures: strings.EqualFold(get("skipSystemFailures"), "true"),
	}
	if v := get("applicationName"); v != "" {
		c.ApplicationName = v
	}
	if v, ok := m["jobType"]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "batch":
			c.JobType = "batch"
		case "service":
			c.JobType = "service"
		default:
			return c, fieldErr("jobType", "Invalid jobType value %s: batch or service", v)
		}
	}
	if v, ok := m["jobState"]; ok {
		s, found := enumOf(jobStates, v)
		if !found {
			return c, fieldErr("jobState", "%q: one of %s", v, strings.Join(jobStates, ", "))
		}
		c.JobState = s
	}
	for _, v := range splitComma(m["taskStates"]) {
		if strings.EqualFold(v, "any") {
			c.TaskStates = nil // every state: no filter
			break
		}
		s, found := enumOf(taskStates, v)
		if !found {
			return c, fieldErr("taskStates", "%q: one of %s, or any", v, strings.Join(taskStates, ", "))
		}
		if !slices.Contains(c.TaskStates, s) {
			c.TaskStates = append(c.TaskStates, s)
		}
	}
	attrs, attrsGiven := m["attributes"]
	op := m["attributes.op"]
	if !attrsGiven {
		attrs, attrsGiven = m["labels"]
		op = m["labels.op"]
	}
	if attrsGiven {
		c.Attributes = parseAttributes(attrs)
		switch strings.ToLower(strings.TrimSpace(op)) {
		case "", "and":
		case "or":
			c.AttributesOr = true
		default:
			return c, fieldErr("attributes.op", "%q: and or or", op)
		}
	}
	return c, nil
}

// parseAttributes reads "k1,k2:v2,k2:v3": a key with only the empty value
// asks for its presence.
func parseAttributes(s string) map[string][]string {
	out := map[string][]string{}
	for _, kv := range splitComma(s) {
		k, v, _ := strings.Cut(kv, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !slices.Contains(out[k], v) {
			out[k] = append(out[k], v)
		}
	}
	for k, vs := range out {
		if len(vs) == 1 && vs[0] == "" {
			out[k] = nil
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func enumOf(names []string, v string) (string, bool) {
	v = strings.TrimSpace(v)
	for _, n := range names {
		if strings.EqualFold(n, v) {
			return n, true
		}
	}
	return "", false
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Map writes c back as a filteringCriteria map (ParseCriteria reads it).
func (c Criteria) Map() map[string]string {
	m := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("jobIds", strings.Join(c.JobIDs, ","))
	set("taskIds", strings.Join(c.TaskIDs, ","))
	set("owner", c.Owner)
	set("applicationName", c.ApplicationName)
	set("capacityGroup", c.CapacityGroup)
	set("imageName", c.ImageName)
	set("imageTag", c.ImageTag)
	set("jobGroupStack", c.JobGroupStack)
	set("jobGroupDetail", c.JobGroupDetail)
	set("jobGroupSequence", c.JobGroupSequence)
	set("platformSidecar", c.PlatformSidecar)
	set("platformSidecarChannel", c.PlatformSidecarChannel)
	set("jobType", c.JobType)
	set("jobState", c.JobState)
	set("taskStates", strings.Join(c.TaskStates, ","))
	set("taskStateReasons", strings.Join(c.TaskStateReasons, ","))
	if c.NeedsMigration {
		m["needsMigration"] = "true"
	}
	if c.SkipSystemFailures {
		m["skipSystemFailures"] = "true"
	}
	if c.Attributes != nil {
		var attrs []string
		for _, k := range slices.Sorted(maps.Keys(c.Attributes)) {
			if len(c.Attributes[k]) == 0 {
				attrs = append(attrs, k)
			}
			for _, v := range c.Attributes[k] {
				attrs = append(attrs, k+":"+v)
			}
		}
		m["attributes"] = strings.Join(attrs, ",")
		if c.AttributesOr {
			m["attributes.op"] = "or"
		}
	}
	return m
}

// HasTaskCriteria tells whether c filters jobs by their tasks: a job then
// matches when any of its tasks does (MatchJob's tasks).
func (c Criteria) HasTaskCriteria() bool {
	return len(c.TaskIDs) > 0 || len(c.TaskStates) > 0 || len(c.TaskStateReasons) > 0 || c.NeedsMigration
}

// HasJobFieldCriteria tells whether matching a task needs its job's
// descriptor (MatchTask's job).
func (c Criteria) HasJobFieldCriteria() bool {
	return c.Owner != "" || c.ApplicationName != "" || c.CapacityGroup != "" || c.ImageName != "" || c.ImageTag != "" ||
		c.JobGroupStack != "" || c.JobGroupDetail != "" || c.JobGroupSequence != "" || c.PlatformSidecar != "" ||
		c.PlatformSidecarChannel != "" || c.JobType != "" || c.JobState != "" || c.Attributes != nil
}

// MatchJob tells whether j passes c. tasks gives the job's tasks; it is
// called only when c has task criteria (a job matches when any task does).
func MatchJob(c Criteria, j Job, tasks func() []Task) bool {
	if len(c.JobIDs) > 0 && !slices.Contains(c.JobIDs, j.ID) || !c.matchJobFields(j) {
		return false
	}
	if !c.HasTaskCriteria() {
		return true
	}
	for _, t := range tasks() {
		if (len(c.TaskIDs) == 0 || slices.Contains(c.TaskIDs, t.ID)) && c.matchTaskFields(t) {
			return true
		}
	}
	return false
}

// MatchTask tells whether t, a task of job j, passes c. j is read only
// when HasJobFieldCriteria; a caller may pass the zero Job otherwise.
func MatchTask(c Criteria, t Task, j Job) bool {
	switch {
	case len(c.JobIDs) > 0 && !slices.Contains(c.JobIDs, t.JobID),
		len(c.TaskIDs) > 0 && !slices.Contains(c.TaskIDs, t.ID),
		!c.matchTaskFields(t):
		return false
	}
	return !c.HasJobFieldCriteria() || c.matchJobFields(j)
}

func (c Criteria) matchTaskFields(t Task) bool {
	switch {
	case len(c.TaskStates) > 0 && !slices.Contains(c.TaskStates, t.Status.State),
		len(c.TaskStateReasons) > 0 && !slices.Contains(c.TaskStateReasons, t.Status.ReasonCode),
		c.NeedsMigration, // no world here migrates tasks
		c.SkipSystemFailures && (t.Status.State == TaskFinished || t.Status.State == TaskKillInitiated) &&
			slices.Contains(systemErrors, t.Status.ReasonCode):
		return false
	}
	return true
}

func (c Criteria) matchJobFields(j Job) bool {
	d := j.JobDescriptor
	var img Image
	if d.Container != nil && d.Container.Image != nil {
		img = *d.Container.Image
	}
	var group JobGroupInfo
	if d.JobGroupInfo != nil {
		group = *d.JobGroupInfo
	}
	owner := ""
	if d.Owner != nil {
		owner = d.Owner.TeamEmail
	}
	for _, f := range [...]struct{ want, got string }{
		{c.Owner, owner}, {c.ApplicationName, d.ApplicationName}, {c.CapacityGroup, d.CapacityGroup},
		{c.ImageName, img.Name}, {c.ImageTag, img.Tag}, {c.JobGroupStack, group.Stack},
		{c.JobGroupDetail, group.Detail}, {c.JobGroupSequence, group.Sequence}, {c.JobState, j.Status.State},
	} {
		if f.want != "" && f.want != f.got {
			return false
		}
	}
	switch {
	case c.JobType == "batch" && d.Batch == nil, c.JobType == "service" && d.Service == nil:
		return false
	case c.PlatformSidecar != "" || c.PlatformSidecarChannel != "":
		// Validate accepts no platform sidecar: no job has one to match.
		return false
	}
	return c.Attributes == nil || matchAttributes(c.Attributes, d.Attributes, c.AttributesOr)
}

// matchAttributes is Titus's QueryUtils.matchesAttributes.
func matchAttributes(want map[string][]string, have map[string]string, or bool) bool {
	if len(have) == 0 {
		return false
	}
	for k, vs := range want {
		v, ok := have[k]
		hit := ok && (len(vs) == 0 || slices.Contains(vs, v))
		if or && hit {
			return true
		}
		if !or && !hit {
			return false
		}
	}
	return !or
}

// Query parameters that are not filters (lower-cased, as Titus compares).
var nonFilterParams = []string{"debug", "fields", "page", "pagesize", "cursor", "accesstoken"}

// pageFromURL reads page (or pageNumber), pageSize and cursor.
func pageFromURL(v url.Values) (Page, error) {
	var p Page
	for _, f := range []struct {
		name string
		into *int
	}{{"pageSize", &p.PageSize}, {"page", &p.PageNumber}} {
		if s := v.Get(f.name); s != "" {
			i, err := strconv.Atoi(s)
			if err != nil {
				return p, fieldErr(f.name, "%q is not a number", s)
			}
			if f.name == "pageSize" && i < 1 {
				return p, fieldErr(f.name, "%d: must be between 1 and %d", i, MaxPageSize)
			}
			*f.into = i
		}
	}
	p.Cursor = v.Get("cursor")
	return p, CheckPage(&p)
}

// queryFromURL reads a REST query as Titus's gateway does: page, pageSize,
// cursor and fields; every other parameter but debug and accessToken is a
// filter (ParseCriteria, so an unknown one is refused).
func queryFromURL(v url.Values) (Page, Criteria, []string, error) {
	p, err := pageFromURL(v)
	if err != nil {
		return p, Criteria{}, nil, err
	}
	filters := map[string]string{}
	for k, vs := range v {
		if !slices.Contains(nonFilterParams, strings.ToLower(k)) && len(vs) > 0 {
			filters[k] = vs[0]
		}
	}
	c, err := ParseCriteria(filters)
	return p, c, splitComma(strings.Join(v["fields"], ",")), err
}

// JobQueryFromURL reads GET /api/v3/jobs's query.
func JobQueryFromURL(v url.Values) (JobQuery, error) {
	p, c, fields, err := queryFromURL(v)
	return JobQuery{Page: p, Criteria: c, Fields: fields}, err
}

// TaskQueryFromURL reads GET /api/v3/tasks's query.
func TaskQueryFromURL(v url.Values) (TaskQuery, error) {
	p, c, fields, err := queryFromURL(v)
	return TaskQuery{Page: p, Criteria: c, Fields: fields}, err
}

// values writes a query back as URL parameters (Client).
func values(p Page, c Criteria, fields []string) url.Values {
	v := url.Values{}
	if p.PageSize > 0 {
		v.Set("pageSize", strconv.Itoa(p.PageSize))
	}
	if p.PageNumber > 0 {
		v.Set("page", strconv.Itoa(p.PageNumber))
	}
	if p.Cursor != "" {
		v.Set("cursor", p.Cursor)
	}
	for k, val := range c.Map() {
		v.Set(k, val)
	}
	if len(fields) > 0 {
		v.Set("fields", strings.Join(fields, ","))
	}
	return v
}

// Values writes q as URL parameters.
func (q JobQuery) Values() url.Values { return values(q.Page, q.Criteria, q.Fields) }

// Values writes q as URL parameters.
func (q TaskQuery) Values() url.Values { return values(q.Page, q.Criteria, q.Fields) }
