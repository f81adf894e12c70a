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
)

// MaxBodyBytes bounds a request body: a descriptor is a few KiB; a body
// past this is refused before it is read.
const MaxBodyBytes = 1 << 20

// ErrorBody is every error reply, as Titus's REST gateway shapes it.
type ErrorBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// NewHandler serves /api/v3/jobs and /api/v3/tasks over b.
func NewHandler(b Backend, log logrus.FieldLogger) http.Handler {
	s := &server{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v3/jobs", s.createJob)
	mux.HandleFunc("GET /api/v3/jobs", s.findJobs)
	mux.HandleFunc("GET /api/v3/jobs/{id}", s.getJob)
	mux.HandleFunc("DELETE /api/v3/jobs/{id}", s.killJob)
	mux.HandleFunc("PUT /api/v3/jobs/{id}/instances", s.updateCapacity)
	mux.HandleFunc("POST /api/v3/jobs/{id}/enable", s.enable(true))
	mux.HandleFunc("POST /api/v3/jobs/{id}/disable", s.enable(false))
	mux.HandleFunc("GET /api/v3/tasks", s.findTasks)
	mux.HandleFunc("GET /api/v3/tasks/{id}", s.getTask)
	mux.HandleFunc("DELETE /api/v3/tasks/{id}", s.killTask)
	mux.HandleFunc("/api/v3/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type server struct {
	b   Backend
	log logrus.FieldLogger
}

func (s *server) createJob(w http.ResponseWriter, r *http.Request) {
	var d JobDescriptor
	if !readBody(w, r, &d) {
		return
	}
	Normalize(&d)
	if err := Validate(d); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.b.CreateJob(r.Context(), d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithFields(logrus.Fields{"job": id, "application": d.ApplicationName}).Info("job accepted")
	WriteJSON(w, http.StatusAccepted, JobID{ID: id})
}

func (s *server) findJobs(w http.ResponseWriter, r *http.Request) {
	q, err := JobQueryFromURL(r.URL.Query())
	if err == nil {
		var res JobQueryResult
		if res, err = s.b.FindJobs(r.Context(), q); err == nil {
			WriteJSON(w, http.StatusOK, res)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *server) findTasks(w http.ResponseWriter, r *http.Request) {
	q, err := TaskQueryFromURL(r.URL.Query())
	if err == nil {
		var res TaskQueryResult
		if res, err = s.b.FindTasks(r.Context(), q); err == nil {
			WriteJSON(w, http.StatusOK, res)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, func(ctx context.Context, id string) (any, error) { return s.b.GetJob(ctx, id) })
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, func(ctx context.Context, id string) (any, error) { return s.b.GetTask(ctx, id) })
}

func (s *server) killJob(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "job kill requested", func(ctx context.Context, id string) error { return s.b.KillJob(ctx, id) })
}

func (s *server) killTask(w http.ResponseWriter, r *http.Request) {
	shrink := false
	if v := r.URL.Query().Get("shrink"); v != "" {
		var err error
		if shrink, err = strconv.ParseBool(v); err != nil {
			s.fail(w, r, fieldErr("shrink", "%q is not true or false", v))
			return
		}
	}
	s.act(w, r, "task kill requested", func(ctx context.Context, id string) error { return s.b.KillTask(ctx, id, shrink) })
}

func (s *server) enable(on bool) http.HandlerFunc {
	what := map[bool]string{true: "job enabled", false: "job disabled"}[on]
	return func(w http.ResponseWriter, r *http.Request) {
		s.act(w, r, what, func(ctx context.Context, id string) error { return s.b.SetEnabled(ctx, id, on) })
	}
}

func (s *server) updateCapacity(w http.ResponseWriter, r *http.Request) {
	var c Capacity
	if !readBody(w, r, &c) {
		return
	}
	if err := ValidateCapacity("capacity", c); err != nil {
		s.fail(w, r, err)
		return
	}
	s.act(w, r, "job resized", func(ctx context.Context, id string) error { return s.b.UpdateCapacity(ctx, id, c) })
}

func (s *server) reply(w http.ResponseWriter, r *http.Request, get func(context.Context, string) (any, error)) {
	v, err := get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// act answers 200 with an empty object, as the transcoded Titus calls do.
func (s *server) act(w http.ResponseWriter, r *http.Request, what string, do func(context.Context, string) error) {
	id := r.PathValue("id")
	if err := do(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WithField("id", id).Info(what)
	WriteJSON(w, http.StatusOK, struct{}{})
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusOf(err)
	if code >= 500 {
		s.log.WithError(err).WithField("call", r.Method+" "+r.URL.Path).Warn("job API call failed")
	}
	WriteError(w, code, err)
}

// StatusOf maps a Backend error to its HTTP status.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// readBody decodes a JSON body strictly: unknown fields are refused, so a
// field this API does not know is named instead of silently dropped.
func readBody(w http.ResponseWriter, r *http.Request, into any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(into)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", MaxBodyBytes))
		return false
	case errors.Is(err, io.EOF):
		WriteError(w, http.StatusBadRequest, errors.New("request body: empty, a JSON object was expected"))
		return false
	case err != nil:
		WriteError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
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
