package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// LAUNCH_CONTAINER status codes as Mesos 1.11's src/slave/http.cpp answers
// them: 200 for SUCCESS, 202 for ALREADY_LAUNCHED. (The project's reference
// notes had them the other way round; a real agent is what the bridge must
// be drivable against.) mesos-go returns nil for both, so the bridge reads
// the status itself.
const (
	launchNewStatus    = http.StatusOK
	launchExistsStatus = http.StatusAccepted
)

const maxRequestBody = 16 << 20

// readFileCap mirrors Mesos' files endpoint, which never returns more than
// 16 pages per READ_FILE; callers page with offset.
var readFileCap = uint64(os.Getpagesize() * 16)

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// writeNoData answers a call whose response class is "no data": mesos-go
// rejects a 200 that carries any Content-Type, so none is set and nothing is
// written (net/http only sniffs a Content-Type when a body is written).
func writeNoData(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
}

func writeResponse(w http.ResponseWriter, codec encoding.Codec, resp *agent.Response) error {
	var buf bytes.Buffer
	if err := codec.NewEncoder(encoding.SinkWriter(&buf)).Encode(resp); err != nil {
		writeError(w, http.StatusServiceUnavailable, "failed to encode response: "+err.Error())
		return err
	}
	// mesos-go compares Content-Type for equality with its codec's type, so
	// no parameters may be added.
	w.Header().Set("Content-Type", codec.Type.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	return err
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.code, ae.msg)
		return
	}
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

// negotiate picks the request and response codecs as a Mesos agent does,
// except that a missing Accept means "same as the request".
func negotiate(r *http.Request) (req, resp encoding.Codec, err error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return req, resp, &apiError{http.StatusBadRequest, "Expecting 'Content-Type' to be present"}
	}
	mt, _, perr := mime.ParseMediaType(ct)
	c, ok := codecs.ByMediaType[encoding.MediaType(mt)]
	if perr != nil || !ok {
		return req, resp, &apiError{http.StatusUnsupportedMediaType, fmt.Sprintf(
			"Expecting 'Content-Type' of %s or %s (or application/recordio for ATTACH_CONTAINER_INPUT)",
			codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)}
	}
	req = c
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return req, req, nil
	}
	for _, want := range []encoding.Codec{req, codecs.ByMediaType[codecs.MediaTypeProtobuf], codecs.ByMediaType[codecs.MediaTypeJSON]} {
		if accepts(accept, string(want.Type)) {
			return req, want, nil
		}
	}
	return req, resp, &apiError{http.StatusNotAcceptable, fmt.Sprintf(
		"Expecting 'Accept' to allow %s or %s", codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)}
}

func accepts(headers []string, mediaType string) bool {
	typ, _, _ := strings.Cut(mediaType, "/")
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			if mt == mediaType || mt == "*/*" || mt == typ+"/*" {
				return true
			}
		}
	}
	return false
}

func (a *Agent) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/v1", "/api/v1/":
	case "/health":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "Expecting 'GET'")
			return
		}
		writeNoData(w, http.StatusOK)
		return
	default:
		writeError(w, http.StatusNotFound, "no such endpoint; the operator API is POST /api/v1")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("Expecting 'POST', received '%s'", r.Method))
		return
	}
	if isRecordIO(r) {
		// ATTACH_CONTAINER_INPUT, the only streaming request, writes:
		// decided before a byte of its stream is read.
		if !a.auth.Permits(r, mesosauth.ReadWrite) {
			noReuse(w)
			_ = http.NewResponseController(w).SetReadDeadline(time.Now()) // answer without draining the stream
			a.refuse(w, r, agent.Call_ATTACH_CONTAINER_INPUT)
			return
		}
		a.serveStreamingRequest(w, r) // ATTACH_CONTAINER_INPUT (session.go)
		return
	}
	reqCodec, respCodec, notAcceptable, err := negotiateCall(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Failed to read request body: "+err.Error())
		return
	}
	var call agent.Call
	if len(body) == 0 {
		writeError(w, http.StatusBadRequest, "Failed to parse body into Call: empty body")
		return
	}
	if err := reqCodec.NewDecoder(encoding.SourceReader(bytes.NewReader(body))).Decode(&call); err != nil {
		writeError(w, http.StatusBadRequest, "Failed to parse body into Call: "+err.Error())
		return
	}
	if !a.auth.Permits(r, callRealm(call.Type)) {
		a.refuse(w, r, call.Type)
		return
	}
	log := a.log.WithField("call", call.Type.String())
	log.Debug("processing call")
	if a.serveSessionCall(w, r, &call, respCodec, notAcceptable, log) {
		return // the streaming and nested-container calls (session.go)
	}

	switch call.Type {
	case agent.Call_GET_HEALTH:
		writeResponse(w, respCodec, &agent.Response{
			Type:      agent.Response_GET_HEALTH,
			GetHealth: &agent.Response_GetHealth{Healthy: true},
		})
	case agent.Call_GET_VERSION:
		buildUser := "vk-titus"
		buildTime := float64(a.started.Unix())
		writeResponse(w, respCodec, &agent.Response{
			Type: agent.Response_GET_VERSION,
			GetVersion: &agent.Response_GetVersion{VersionInfo: mesos.VersionInfo{
				Version: Version, BuildUser: &buildUser, BuildTime: &buildTime,
			}},
		})
	case agent.Call_GET_AGENT:
		info := a.info
		writeResponse(w, respCodec, &agent.Response{
			Type:     agent.Response_GET_AGENT,
			GetAgent: &agent.Response_GetAgent{AgentInfo: &info},
		})
	case agent.Call_GET_METRICS:
		writeResponse(w, respCodec, &agent.Response{
			Type:       agent.Response_GET_METRICS,
			GetMetrics: &agent.Response_GetMetrics{Metrics: a.metrics()},
		})
	case agent.Call_GET_CONTAINERS:
		writeResponse(w, respCodec, &agent.Response{
			Type:          agent.Response_GET_CONTAINERS,
			GetContainers: &agent.Response_GetContainers{Containers: a.listContainers(call.GetContainers.GetShowStandalone())},
		})
	case agent.Call_READ_FILE:
		resp, err := a.readFile(call.ReadFile)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeResponse(w, respCodec, &agent.Response{Type: agent.Response_READ_FILE, ReadFile: resp})
	case agent.Call_LAUNCH_CONTAINER:
		lc := call.LaunchContainer
		if lc == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'launch_container' to be present")
			return
		}
		if err := validateContainerID(lc.ContainerID); err != nil {
			writeErr(w, err)
			return
		}
		code, err := a.launch(lc, log)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeNoData(w, code)
	case agent.Call_WAIT_CONTAINER:
		if call.WaitContainer == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'wait_container' to be present")
			return
		}
		a.wait(w, r, respCodec, call.WaitContainer.ContainerID)
	case agent.Call_KILL_CONTAINER:
		kc := call.KillContainer
		if kc == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'kill_container' to be present")
			return
		}
		sig := syscall.SIGKILL
		if kc.Signal != nil {
			sig = syscall.Signal(*kc.Signal)
		}
		if err := a.kill(kc.ContainerID, sig); err != nil {
			writeErr(w, err)
			return
		}
		writeNoData(w, http.StatusOK)
	case agent.Call_REMOVE_CONTAINER:
		if call.RemoveContainer == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'remove_container' to be present")
			return
		}
		if err := a.remove(call.RemoveContainer.ContainerID); err != nil {
			writeErr(w, err)
			return
		}
		writeNoData(w, http.StatusOK)
	case agent.Call_UNKNOWN:
		writeError(w, http.StatusBadRequest, "Expecting 'type' to be present")
	default:
		writeError(w, http.StatusNotImplemented, fmt.Sprintf("call %s is not supported by the vk-titus reference agent", call.Type))
	}
}

// callRealm is the authentication realm of an operator call (doc.go):
// GET_HEALTH is open (liveness probes poll it); the calls that only read
// (GET_*, READ_FILE, LIST_FILES, WAIT_*, ATTACH_CONTAINER_OUTPUT) are
// ReadOnly; everything else, the calls that start, signal or remove
// containers and any call type not listed here, is ReadWrite, so a call
// nobody classified is protected.
func callRealm(t agent.Call_Type) mesosauth.Realm {
	switch t {
	case agent.Call_GET_HEALTH:
		return mesosauth.Open
	case agent.Call_GET_FLAGS, agent.Call_GET_VERSION, agent.Call_GET_METRICS, agent.Call_GET_LOGGING_LEVEL,
		agent.Call_GET_STATE, agent.Call_GET_CONTAINERS, agent.Call_GET_FRAMEWORKS, agent.Call_GET_EXECUTORS,
		agent.Call_GET_OPERATIONS, agent.Call_GET_TASKS, agent.Call_GET_AGENT, agent.Call_GET_RESOURCE_PROVIDERS,
		agent.Call_LIST_FILES, agent.Call_READ_FILE, agent.Call_WAIT_CONTAINER, agent.Call_WAIT_NESTED_CONTAINER,
		agent.Call_ATTACH_CONTAINER_OUTPUT:
		return mesosauth.ReadOnly
	}
	return mesosauth.ReadWrite
}

// refuse answers 401 to an unauthenticated call. The log names the call
// and the caller, never what credentials it sent.
func (a *Agent) refuse(w http.ResponseWriter, r *http.Request, call agent.Call_Type) {
	a.log.WithFields(logrus.Fields{"call": call.String(), "remote": r.RemoteAddr}).Debug("unauthenticated call refused")
	mesosauth.Refuse(w)
}

func notFound(id mesos.ContainerID) error {
	return &apiError{http.StatusNotFound, fmt.Sprintf("Container %s cannot be found", id.Value)}
}

func (a *Agent) lookup(id mesos.ContainerID) *container {
	if id.Parent != nil {
		return nil // nested containers never exist here
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.containers[id.Value]
}

func (a *Agent) wait(w http.ResponseWriter, r *http.Request, codec encoding.Codec, id mesos.ContainerID) {
	c := a.lookup(id)
	if c == nil {
		writeErr(w, notFound(id))
		return
	}
	select {
	case <-c.done:
	case <-r.Context().Done():
		// The client gave up; nobody reads an answer.
		return
	case <-a.stop:
		// A supervised container outlives this agent process: answer
		// rather than hold the server's shutdown.
		select {
		case <-c.done:
		default:
			writeErr(w, unavailable("agent is shutting down"))
			return
		}
	}
	t := c.term
	wc := &agent.Response_WaitContainer{ExitStatus: t.status, Reason: t.reason}
	state := t.state
	wc.State = &state
	if t.message != "" {
		msg := t.message
		wc.Message = &msg
	}
	writeResponse(w, codec, &agent.Response{Type: agent.Response_WAIT_CONTAINER, WaitContainer: wc})
}

func (a *Agent) kill(id mesos.ContainerID, sig syscall.Signal) error {
	if sig < 0 || sig > 64 {
		return badRequest("invalid signal %d", int(sig))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.containers[id.Value]
	if c == nil || id.Parent != nil {
		return notFound(id)
	}
	log := a.log.WithFields(logrus.Fields{"container": c.id, "signal": int(sig), "call": "KILL_CONTAINER"})
	if a.sup != nil && c.state == stateRunning {
		// The supervisor signals under its own lock against its reaper;
		// no need to hold ours across the call.
		a.mu.Unlock()
		err := a.signalSupervised(c.id, sig)
		a.mu.Lock()
		if err == nil {
			log.WithField("pid", c.pid).Info("signalled container process group")
		}
		return err
	}
	switch c.state {
	case stateLaunching:
		if sig != 0 {
			c.pendingSignal = sig
		}
		log.Info("KILL during launch; delivering once the process exists")
	case stateRunning:
		if err := killGroup(c.pid, sig); err != nil && err != syscall.ESRCH {
			return unavailable("failed to signal container %s: %v", c.id, err)
		}
		if sig != 0 {
			c.killSignal = sig
		}
		log.WithField("pid", c.pid).Info("signalled container process group")
	default:
		// Already ended: nothing to signal. (Mesos would answer 404 here,
		// as it forgets a standalone container once it ends.)
		log.Debug("KILL for a terminated container is a no-op")
	}
	return nil
}

func (a *Agent) remove(id mesos.ContainerID) error {
	a.mu.Lock()
	c := a.containers[id.Value]
	if c == nil || id.Parent != nil {
		a.mu.Unlock()
		return notFound(id)
	}
	if c.state != stateTerminated {
		a.mu.Unlock()
		// Mesos fails this with a 500 ("has not terminated yet"); 400 maps
		// to mesos-go's "malformed request", which is closer to the truth.
		return badRequest("container %s has not terminated yet (KILL_CONTAINER and WAIT_CONTAINER first)", id.Value)
	}
	if a.sup != nil {
		// Drop the checkpoint first: once the id is free here a new LAUNCH
		// of it must find the supervisor free of it too.
		a.mu.Unlock()
		if err := a.forgetSupervised(c.id); err != nil {
			return err
		}
		a.mu.Lock()
		if a.containers[c.id] != c {
			a.mu.Unlock()
			return notFound(id) // a concurrent REMOVE won
		}
	}
	delete(a.containers, c.id)
	trash := a.trashSandboxLocked(c)
	a.mu.Unlock()
	if trash != "" {
		if err := os.RemoveAll(trash); err != nil {
			a.log.WithError(err).WithField("container", c.id).Warn("sandbox removal incomplete")
		}
	}
	a.log.WithFields(logrus.Fields{"container": c.id, "call": "REMOVE_CONTAINER"}).Info("container removed")
	return nil
}

func (a *Agent) listContainers(showStandalone bool) []agent.Response_GetContainers_Container {
	// Every container here is standalone; like Mesos they are only listed
	// when asked for.
	if !showStandalone {
		return []agent.Response_GetContainers_Container{}
	}
	type snap struct {
		id     string
		pid    int
		cpus   *float64
		mem    *uint64
		living *container
	}
	a.mu.Lock()
	snaps := make([]snap, 0, len(a.byPid))
	for _, c := range a.containers {
		if c.state == stateRunning {
			snaps = append(snaps, snap{c.id, c.pid, c.cpusLimit, c.memLimit, c})
		}
	}
	a.mu.Unlock()
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].id < snaps[j].id })

	out := make([]agent.Response_GetContainers_Container, 0, len(snaps))
	for _, s := range snaps {
		ps, ok := readProcStat(s.pid)
		// A pid is only trusted while it still leads its own group: after a
		// reap it may already belong to an unrelated process.
		if !ok || ps.pgrp != s.pid {
			continue
		}
		select {
		case <-s.living.done:
			continue
		default:
		}
		cid := mesos.ContainerID{Value: s.id}
		pid := uint32(s.pid)
		cidCopy := cid
		stats := &mesos.ResourceStatistics{
			Timestamp:          float64(time.Now().UnixNano()) / 1e9,
			CPUsUserTimeSecs:   &ps.utimeSecs,
			CPUsSystemTimeSecs: &ps.stimeSecs,
			MemRSSBytes:        &ps.rssBytes,
			Threads:            &ps.threads,
			CPUsLimit:          s.cpus,
			MemLimitBytes:      s.mem,
		}
		out = append(out, agent.Response_GetContainers_Container{
			ContainerID:        cid,
			ContainerStatus:    &mesos.ContainerStatus{ContainerID: &cidCopy, ExecutorPID: &pid},
			ResourceStatistics: stats,
		})
	}
	return out
}

func (a *Agent) readFile(rf *agent.Call_ReadFile) (*agent.Response_ReadFile, error) {
	if rf == nil {
		return nil, badRequest("Expecting 'read_file' to be present")
	}
	p, err := a.resolveReadPath(rf.Path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &apiError{http.StatusNotFound, fmt.Sprintf("file %q does not exist", rf.Path)}
		}
		return nil, unavailable("failed to open %q: %v", rf.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, unavailable("failed to stat %q: %v", rf.Path, err)
	}
	if st.IsDir() {
		return nil, badRequest("Cannot read a directory")
	}
	size := uint64(st.Size())
	// Data is a required proto field: it must be non-nil even when empty.
	resp := &agent.Response_ReadFile{Size_: size, Data: []byte{}}
	if rf.Offset >= size {
		return resp, nil
	}
	n := size - rf.Offset
	if rf.Length != nil && *rf.Length < n {
		n = *rf.Length
	}
	if n > readFileCap {
		n = readFileCap
	}
	if n == 0 {
		return resp, nil
	}
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, int64(rf.Offset))
	if err != nil && err != io.EOF {
		return nil, unavailable("failed to read %q: %v", rf.Path, err)
	}
	resp.Data = buf[:got]
	return resp, nil
}
