package legacyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vk-titus/vk-titus/api/titus"
)

// MaxBodyBytes bounds a request body: a descriptor is a few KiB; a body
// past this is refused before it is read.
const MaxBodyBytes = 1 << 20

// ErrorBody is every error reply, as Titus's REST gateway shapes it.
type ErrorBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// HandlerOption configures NewHandler.
type HandlerOption func(*server)

// WithLimits holds descriptors to l (BackendLimits by default).
func WithLimits(l Limits) HandlerOption { return func(s *server) { s.limits = l } }

// BackendLimits are what a server behind the gateway (the legacy master)
// holds descriptors to unless told otherwise: Titus's maxima, and no
// minimums, as the gateway raised what it took to its own already.
func BackendLimits() Limits {
	l := TitusLimits()
	l.MinCPU, l.MinMemoryMB, l.MinDiskMB, l.MinNetworkMbps, l.DefaultRuntimeLimitSec = 0, 0, 0, 0, 0
	return l
}

// NewHandler serves Titus's v3 job REST API (/api/v3/jobs, /api/v3/tasks)
// over b: bodies are read as proto3 JSON, strictly (a field the
// definitions do not have is named in a 400), and answers written as
// proto3 JSON with default values included. If b is an Observer, GET
// /api/v3/events serves its change feed (serveFeed).
func NewHandler(b Backend, log logrus.FieldLogger, opts ...HandlerOption) http.Handler {
	s := &server{b: b, log: log, limits: BackendLimits()}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v3/jobs", s.createJob)
	mux.HandleFunc("GET /api/v3/jobs", s.findJobs)
	mux.HandleFunc("GET /api/v3/jobs/{id}", s.getJob)
	mux.HandleFunc("DELETE /api/v3/jobs/{id}", s.killJob)
	mux.HandleFunc("PUT /api/v3/jobs/{id}/instances", s.updateCapacity)
	mux.HandleFunc("PUT /api/v3/jobs/{id}/capacityAttributes", s.updateCapacityAttributes)
	mux.HandleFunc("PUT /api/v3/jobs/{id}/jobprocesses", s.updateProcesses)
	mux.HandleFunc("PUT /api/v3/jobs/{id}/disruptionBudget", s.updateDisruptionBudget)
	mux.HandleFunc("POST /api/v3/jobs/{id}/enable", s.enable(true))
	mux.HandleFunc("POST /api/v3/jobs/{id}/disable", s.enable(false))
	mux.HandleFunc("PUT /api/v3/jobs/{id}/attributes", s.updateJobAttributes)
	mux.HandleFunc("DELETE /api/v3/jobs/{id}/attributes", s.deleteJobAttributes)
	mux.HandleFunc("GET /api/v3/tasks", s.findTasks)
	mux.HandleFunc("GET /api/v3/tasks/{id}", s.getTask)
	mux.HandleFunc("DELETE /api/v3/tasks/{id}", s.killTask)
	mux.HandleFunc("PUT /api/v3/tasks/{id}/attributes", s.updateTaskAttributes)
	mux.HandleFunc("DELETE /api/v3/tasks/{id}/attributes", s.deleteTaskAttributes)
	mux.HandleFunc("POST /api/v3/tasks/move", s.moveTask)
	if o, ok := b.(Observer); ok {
		mux.Handle("GET "+FeedPath, serveFeed(o, log))
	}
	mux.HandleFunc("/api/v3/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type server struct {
	b      Backend
	log    logrus.FieldLogger
	limits Limits
}

func (s *server) createJob(w http.ResponseWriter, r *http.Request) {
	var p titus.JobDescriptor
	if !readBody(w, r, &p, checkJobSpec) {
		return
	}
	id, err := CreateJob(r.Context(), s.b, s.limits, &p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithFields(logrus.Fields{"job": id, "application": p.GetApplicationName()}).Info("job accepted")
	WriteProto(w, http.StatusAccepted, &titus.JobId{Id: id}, false)
}

// CreateJob is job creation as both wire forms do it: read, sanitize,
// validate, create.
func CreateJob(ctx context.Context, b Backend, l Limits, p *titus.JobDescriptor) (string, error) {
	d, err := DescriptorFromProto(p)
	if err != nil {
		return "", err
	}
	l.Sanitize(&d)
	if err := l.Validate(d); err != nil {
		return "", err
	}
	return b.CreateJob(ctx, d)
}

func (s *server) findJobs(w http.ResponseWriter, r *http.Request) {
	q, err := JobQueryFromURL(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.b.FindJobs(r.Context(), q)
	var out *titus.JobQueryResult
	if err == nil {
		out, err = JobsToProto(res, q.Fields)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteProto(w, http.StatusOK, out, len(q.Fields) > 0)
}

func (s *server) findTasks(w http.ResponseWriter, r *http.Request) {
	q, err := TaskQueryFromURL(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.b.FindTasks(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteProto(w, http.StatusOK, TasksToProto(res, q.Fields), len(q.Fields) > 0)
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.b.GetJob(r.Context(), r.PathValue("id"))
	var p *titus.Job
	if err == nil {
		p, err = JobToProto(j)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteProto(w, http.StatusOK, p, false)
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.b.GetTask(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteProto(w, http.StatusOK, TaskToProto(t), false)
}

func (s *server) killJob(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "job kill requested", func(ctx context.Context, id string) error { return s.b.KillJob(ctx, id) })
}

func (s *server) killTask(w http.ResponseWriter, r *http.Request) {
	var k TaskKill
	for name, into := range map[string]*bool{"shrink": &k.Shrink, "preventMinSizeUpdate": &k.PreventMinSizeUpdate} {
		if v := r.URL.Query().Get(name); v != "" {
			var err error
			if *into, err = strconv.ParseBool(v); err != nil {
				s.fail(w, r, fieldErr(name, "%q is not true or false", v))
				return
			}
		}
	}
	s.act(w, r, "task kill requested", func(ctx context.Context, id string) error { return s.b.KillTask(ctx, id, k) })
}

func (s *server) enable(on bool) http.HandlerFunc {
	what := map[bool]string{true: "job enabled", false: "job disabled"}[on]
	return func(w http.ResponseWriter, r *http.Request) {
		s.updateJob(w, r, what, JobUpdate{Enabled: &on})
	}
}

func (s *server) updateCapacity(w http.ResponseWriter, r *http.Request) {
	var p titus.Capacity
	if readBody(w, r, &p) {
		s.updateJob(w, r, "job resized", JobUpdate{Capacity: FullCapacity(CapacityFromProto(&p))})
	}
}

func (s *server) updateCapacityAttributes(w http.ResponseWriter, r *http.Request) {
	var p titus.JobCapacityWithOptionalAttributes
	if readBody(w, r, &p) {
		s.updateJob(w, r, "job resized", JobUpdate{Capacity: CapacityUpdateFromProto(&p)})
	}
}

func (s *server) updateProcesses(w http.ResponseWriter, r *http.Request) {
	var p titus.ServiceJobSpec_ServiceJobProcesses
	if readBody(w, r, &p) {
		s.updateJob(w, r, "job processes changed", JobUpdate{Processes: ProcessesFromProto(&p)})
	}
}

func (s *server) updateDisruptionBudget(w http.ResponseWriter, r *http.Request) {
	var p titus.JobDisruptionBudget
	if !readBody(w, r, &p) {
		return
	}
	u, err := BudgetUpdate(&p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.updateJob(w, r, "job disruption budget changed", u)
}

// BudgetUpdate is the update that sets a job's disruption budget.
func BudgetUpdate(p *titus.JobDisruptionBudget) (JobUpdate, error) {
	raw, err := rawOf("disruptionBudget", p)
	if err != nil {
		return JobUpdate{}, err
	}
	if emptyRaw(raw) {
		raw = json.RawMessage("{}") // an empty budget is still a budget
	}
	return JobUpdate{DisruptionBudget: raw}, nil
}

func (s *server) updateJobAttributes(w http.ResponseWriter, r *http.Request) {
	var p titus.JobAttributesUpdate
	if !readBody(w, r, &p) {
		return
	}
	if p.GetJobId() != "" && p.GetJobId() != r.PathValue("id") {
		s.fail(w, r, fieldErr("jobId", "%q differs from the job of the path, %q", p.GetJobId(), r.PathValue("id")))
		return
	}
	s.updateJob(w, r, "job attributes set", JobUpdate{Attributes: nonNil(p.GetAttributes())})
}

func (s *server) deleteJobAttributes(w http.ResponseWriter, r *http.Request) {
	s.updateJob(w, r, "job attributes deleted", JobUpdate{DeleteAttributes: keysParam(r)})
}

// keysParam reads ?keys=a,b; never nil, so that no keys is refused.
func keysParam(r *http.Request) []string {
	return append([]string{}, splitComma(r.URL.Query().Get("keys"))...)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *server) updateJob(w http.ResponseWriter, r *http.Request, what string, u JobUpdate) {
	if err := u.Check(s.limits); err != nil {
		s.fail(w, r, err)
		return
	}
	s.act(w, r, what, func(ctx context.Context, id string) error { return s.b.UpdateJob(ctx, id, u) })
}

func (s *server) updateTaskAttributes(w http.ResponseWriter, r *http.Request) {
	var p titus.TaskAttributesUpdate
	if !readBody(w, r, &p) {
		return
	}
	if p.GetTaskId() != "" && p.GetTaskId() != r.PathValue("id") {
		s.fail(w, r, fieldErr("taskId", "%q differs from the task of the path, %q", p.GetTaskId(), r.PathValue("id")))
		return
	}
	s.updateTask(w, r, "task attributes set", TaskUpdate{Attributes: nonNil(p.GetAttributes())})
}

func (s *server) deleteTaskAttributes(w http.ResponseWriter, r *http.Request) {
	s.updateTask(w, r, "task attributes deleted", TaskUpdate{DeleteAttributes: keysParam(r)})
}

func (s *server) updateTask(w http.ResponseWriter, r *http.Request, what string, u TaskUpdate) {
	if err := u.Check(); err != nil {
		s.fail(w, r, err)
		return
	}
	s.act(w, r, what, func(ctx context.Context, id string) error { return s.b.UpdateTask(ctx, id, u) })
}

func (s *server) moveTask(w http.ResponseWriter, r *http.Request) {
	var p titus.TaskMoveRequest
	if !readBody(w, r, &p) {
		return
	}
	m := TaskMove{SourceJobID: p.GetSourceJobId(), TargetJobID: p.GetTargetJobId(), TaskID: p.GetTaskId()}
	if err := m.Check(); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.b.MoveTask(r.Context(), m); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithFields(logrus.Fields{"task": m.TaskID, "from": m.SourceJobID, "to": m.TargetJobID}).Info("task moved")
	w.WriteHeader(http.StatusOK)
}

// Check refuses a move that names nothing or the same job twice.
func (m TaskMove) Check() error {
	switch {
	case m.TaskID == "":
		return fieldErr("taskId", "required")
	case m.SourceJobID == "":
		return fieldErr("sourceJobId", "required")
	case m.TargetJobID == "":
		return fieldErr("targetJobId", "required")
	case m.SourceJobID == m.TargetJobID:
		return fieldErr("targetJobId", "the same job as sourceJobId")
	}
	return nil
}

// act answers 200 with no body, as Titus's update calls do.
func (s *server) act(w http.ResponseWriter, r *http.Request, what string, do func(context.Context, string) error) {
	id := r.PathValue("id")
	if err := do(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithField("id", id).Info(what)
	w.WriteHeader(http.StatusOK)
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusOf(err)
	if code >= 500 {
		s.log.WithError(err).WithField("call", r.Method+" "+r.URL.Path).Warn("job API call failed")
	}
	WriteError(w, code, err)
}

// StatusOf maps a Backend error to its HTTP status, as Titus's REST
// gateway maps the gRPC code it stands for.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrTerminating):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnimplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}

// strictJSON refuses fields the definitions do not have.
var strictJSON = protojson.UnmarshalOptions{}

// checkJobSpec names the job spec that is one too many before protojson
// does: it would blame the oneof, not the field.
func checkJobSpec(data []byte) error {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) == nil && top["batch"] != nil && top["service"] != nil {
		return fieldErr("batch", "a job is batch or service, not both")
	}
	return nil
}

// readBody decodes a proto3 JSON body strictly, so a field this API does
// not know is named instead of silently dropped; checks run on the raw
// body first.
func readBody(w http.ResponseWriter, r *http.Request, into proto.Message, checks ...func([]byte) error) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", MaxBodyBytes))
		return false
	case err != nil:
		WriteError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	case len(data) == 0:
		WriteError(w, http.StatusBadRequest, errors.New("request body: empty, a JSON object was expected"))
		return false
	}
	for _, check := range checks {
		if err := check(data); err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return false
		}
	}
	if err := strictJSON.Unmarshal(data, into); err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// WriteProto writes m as proto3 JSON with status code: with its default
// values, as Titus answers, unless projected, where only what was asked
// for is written.
func WriteProto(w http.ResponseWriter, code int, m proto.Message, projected bool) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: !projected}.Marshal(m)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(compact(b))
}

// WriteJSON writes v with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes the Titus error body.
func WriteError(w http.ResponseWriter, code int, err error) {
	WriteJSON(w, code, ErrorBody{StatusCode: code, Message: err.Error()})
}
