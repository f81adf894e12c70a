package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/legacy/operatorapi"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// FrameworkID is the framework every task the reference master places
// belongs to (Task.framework_id is required in mesos.proto).
const FrameworkID = "vk-titus-legacy"

// Handler serves the operator API (POST /api/v1), the Titus v3 job API
// (/api/v3/, JobAPI), GET /health, and the private agent and task
// endpoints of package protocol. With HTTP authentication (Config.HTTPAuth,
// doc.go) every endpoint but /health and GET_HEALTH is guarded: GET (and
// the operator API's GET_* calls) read, anything else writes, and an
// agent's registration writes. Authentication comes before the leader
// check, so only an authenticated caller learns where the leader is.
func (m *Master) Handler() http.Handler {
	jobs := legacyapi.NewHandler(m.JobAPI(), m.log)
	mux := http.NewServeMux()
	mux.Handle("/api/v3/", m.auth.Guard(mesosauth.ByMethod, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.IsLeader() {
			m.redirect(w, r, func(w http.ResponseWriter, code int, msg string) {
				legacyapi.WriteError(w, code, errors.New(msg))
			})
			return
		}
		jobs.ServeHTTP(w, r)
	})))
	mux.HandleFunc("/api/v1", m.serveAPI)
	mux.HandleFunc("/api/v1/", m.serveAPI)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		operatorapi.WriteNoData(w, http.StatusOK)
	})
	writes := func(*http.Request) mesosauth.Realm { return mesosauth.ReadWrite }
	mux.Handle(protocol.RegisterPath, m.auth.Guard(writes, http.HandlerFunc(m.serveRegister)))
	mux.Handle(protocol.TasksPath, m.auth.Guard(mesosauth.ByMethod, http.HandlerFunc(m.serveTasks)))
	mux.Handle(protocol.TasksPath+"/", m.auth.Guard(mesosauth.ByMethod, http.HandlerFunc(m.serveTasks)))
	return mux
}

// callRealm is the authentication realm of an operator call: GET_HEALTH
// is open (liveness probes poll it), the calls that only read are
// ReadOnly, and every other call, including any type not listed here, is
// ReadWrite, so a call nobody classified is protected.
func callRealm(t master.Call_Type) mesosauth.Realm {
	switch t {
	case master.Call_GET_HEALTH:
		return mesosauth.Open
	case master.Call_GET_FLAGS, master.Call_GET_VERSION, master.Call_GET_METRICS, master.Call_GET_LOGGING_LEVEL,
		master.Call_LIST_FILES, master.Call_READ_FILE, master.Call_GET_STATE, master.Call_GET_AGENTS,
		master.Call_GET_FRAMEWORKS, master.Call_GET_EXECUTORS, master.Call_GET_OPERATIONS, master.Call_GET_TASKS,
		master.Call_GET_ROLES, master.Call_GET_WEIGHTS, master.Call_GET_MASTER, master.Call_SUBSCRIBE,
		master.Call_GET_MAINTENANCE_STATUS, master.Call_GET_MAINTENANCE_SCHEDULE, master.Call_GET_QUOTA:
		return mesosauth.ReadOnly
	}
	return mesosauth.ReadWrite
}

// redirect answers 307 towards the leader's same path, as a Mesos master
// that does not lead does. mesos-go's httpcli does not follow it (it
// disables redirects) and reports apierrors.CodeNotLeader, so operator
// clients re-resolve the leader in ZooKeeper; Go's default client, which
// the agents' registrations use, follows it with the body. With no known
// leader it answers 503. writeErr words the answer in the error shape of
// the API asked.
func (m *Master) redirect(w http.ResponseWriter, r *http.Request, writeErr func(http.ResponseWriter, int, string)) {
	leader, ok := m.Leader()
	if !ok {
		writeErr(w, http.StatusServiceUnavailable, "no leading master is elected")
		return
	}
	loc := leader.URL() + r.URL.Path
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", loc)
	writeErr(w, http.StatusTemporaryRedirect, "this master does not lead; the leader is "+leader.URL())
}

func (m *Master) serveAPI(w http.ResponseWriter, r *http.Request) {
	var call master.Call
	codec, ok := operatorapi.ReadCall(w, r, &call)
	if !ok {
		return
	}
	if !m.auth.Allow(w, r, callRealm(call.Type)) {
		m.log.WithFields(logrus.Fields{"call": call.Type.String(), "remote": r.RemoteAddr}).Debug("unauthenticated call refused")
		return
	}
	log := m.log.WithField("call", call.Type.String())
	log.Debug("processing call")

	// Like Mesos, any master answers for itself on health and version;
	// everything about the cluster comes from the leader.
	switch call.Type {
	case master.Call_GET_HEALTH:
		operatorapi.WriteResponse(w, codec, &master.Response{
			Type:      master.Response_GET_HEALTH,
			GetHealth: &master.Response_GetHealth{Healthy: true},
		})
		return
	case master.Call_GET_VERSION:
		buildUser := "vk-titus"
		buildTime := float64(m.started.Unix())
		operatorapi.WriteResponse(w, codec, &master.Response{
			Type: master.Response_GET_VERSION,
			GetVersion: &master.Response_GetVersion{VersionInfo: mesos.VersionInfo{
				Version: Version, BuildUser: &buildUser, BuildTime: &buildTime,
			}},
		})
		return
	case master.Call_UNKNOWN:
		operatorapi.WriteError(w, http.StatusBadRequest, "Expecting 'type' to be present")
		return
	case master.Call_GET_MASTER, master.Call_GET_AGENTS, master.Call_GET_TASKS,
		master.Call_RESERVE_RESOURCES, master.Call_UNRESERVE_RESOURCES:
	default:
		operatorapi.WriteError(w, http.StatusNotImplemented,
			fmt.Sprintf("call %s is not supported by the vk-titus reference master", call.Type))
		return
	}
	if !m.IsLeader() {
		m.redirect(w, r, operatorapi.WriteError)
		return
	}
	var resp *master.Response
	switch call.Type {
	case master.Call_RESERVE_RESOURCES, master.Call_UNRESERVE_RESOURCES:
		if err := m.serveReservation(r, &call); err != nil {
			log.WithError(err).Info("reservation call refused")
			operatorapi.WriteErr(w, err)
			return
		}
		operatorapi.WriteNoData(w, http.StatusAccepted)
		return
	case master.Call_GET_MASTER:
		resp = m.getMaster()
	case master.Call_GET_AGENTS:
		resp = m.getAgents()
	case master.Call_GET_TASKS:
		resp = m.getTasks()
	}
	operatorapi.WriteResponse(w, codec, resp)
}

func (m *Master) mesosInfo() *mesos.MasterInfo {
	i := m.info
	hostname, version, pid, port := i.Hostname, i.Version, i.PID, i.Port
	return &mesos.MasterInfo{
		ID: i.ID, IP: i.IP, Port: &port, PID: &pid, Hostname: &hostname, Version: &version,
		Address: &mesos.Address{Hostname: &hostname, IP: &i.Address.IP, Port: i.Address.Port},
	}
}

func secs(t time.Time) *float64 {
	f := float64(t.UnixNano()) / 1e9
	return &f
}

func (m *Master) getMaster() *master.Response {
	m.mu.Lock()
	elected := m.electedAt
	m.mu.Unlock()
	return &master.Response{
		Type: master.Response_GET_MASTER,
		GetMaster: &master.Response_GetMaster{
			MasterInfo: m.mesosInfo(), StartTime: secs(m.started), ElectedTime: secs(elected),
		},
	}
}

// getAgents lists registered agents. Removed agents (missed heartbeats)
// are gone from the list, as in Mesos; recovered_agents stays empty because
// this master keeps no registry across failovers (a new leader learns its
// agents from their re-registrations).
func (m *Master) getAgents() *master.Response {
	views := m.Agents()
	out := make([]master.Response_GetAgents_Agent, 0, len(views))
	for _, v := range views {
		pid := v.PID
		reg := &mesos.TimeInfo{Nanoseconds: v.Registered.UnixNano()}
		var rereg *mesos.TimeInfo
		if !v.Reregistered.IsZero() {
			rereg = &mesos.TimeInfo{Nanoseconds: v.Reregistered.UnixNano()}
		}
		out = append(out, master.Response_GetAgents_Agent{
			AgentInfo:          v.Info,
			Active:             true,
			Version:            Version,
			PID:                &pid,
			RegisteredTime:     reg,
			ReregisteredTime:   rereg,
			TotalResources:     v.TotalMesos,
			AllocatedResources: v.Allocated.Mesos(),
		})
	}
	return &master.Response{
		Type:      master.Response_GET_AGENTS,
		GetAgents: &master.Response_GetAgents{Agents: out, RecoveredAgents: []mesos.AgentInfo{}},
	}
}

// getTasks lists live tasks under tasks and ended ones under
// completed_tasks, as Mesos does.
func (m *Master) getTasks() *master.Response {
	gt := &master.Response_GetTasks{}
	for _, t := range m.Tasks() {
		state := t.State
		statuses := make([]mesos.TaskStatus, 0, 1)
		msg := t.Message
		ts := float64(t.Updated.UnixNano()) / 1e9
		agentID := mesos.AgentID{Value: t.AgentID}
		statuses = append(statuses, mesos.TaskStatus{
			TaskID: mesos.TaskID{Value: string(t.ID)}, State: &state, Message: &msg,
			Timestamp: &ts, AgentID: &agentID,
		})
		mt := mesos.Task{
			Name:        t.Name,
			TaskID:      mesos.TaskID{Value: string(t.ID)},
			FrameworkID: mesos.FrameworkID{Value: FrameworkID},
			AgentID:     agentID,
			State:       &state,
			Resources:   t.Resources.Mesos(),
			Statuses:    statuses,
		}
		if isTerminal(state) {
			gt.CompletedTasks = append(gt.CompletedTasks, mt)
		} else {
			gt.Tasks = append(gt.Tasks, mt)
		}
	}
	return &master.Response{Type: master.Response_GET_TASKS, GetTasks: gt}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeJSONError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, protocol.ErrorBody{Error: err.Error()})
}

func readJSON(w http.ResponseWriter, r *http.Request, into any) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, errors.New("expecting POST"))
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, operatorapi.MaxRequestBody))
	if err == nil {
		err = json.Unmarshal(body, into)
	}
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func (m *Master) serveRegister(w http.ResponseWriter, r *http.Request) {
	if !m.IsLeader() {
		m.redirect(w, r, operatorapi.WriteError)
		return
	}
	var req protocol.RegisterRequest
	if !readJSON(w, r, &req) {
		return
	}
	resp, err := m.register(&req)
	if err != nil {
		writeJSONError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidTask), errors.Is(err, errBadRegistration):
		return http.StatusBadRequest
	case errors.Is(err, ErrNoCapacity):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownTask):
		return http.StatusNotFound
	case errors.Is(err, errAgentRemoved):
		return http.StatusGone
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoAgents):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway // the agent failed the launch or kill
}

func (m *Master) serveTasks(w http.ResponseWriter, r *http.Request) {
	if !m.IsLeader() {
		m.redirect(w, r, operatorapi.WriteError)
		return
	}
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, protocol.TasksPath), "/")
	switch {
	case id == "" && r.Method == http.MethodGet:
		tasks := m.Tasks()
		out := make([]protocol.TaskView, 0, len(tasks))
		for _, t := range tasks {
			out = append(out, view(t))
		}
		writeJSON(w, http.StatusOK, out)
	case id == "":
		var req protocol.TaskRequest
		if !readJSON(w, r, &req) {
			return
		}
		tid, err := m.LaunchTask(r.Context(), TaskSpec{
			Name: req.Name, Command: req.Command, Resources: Resources(req.Resources), Constraints: req.Constraints,
		})
		if err != nil {
			m.log.WithError(err).WithFields(logrus.Fields{"name": req.Name}).Info("legacy task refused")
			writeJSONError(w, statusOf(err), err)
			return
		}
		t, _ := m.Task(tid)
		writeJSON(w, http.StatusCreated, protocol.TaskCreated{ID: string(tid), AgentID: t.AgentID})
	case r.Method == http.MethodGet:
		t, ok := m.Task(TaskID(id))
		if !ok {
			writeJSONError(w, http.StatusNotFound, fmt.Errorf("%w: %s", ErrUnknownTask, id))
			return
		}
		writeJSON(w, http.StatusOK, view(t))
	case r.Method == http.MethodDelete:
		if err := m.KillTask(r.Context(), TaskID(id)); err != nil {
			writeJSONError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeJSONError(w, http.StatusMethodNotAllowed, errors.New("expecting GET, POST or DELETE"))
	}
}

func view(t Task) protocol.TaskView {
	return protocol.TaskView{
		ID: string(t.ID), Name: t.Name, AgentID: t.AgentID, Command: t.Command,
		Resources: t.Resources, State: t.State.String(), Message: t.Message, ExitCode: t.ExitCode,
		Adopted: t.Adopted, Updated: t.Updated, StateChange: t.History,
	}
}
