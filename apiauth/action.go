package apiauth

import (
	"net/http"
	"net/url"
	"strings"
)

// Group is the API group of the virtual resources that RBAC rules name.
const Group = "titus.vk-titus.io"

// The virtual resources.
const (
	ResourceJobs       = "jobs"
	ResourceTasks      = "tasks"
	ResourceMigrations = "migrations"
)

// The verbs, as Kubernetes spells them.
const (
	VerbGet    = "get"
	VerbList   = "list"
	VerbWatch  = "watch"
	VerbCreate = "create"
	VerbUpdate = "update"
	VerbDelete = "delete"
)

// Action is what a request does, in RBAC's terms: a verb on a resource of
// Group, on one named object or (Name "") on the collection. Migration
// entries are named "<scope>/<name>", e.g. "application/my-app".
type Action struct {
	Verb     string
	Resource string
	Name     string
}

// Read tells whether the action only reads.
func (a Action) Read() bool { return a.Verb == VerbGet || a.Verb == VerbList || a.Verb == VerbWatch }

// RESTAction maps a REST call of the job API (method and escaped path, as
// url.URL.EscapedPath gives it) to its Action; false when no rule covers
// it, which the Guard refuses. Path segments are unescaped one by one, as
// net/http's ServeMux matches them, so "jobs/a%2Fb" names job "a/b" here
// as it does in the handler.
//
//	GET  /api/v3/jobs                 list jobs     POST /api/v3/jobs             create jobs
//	GET  /api/v3/jobs/{id}            get jobs      DELETE /api/v3/jobs/{id}      delete jobs
//	PUT|POST|DELETE /api/v3/jobs/{id}/{instances,capacityAttributes,jobprocesses,
//	     disruptionBudget,attributes,enable,disable}                             update jobs
//	GET  /api/v3/tasks                list tasks    POST /api/v3/tasks/move       update tasks
//	GET  /api/v3/tasks/{id}           get tasks     DELETE /api/v3/tasks/{id}     delete tasks
//	PUT|DELETE /api/v3/tasks/{id}/attributes                                     update tasks
//	GET  /api/v3/migration/stages     list migrations
//	GET|PUT|DELETE /api/v3/migration/stages/{scope}/{name}   get|update|delete migrations
//	GET  /api/v3/migration/history    list migrations
//	GET  /api/v3/migration/resolve    get migrations
//
// HEAD is mapped as GET.
func RESTAction(method, escapedPath string) (Action, bool) {
	rest, ok := strings.CutPrefix(escapedPath, "/api/v3/")
	if !ok {
		return Action{}, false
	}
	seg := strings.Split(rest, "/")
	for i, s := range seg {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return Action{}, false
		}
		seg[i] = u
	}
	if method == http.MethodHead {
		method = http.MethodGet
	}
	switch seg[0] {
	case "jobs":
		return jobsAction(method, seg[1:])
	case "tasks":
		return tasksAction(method, seg[1:])
	case "migration":
		return migrationAction(method, seg[1:])
	}
	return Action{}, false
}

// jobSubresources are the parts of a job that a PUT, POST or DELETE on
// /jobs/{id}/{sub} changes: all updates of the job.
var jobSubresources = map[string]map[string]bool{
	"instances":          {http.MethodPut: true},
	"capacityAttributes": {http.MethodPut: true},
	"jobprocesses":       {http.MethodPut: true},
	"disruptionBudget":   {http.MethodPut: true},
	"attributes":         {http.MethodPut: true, http.MethodDelete: true},
	"enable":             {http.MethodPost: true},
	"disable":            {http.MethodPost: true},
}

func jobsAction(method string, seg []string) (Action, bool) {
	switch {
	case len(seg) == 0 && method == http.MethodGet:
		return Action{VerbList, ResourceJobs, ""}, true
	case len(seg) == 0 && method == http.MethodPost:
		return Action{VerbCreate, ResourceJobs, ""}, true
	case len(seg) == 1:
		return itemAction(method, ResourceJobs, seg[0])
	case len(seg) == 2 && jobSubresources[seg[1]][method]:
		return Action{VerbUpdate, ResourceJobs, seg[0]}, true
	}
	return Action{}, false
}

func tasksAction(method string, seg []string) (Action, bool) {
	switch {
	case len(seg) == 0 && method == http.MethodGet:
		return Action{VerbList, ResourceTasks, ""}, true
	case len(seg) == 1 && seg[0] == "move" && method == http.MethodPost:
		return Action{VerbUpdate, ResourceTasks, ""}, true
	case len(seg) == 1:
		return itemAction(method, ResourceTasks, seg[0])
	case len(seg) == 2 && seg[1] == "attributes" && (method == http.MethodPut || method == http.MethodDelete):
		return Action{VerbUpdate, ResourceTasks, seg[0]}, true
	}
	return Action{}, false
}

func migrationAction(method string, seg []string) (Action, bool) {
	switch {
	case len(seg) == 1 && seg[0] == "stages" && method == http.MethodGet,
		len(seg) == 1 && seg[0] == "history" && method == http.MethodGet:
		return Action{VerbList, ResourceMigrations, ""}, true
	case len(seg) == 1 && seg[0] == "resolve" && method == http.MethodGet:
		return Action{VerbGet, ResourceMigrations, ""}, true
	case len(seg) == 3 && seg[0] == "stages":
		name := seg[1] + "/" + seg[2]
		if method == http.MethodPut {
			return Action{VerbUpdate, ResourceMigrations, name}, true
		}
		return itemAction(method, ResourceMigrations, name)
	}
	return Action{}, false
}

// itemAction maps GET and DELETE of one named object.
func itemAction(method, resource, name string) (Action, bool) {
	switch method {
	case http.MethodGet:
		return Action{VerbGet, resource, name}, true
	case http.MethodDelete:
		return Action{VerbDelete, resource, name}, true
	}
	return Action{}, false
}

// GRPCService is the Titus job service's full name.
const GRPCService = "com.netflix.titus.JobManagementService"

// grpcMethods maps the job service's methods to a verb and resource.
var grpcMethods = map[string]Action{
	"CreateJob":         {VerbCreate, ResourceJobs, ""},
	"UpdateJobCapacity": {VerbUpdate, ResourceJobs, ""},
	"UpdateJobCapacityWithOptionalAttributes": {VerbUpdate, ResourceJobs, ""},
	"UpdateJobStatus":                         {VerbUpdate, ResourceJobs, ""},
	"UpdateJobProcesses":                      {VerbUpdate, ResourceJobs, ""},
	"UpdateJobDisruptionBudget":               {VerbUpdate, ResourceJobs, ""},
	"UpdateJobAttributes":                     {VerbUpdate, ResourceJobs, ""},
	"DeleteJobAttributes":                     {VerbUpdate, ResourceJobs, ""},
	"FindJobs":                                {VerbList, ResourceJobs, ""},
	"FindJob":                                 {VerbGet, ResourceJobs, ""},
	"ObserveJob":                              {VerbWatch, ResourceJobs, ""},
	"ObserveJobs":                             {VerbWatch, ResourceJobs, ""},
	"ObserveJobsWithKeepAlive":                {VerbWatch, ResourceJobs, ""},
	"KillJob":                                 {VerbDelete, ResourceJobs, ""},
	"FindTask":                                {VerbGet, ResourceTasks, ""},
	"FindTasks":                               {VerbList, ResourceTasks, ""},
	"KillTask":                                {VerbDelete, ResourceTasks, ""},
	"UpdateTaskAttributes":                    {VerbUpdate, ResourceTasks, ""},
	"DeleteTaskAttributes":                    {VerbUpdate, ResourceTasks, ""},
	"MoveTask":                                {VerbUpdate, ResourceTasks, ""},
}

// GRPCAction maps a gRPC full method name ("/com.netflix.titus.
// JobManagementService/CreateJob") to its Action; false when no rule
// covers it. req is the unary request (nil for streams): for get, update
// and delete its id names the object, read through the getters generated
// code has (GetJobId or GetTaskId, else GetId). Streams are authorized on
// the collection (Name ""), as their request is read after the decision;
// ObserveJobs streams tasks too, under watch on jobs.
func GRPCAction(fullMethod string, req any) (Action, bool) {
	svc, m, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok || svc != GRPCService {
		return Action{}, false
	}
	a, ok := grpcMethods[m]
	if !ok {
		return Action{}, false
	}
	if a.Verb == VerbGet || a.Verb == VerbUpdate || a.Verb == VerbDelete {
		a.Name = idOf(req, a.Resource)
	}
	return a, true
}

// idOf reads the id a request message names, "" when it has none.
func idOf(req any, resource string) string {
	type jobID interface{ GetJobId() string }
	type taskID interface{ GetTaskId() string }
	type id interface{ GetId() string }
	if r, ok := req.(taskID); ok && resource == ResourceTasks {
		return r.GetTaskId()
	}
	if r, ok := req.(jobID); ok && resource == ResourceJobs {
		return r.GetJobId()
	}
	if r, ok := req.(id); ok {
		return r.GetId()
	}
	return ""
}
