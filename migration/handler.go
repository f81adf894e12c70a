package migration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// APIPrefix is where Handler serves; the gateway mounts the handler there
// as is (no prefix stripping).
const APIPrefix = "/api/v3/migration"

const (
	maxBody         = 64 << 10
	maxHistoryLimit = 1000
)

// Handler serves the stages as JSON for tools:
//
//	GET    /api/v3/migration/stages                  {"items":[Entry...],"default":"legacy"}
//	GET    /api/v3/migration/stages/{scope}/{name}   Entry, 404 when unset
//	PUT    /api/v3/migration/stages/{scope}/{name}   body {"stage":"kube","by":"alice"} → Change
//	DELETE /api/v3/migration/stages/{scope}/{name}?by=alice → Change, 404 when unset
//	GET    /api/v3/migration/history?scope=&name=&limit=  {"items":[Change...]}
//	GET    /api/v3/migration/resolve?applicationName=&capacityGroup=  {"stage","scope","name"}
//
// "by" is optional and recorded as declared only: behind an apiauth.Guard
// the change's author is the authenticated caller (see Store.Set). Reads
// come from the Store's copy; writes go to ZooKeeper (503 while it is
// unreachable). Errors are {"error": "..."} with 400 (invalid input), 404,
// 405, 409 (too many concurrent writers), 413 (body over 64 KiB), 500
// (ErrForbidden: the server lacks the znodes' owner credentials, a
// configuration error) or 503.
func Handler(s *Store) http.Handler {
	h := handler{s}
	mux := http.NewServeMux()
	route := func(path string, byMethod map[string]http.HandlerFunc) {
		var allow []string
		for m, f := range byMethod {
			mux.HandleFunc(m+" "+APIPrefix+path, f)
			allow = append(allow, m)
		}
		slices.Sort(allow)
		mux.HandleFunc(APIPrefix+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", r.Method, r.URL.Path))
		})
	}
	route("/stages", map[string]http.HandlerFunc{http.MethodGet: h.list})
	route("/stages/{scope}/{name}", map[string]http.HandlerFunc{
		http.MethodGet: h.get, http.MethodPut: h.put, http.MethodDelete: h.delete})
	route("/history", map[string]http.HandlerFunc{http.MethodGet: h.history})
	route("/resolve", map[string]http.HandlerFunc{http.MethodGet: h.resolve})
	mux.HandleFunc(APIPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s", r.URL.Path))
	})
	return mux
}

type handler struct{ s *Store }

func (h handler) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Items   []Entry `json:"items"`
		Default string  `json:"default"`
	}{h.s.List(), h.s.Default().String()})
}

func (h handler) get(w http.ResponseWriter, r *http.Request) {
	scope, name := Scope(r.PathValue("scope")), r.PathValue("name")
	if err := validKey(scope, name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	e, ok := h.s.Get(scope, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("%s/%s: no stage set: %w", scope, name, ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (h handler) put(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Stage string `json:"stage"`
		By    string `json:"by"`
	}
	if code, err := decodeBody(w, r, &body); err != nil {
		writeError(w, code, err)
		return
	}
	stage, err := ParseStage(body.Stage)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ch, err := h.s.Set(r.Context(), Scope(r.PathValue("scope")), r.PathValue("name"), stage, body.By)
	writeResult(w, ch, err)
}

func (h handler) delete(w http.ResponseWriter, r *http.Request) {
	ch, err := h.s.Unset(r.Context(), Scope(r.PathValue("scope")), r.PathValue("name"), r.URL.Query().Get("by"))
	writeResult(w, ch, err)
}

func (h handler) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxHistoryLimit {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: limit %q: want 0 to %d", ErrInvalid, v, maxHistoryLimit))
			return
		}
		limit = n
	}
	items, err := h.s.History(r.Context(), Scope(q.Get("scope")), q.Get("name"), limit)
	writeResult(w, struct {
		Items []Change `json:"items"`
	}{items}, err)
}

func (h handler) resolve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	writeJSON(w, http.StatusOK, h.s.Resolve(q.Get("applicationName"), q.Get("capacityGroup")))
}

// decodeBody reads one JSON object of at most maxBody bytes with no
// unknown fields: a misspelt field must not be silently dropped from a
// change to production routing.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return 0, nil
		} else if err == nil {
			err = errors.New("data after the JSON object")
		}
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", mbe.Limit)
	}
	return http.StatusBadRequest, fmt.Errorf("%w: request body: %w", ErrInvalid, err)
}

// writeResult writes v, or err with the status its kind calls for.
func writeResult(w http.ResponseWriter, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, err)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}
