package apiauth

import "testing"

func TestRESTAction(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Action
		ok           bool
	}{
		{"GET", "/api/v3/jobs", Action{"list", "jobs", ""}, true},
		{"POST", "/api/v3/jobs", Action{"create", "jobs", ""}, true},
		{"GET", "/api/v3/jobs/j-1", Action{"get", "jobs", "j-1"}, true},
		{"HEAD", "/api/v3/jobs/j-1", Action{"get", "jobs", "j-1"}, true},
		{"DELETE", "/api/v3/jobs/j-1", Action{"delete", "jobs", "j-1"}, true},
		{"PUT", "/api/v3/jobs/j-1/instances", Action{"update", "jobs", "j-1"}, true},
		{"PUT", "/api/v3/jobs/j-1/capacityAttributes", Action{"update", "jobs", "j-1"}, true},
		{"PUT", "/api/v3/jobs/j-1/jobprocesses", Action{"update", "jobs", "j-1"}, true},
		{"PUT", "/api/v3/jobs/j-1/disruptionBudget", Action{"update", "jobs", "j-1"}, true},
		{"PUT", "/api/v3/jobs/j-1/attributes", Action{"update", "jobs", "j-1"}, true},
		{"DELETE", "/api/v3/jobs/j-1/attributes", Action{"update", "jobs", "j-1"}, true},
		{"POST", "/api/v3/jobs/j-1/enable", Action{"update", "jobs", "j-1"}, true},
		{"POST", "/api/v3/jobs/j-1/disable", Action{"update", "jobs", "j-1"}, true},
		{"GET", "/api/v3/tasks", Action{"list", "tasks", ""}, true},
		{"GET", "/api/v3/tasks/t-1", Action{"get", "tasks", "t-1"}, true},
		{"DELETE", "/api/v3/tasks/t-1", Action{"delete", "tasks", "t-1"}, true},
		{"PUT", "/api/v3/tasks/t-1/attributes", Action{"update", "tasks", "t-1"}, true},
		{"DELETE", "/api/v3/tasks/t-1/attributes", Action{"update", "tasks", "t-1"}, true},
		{"POST", "/api/v3/tasks/move", Action{"update", "tasks", ""}, true},
		{"GET", "/api/v3/migration/stages", Action{"list", "migrations", ""}, true},
		{"GET", "/api/v3/migration/stages/application/a", Action{"get", "migrations", "application/a"}, true},
		{"PUT", "/api/v3/migration/stages/capacityGroup/cg", Action{"update", "migrations", "capacityGroup/cg"}, true},
		{"DELETE", "/api/v3/migration/stages/application/a", Action{"delete", "migrations", "application/a"}, true},
		{"GET", "/api/v3/migration/history", Action{"list", "migrations", ""}, true},
		{"GET", "/api/v3/migration/resolve", Action{"get", "migrations", ""}, true},
		{"GET", "/api/v3/jobs/a%2Fb", Action{"get", "jobs", "a/b"}, true},

		// Refused: no rule (and writes never pass as reads).
		{"PATCH", "/api/v3/jobs", Action{}, false},
		{"POST", "/api/v3/jobs/j-1", Action{}, false},
		{"GET", "/api/v3/jobs/j-1/instances", Action{}, false},
		{"POST", "/api/v3/jobs/j-1/instances", Action{}, false},
		{"GET", "/api/v3/jobs/", Action{}, false},
		{"GET", "/api/v3//jobs", Action{}, false},
		{"GET", "/api/v3/jobs/%zz", Action{}, false},
		{"GET", "/api/v3/agents", Action{}, false},
		{"GET", "/api/v4/jobs", Action{}, false},
		{"GET", "/", Action{}, false},
		{"POST", "/api/v3/migration/stages/application/a", Action{}, false},
		{"PUT", "/api/v3/migration/stages", Action{}, false},
		{"GET", "/api/v3/migration/stages/application", Action{}, false},
		{"DELETE", "/api/v3/migration/history", Action{}, false},
	} {
		got, ok := RESTAction(tc.method, tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RESTAction(%s %s) = %+v, %v; want %+v, %v", tc.method, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

type jobIDReq struct{ id string }

func (r jobIDReq) GetJobId() string { return r.id }

type taskIDReq struct{ id string }

func (r taskIDReq) GetTaskId() string { return r.id }

type idReq struct{ id string }

func (r idReq) GetId() string { return r.id }

func TestGRPCAction(t *testing.T) {
	m := func(name string) string { return "/" + GRPCService + "/" + name }
	for _, tc := range []struct {
		method string
		req    any
		want   Action
		ok     bool
	}{
		{m("CreateJob"), idReq{"ignored"}, Action{"create", "jobs", ""}, true},
		{m("FindJobs"), nil, Action{"list", "jobs", ""}, true},
		{m("FindJob"), idReq{"j-1"}, Action{"get", "jobs", "j-1"}, true},
		{m("KillJob"), idReq{"j-1"}, Action{"delete", "jobs", "j-1"}, true},
		{m("UpdateJobCapacity"), jobIDReq{"j-1"}, Action{"update", "jobs", "j-1"}, true},
		{m("UpdateJobStatus"), idReq{"j-1"}, Action{"update", "jobs", "j-1"}, true},
		{m("ObserveJobs"), nil, Action{"watch", "jobs", ""}, true},
		{m("FindTasks"), nil, Action{"list", "tasks", ""}, true},
		{m("FindTask"), idReq{"t-1"}, Action{"get", "tasks", "t-1"}, true},
		{m("KillTask"), taskIDReq{"t-1"}, Action{"delete", "tasks", "t-1"}, true},
		{m("MoveTask"), taskIDReq{"t-1"}, Action{"update", "tasks", "t-1"}, true},
		{m("KillJob"), "not a message", Action{"delete", "jobs", ""}, true},
		{m("Unknown"), nil, Action{}, false},
		{"/other.Service/CreateJob", nil, Action{}, false},
		{"garbage", nil, Action{}, false},
	} {
		got, ok := GRPCAction(tc.method, tc.req)
		if got != tc.want || ok != tc.ok {
			t.Errorf("GRPCAction(%s, %v) = %+v, %v; want %+v, %v", tc.method, tc.req, got, ok, tc.want, tc.ok)
		}
	}
}
