package agent

// Nested container sessions and attaching: the Mesos v1 streaming calls
// (LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT,
// ATTACH_CONTAINER_OUTPUT) and the nested-container calls that go with them
// (WAIT_/KILL_/REMOVE_NESTED_CONTAINER, and WAIT_/KILL_/REMOVE_CONTAINER with
// a nested id). This is what `kubectl exec` and `kubectl attach` become.
//
// A session is a process started in its parent container's context: the
// parent's sandbox as working directory (the parent process's cwd when it is
// inside the sandbox), the environment the parent's process was started with
// (MESOS_SANDBOX included, read from /proc/<pid>/environ) overlaid with the
// session command's own, its own process group (its own session and
// controlling terminal with tty_info). Its stdout and stderr (one pty with
// tty_info) stream back as RecordIO ProcessIO records on the launching
// connection; its lifetime is that connection's: when the client goes away
// the session's process group is SIGKILLed, as Mesos destroys a session
// container whose connection breaks. It is also killed when the parent ends.
//
// Budget: a running session holds three descriptors (stdin, stdout, stderr
// pipe ends) or one (the pty master), two or three goroutines (a pump per
// output, a supervisor) and is reaped by the process's one reaper like any
// container. Once it has ended only its wait status is kept, for
// sessionRetention or until REMOVE_NESTED_CONTAINER.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"weak"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/sirupsen/logrus"
)

const (
	mediaTypeRecordIO = "application/recordio"

	// sessionRetention is how long an ended session's wait status stays
	// available to WAIT_NESTED_CONTAINER without a REMOVE.
	sessionRetention = time.Minute
	// sessionDrainGrace bounds reading a session's output after its process
	// ended: a descendant that left the process group may hold the pipe.
	sessionDrainGrace = time.Second
	// attachPollInterval is how often ATTACH_CONTAINER_OUTPUT of a
	// standalone container looks for new output in its sandbox files.
	attachPollInterval = 100 * time.Millisecond
	// ioChunk is the largest DATA record the agent sends.
	ioChunk = 32 << 10
)

type sessionTable struct {
	mu   sync.Mutex
	byID map[string]*session
}

// The table lives outside Agent (whose fields belong to agent.go) keyed by a
// weak pointer, and goes away with its agent.
var sessionTables sync.Map // weak.Pointer[Agent] -> *sessionTable

func (a *Agent) sessions() *sessionTable {
	key := weak.Make(a)
	if t, ok := sessionTables.Load(key); ok {
		return t.(*sessionTable)
	}
	t, loaded := sessionTables.LoadOrStore(key, &sessionTable{byID: map[string]*session{}})
	if !loaded {
		runtime.AddCleanup(a, func(k weak.Pointer[Agent]) { sessionTables.Delete(k) }, key)
	}
	return t.(*sessionTable)
}

type session struct {
	cid    mesos.ContainerID // Parent set
	parent *container
	tty    bool
	log    logrus.FieldLogger

	// proc is the session's process as the reaper knows it: it sits in
	// a.byPid (never in a.containers), so it is reaped, its group killed and
	// its termination recorded exactly as a container's. Guarded by a.mu.
	proc *container

	// I/O, fixed before the session is published; closed by the supervisor.
	master *os.File   // tty: the pty master (reads and writes)
	stdin  *os.File   // no tty: the write end of the stdin pipe
	outs   []*os.File // read ends: [master] or [stdout, stderr]

	mu        sync.Mutex
	subs      map[*outSub]struct{}
	inputBusy bool
	expiry    *time.Timer // guarded by the table's mu

	finished chan struct{} // process gone and output drained
}

func (t *sessionTable) add(s *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[s.cid.Value]; ok {
		return false
	}
	t.byID[s.cid.Value] = s
	return true
}

// lookup finds a session by its full id: the parent must match.
func (t *sessionTable) lookup(id mesos.ContainerID) *session {
	if id.Parent == nil || id.Parent.Parent != nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id.Value]
	if s == nil || s.cid.Parent.Value != id.Parent.Value {
		return nil
	}
	return s
}

// hasValue reports whether any session is named v (whatever its parent).
func (t *sessionTable) hasValue(v string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[v]
	return ok
}

func (t *sessionTable) drop(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[s.cid.Value] == s {
		delete(t.byID, s.cid.Value)
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
}

// retain keeps an ended session's status for sessionRetention: a timer, no
// goroutine.
func (t *sessionTable) retain(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[s.cid.Value] == s {
		s.expiry = time.AfterFunc(sessionRetention, func() { t.drop(s) })
	}
}

func (s *session) ended() bool {
	select {
	case <-s.finished:
		return true
	default:
		return false
	}
}

// ---- HTTP plumbing ----

// negotiateCall is negotiate, extended for the streaming calls: a client
// that accepts only application/recordio (naming the record codec in
// Message-Accept, as the Mesos CLI does) may still make the calls that
// answer with a stream; notAcceptable is then the answer to any other call.
func negotiateCall(r *http.Request) (req, resp encoding.Codec, notAcceptable, err error) {
	req, resp, err = negotiate(r)
	var ae *apiError
	if err != nil && errors.As(err, &ae) && ae.code == http.StatusNotAcceptable &&
		accepts(r.Header.Values("Accept"), mediaTypeRecordIO) {
		return req, req, err, nil
	}
	return req, resp, nil, err
}

func isRecordIO(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == mediaTypeRecordIO
}

func streamingResponse(t agent.Call_Type) bool {
	return t == agent.Call_LAUNCH_NESTED_CONTAINER_SESSION || t == agent.Call_ATTACH_CONTAINER_OUTPUT
}

// recordCodec picks the codec of the records of a streaming response:
// Message-Accept when given, else the negotiated response codec.
func recordCodec(r *http.Request, resp encoding.Codec) (encoding.Codec, error) {
	if accept := r.Header.Values("Accept"); len(accept) > 0 && !accepts(accept, mediaTypeRecordIO) {
		return resp, &apiError{http.StatusNotAcceptable, "Expecting 'Accept' to allow " + mediaTypeRecordIO + " for a streaming response"}
	}
	ma := r.Header.Values("Message-Accept")
	if len(ma) == 0 {
		return resp, nil
	}
	for _, want := range []encoding.Codec{resp, codecs.ByMediaType[codecs.MediaTypeProtobuf], codecs.ByMediaType[codecs.MediaTypeJSON]} {
		if want.Type != "" && accepts(ma, string(want.Type)) {
			return want, nil
		}
	}
	return resp, &apiError{http.StatusNotAcceptable, fmt.Sprintf(
		"Expecting 'Message-Accept' to allow %s or %s", codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)}
}

// outSub is one streaming response that receives a session's output.
type outSub struct {
	mu   sync.Mutex
	rc   *http.ResponseController
	enc  encoding.Encoder
	dead bool
	err  error         // the write that failed (set before gone is closed)
	gone chan struct{} // closed when a write failed: the client is gone
}

// startStream answers 200 with the RecordIO headers mesos-go checks
// (Content-Type and Message-Content-Type must equal its expectations, no
// parameters) and flushes them so the client's Send returns.
func startStream(w http.ResponseWriter, codec encoding.Codec) *outSub {
	h := w.Header()
	h.Set("Content-Type", mediaTypeRecordIO)
	h.Set("Message-Content-Type", codec.Type.ContentType())
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	o := &outSub{
		rc:   http.NewResponseController(w),
		enc:  codec.NewEncoder(func() framing.Writer { return recordio.NewWriter(w) }),
		gone: make(chan struct{}),
	}
	_ = o.rc.Flush()
	return o
}

func (o *outSub) send(m *agent.ProcessIO) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead {
		return
	}
	err := o.enc.Encode(m)
	if err == nil {
		err = o.rc.Flush()
	}
	if err != nil {
		o.dead = true
		o.err = err
		close(o.gone)
	}
}

// end stops all writes; once it returns the handler may return. abort first
// unblocks a write stuck on a client that does not read.
func (o *outSub) end(abort bool) {
	if abort {
		_ = o.rc.SetWriteDeadline(time.Now())
	}
	o.mu.Lock()
	o.dead = true
	o.mu.Unlock()
}

func dataRecord(typ agent.ProcessIO_Data_Type, b []byte) *agent.ProcessIO {
	return &agent.ProcessIO{Type: agent.ProcessIO_DATA, Data: &agent.ProcessIO_Data{Type: typ, Data: b}}
}

// serveSessionCall handles the calls of this file once serveHTTP has decoded
// a (non-streaming) request; it reports whether it answered.
func (a *Agent) serveSessionCall(w http.ResponseWriter, r *http.Request, call *agent.Call, respCodec encoding.Codec, notAcceptable error, log logrus.FieldLogger) bool {
	if notAcceptable != nil && !streamingResponse(call.Type) {
		writeErr(w, notAcceptable)
		return true
	}
	nested := func(id *mesos.ContainerID) bool { return id != nil && id.Parent != nil }
	switch call.Type {
	case agent.Call_LAUNCH_NESTED_CONTAINER_SESSION:
		if call.LaunchNestedContainerSession == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'launch_nested_container_session' to be present")
			return true
		}
		codec, err := recordCodec(r, respCodec)
		if err != nil {
			writeErr(w, err)
			return true
		}
		a.launchSession(w, r, codec, call.LaunchNestedContainerSession, log)
	case agent.Call_ATTACH_CONTAINER_OUTPUT:
		if call.AttachContainerOutput == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'attach_container_output' to be present")
			return true
		}
		codec, err := recordCodec(r, respCodec)
		if err != nil {
			writeErr(w, err)
			return true
		}
		a.attachOutput(w, r, codec, call.AttachContainerOutput.ContainerID, log)
	case agent.Call_ATTACH_CONTAINER_INPUT:
		writeError(w, http.StatusUnsupportedMediaType,
			"ATTACH_CONTAINER_INPUT must be a streaming request: 'Content-Type: "+mediaTypeRecordIO+"' and 'Message-Content-Type'")
	case agent.Call_WAIT_NESTED_CONTAINER:
		if call.WaitNestedContainer == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'wait_nested_container' to be present")
			return true
		}
		a.waitSession(w, r, respCodec, call.WaitNestedContainer.ContainerID, true)
	case agent.Call_KILL_NESTED_CONTAINER:
		kc := call.KillNestedContainer
		if kc == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'kill_nested_container' to be present")
			return true
		}
		a.killSessionCall(w, kc.ContainerID, kc.Signal)
	case agent.Call_REMOVE_NESTED_CONTAINER:
		if call.RemoveNestedContainer == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'remove_nested_container' to be present")
			return true
		}
		a.removeSession(w, call.RemoveNestedContainer.ContainerID)
	case agent.Call_WAIT_CONTAINER:
		if wc := call.WaitContainer; wc != nil && nested(&wc.ContainerID) {
			a.waitSession(w, r, respCodec, wc.ContainerID, false)
			return true
		}
		return false
	case agent.Call_KILL_CONTAINER:
		if kc := call.KillContainer; kc != nil && nested(&kc.ContainerID) {
			a.killSessionCall(w, kc.ContainerID, kc.Signal)
			return true
		}
		return false
	case agent.Call_REMOVE_CONTAINER:
		if rc := call.RemoveContainer; rc != nil && nested(&rc.ContainerID) {
			a.removeSession(w, rc.ContainerID)
			return true
		}
		return false
	default:
		return false
	}
	return true
}

// ---- LAUNCH_NESTED_CONTAINER_SESSION ----

func validateSessionID(id mesos.ContainerID) error {
	if id.Parent == nil {
		return badRequest("Expecting 'container_id.parent' to be present: a session runs nested in a running container")
	}
	if id.Parent.Parent != nil {
		return badRequest("container %q is nested more than one level deep; this agent only nests sessions in standalone containers", id.Value)
	}
	if err := validateContainerID(mesos.ContainerID{Value: id.Value}); err != nil {
		return err
	}
	if strings.Contains(id.Value, ".") {
		return badRequest("'container_id.value' %q of a nested container must not contain '.'", id.Value)
	}
	if id.Parent.Value == "" {
		return badRequest("'container_id.parent.value' must not be empty")
	}
	return nil
}

// sessionCommand turns a CommandInfo into program and argv as LAUNCH does
// (shell: `sh -c value`; else value with arguments as the whole argv).
func sessionCommand(cmd *mesos.CommandInfo) (string, []string, error) {
	if cmd == nil {
		return "", nil, badRequest("Expecting 'command' to be present")
	}
	value := cmd.GetValue()
	switch {
	case value != "" && cmd.GetShell():
		return "/bin/sh", []string{"sh", "-c", value}, nil
	case value != "":
		if len(cmd.Arguments) == 0 {
			return value, []string{value}, nil
		}
		return value, cmd.Arguments, nil
	case len(cmd.Arguments) > 0 && cmd.Arguments[0] != "":
		return cmd.Arguments[0], cmd.Arguments, nil
	}
	return "", nil, badRequest("no command to run: 'command.value' and 'command.arguments' are empty")
}

// sessionEnv is the parent's launch environment overlaid with the session
// command's variables.
func sessionEnv(parent *container, ppid int, cmdEnv *mesos.Environment, tty bool) ([]string, error) {
	base, ok := processEnv(ppid)
	if !ok {
		// The parent's process is gone (a zombie has no environ) or
		// unreadable: the variables the agent itself sets.
		base = []string{"PATH=" + defaultPath, "MESOS_SANDBOX=" + parent.sandbox, "MESOS_CONTAINER_ID=" + parent.id}
	}
	idx := map[string]int{}
	env := make([]string, 0, len(base)+4)
	set := func(k, v string) {
		if i, ok := idx[k]; ok {
			env[i] = k + "=" + v
			return
		}
		idx[k] = len(env)
		env = append(env, k+"="+v)
	}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	if cmdEnv != nil {
		for _, v := range cmdEnv.Variables {
			if v.Name == "" {
				return nil, badRequest("environment variable with an empty name")
			}
			if v.Type != nil && *v.Type == mesos.Environment_Variable_SECRET {
				data, err := secretValue(v.Secret)
				if err != nil {
					return nil, badRequest("environment variable %q: %v", v.Name, err)
				}
				set(v.Name, string(data))
				continue
			}
			set(v.Name, v.GetValue())
		}
	}
	if _, ok := idx["PATH"]; !ok {
		set("PATH", defaultPath)
	}
	if _, ok := idx["TERM"]; !ok && tty {
		// What docker exec -t gives a terminal session without TERM.
		set("TERM", "xterm")
	}
	return env, nil
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func closeFiles(fs ...*os.File) {
	seen := map[*os.File]bool{}
	for _, f := range fs {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

func (a *Agent) launchSession(w http.ResponseWriter, r *http.Request, codec encoding.Codec, lc *agent.Call_LaunchNestedContainerSession, log logrus.FieldLogger) {
	id := lc.ContainerID
	if err := validateSessionID(id); err != nil {
		writeErr(w, err)
		return
	}
	log = log.WithFields(logrus.Fields{"container": id.Value, "parent": id.Parent.Value})
	t := a.sessions()

	a.mu.Lock()
	closed := a.closed
	parent := a.containers[id.Parent.Value]
	var pstate cstate
	var ppid int
	if parent != nil {
		pstate, ppid = parent.state, parent.pid
	}
	a.mu.Unlock()
	switch {
	case closed:
		writeErr(w, unavailable("agent is shutting down"))
		return
	case parent == nil && t.hasValue(id.Parent.Value):
		writeErr(w, badRequest("container %q is itself nested; this agent only nests sessions in standalone containers", id.Parent.Value))
		return
	case parent == nil:
		writeErr(w, notFound(*id.Parent))
		return
	case pstate != stateRunning:
		writeErr(w, badRequest("Parent container %s is not running (it is %s)", parent.id, pstate))
		return
	}

	program, argv, err := sessionCommand(lc.Command)
	if err != nil {
		writeErr(w, err)
		return
	}
	tty := lc.Container != nil && lc.Container.TTYInfo != nil
	env, err := sessionEnv(parent, ppid, lc.Command.Environment, tty)
	if err != nil {
		writeErr(w, err)
		return
	}
	cwd := parent.sandbox
	if d, ok := processCwd(ppid); ok && within(parent.sandbox, d) {
		cwd = d
	}
	if img := imageRef(lc.Container); img != "" {
		log.WithField("image", img).Warn("session image ignored: sessions run in their parent's context")
	}
	if u := lc.Command.GetUser(); u != "" && u != a.selfUser && u != a.selfUID {
		log.WithField("user", u).Warn("CommandInfo.user ignored: the reference agent cannot switch users")
	}

	s := &session{
		cid:      id,
		parent:   parent,
		tty:      tty,
		log:      log,
		proc:     &container{id: id.Value, sandbox: parent.sandbox, state: stateLaunching, done: make(chan struct{})},
		subs:     map[*outSub]struct{}{},
		finished: make(chan struct{}),
	}
	if !t.add(s) {
		// As Mesos answers a LAUNCH of an id in use: 202, no stream.
		log.Debug("LAUNCH_NESTED_CONTAINER_SESSION for an existing session")
		writeNoData(w, http.StatusAccepted)
		return
	}

	// abort forgets a session that never ran; a WAIT already parked on it
	// gets the failure.
	abort := func(err error) {
		a.failStarted(s.proc, 126, "Failed to launch session: "+err.Error())
		t.drop(s)
		log.WithError(err).Warn("session launch failed")
		writeErr(w, err)
	}

	// The child's ends of its stdio; the agent keeps the other ends.
	var child [3]*os.File
	if tty {
		m, sl, err := openPTY()
		if err != nil {
			abort(unavailable("cannot allocate a pty: %v", err))
			return
		}
		if ws := lc.Container.TTYInfo.WindowSize; ws != nil {
			if err := setWindowSize(m, ws.Rows, ws.Columns); err != nil {
				log.WithError(err).Warn("cannot set the initial window size")
			}
		}
		s.master, s.outs = m, []*os.File{m}
		child = [3]*os.File{sl, sl, sl}
	} else {
		var ends [6]*os.File // r, w per pipe
		for i := 0; i < 3; i++ {
			if ends[2*i], ends[2*i+1], err = os.Pipe(); err != nil {
				closeFiles(ends[:]...)
				abort(unavailable("cannot create pipes: %v", err))
				return
			}
		}
		s.stdin, s.outs = ends[1], []*os.File{ends[2], ends[4]}
		child = [3]*os.File{ends[0], ends[3], ends[5]}
	}

	prog, err := lookPath(program, envValue(env, "PATH"), cwd)
	if err == nil {
		a.spawnSl <- struct{}{}
		// Fd puts the child's ends in blocking mode, as a child expects.
		fds := []uintptr{child[0].Fd(), child[1].Fd(), child[2].Fd()}
		a.reaper.forkMu.RLock()
		var pid int
		if pid, err = spawnSession(prog, argv, env, cwd, fds, tty); err == nil {
			a.register(s.proc, pid, log)
		}
		a.reaper.forkMu.RUnlock()
		<-a.spawnSl
		if err == nil {
			a.wake()
		}
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EAGAIN || errno == syscall.ENOMEM || errno == syscall.EMFILE || errno == syscall.ENFILE) {
			closeFiles(child[:]...)
			closeFiles(append(s.outs, s.stdin)...)
			abort(unavailable("cannot start process: %v", err))
			return
		}
		// Like a container that cannot execute its command: the session
		// "starts", says why on its stderr and ends with a shell's status.
		code := 126
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errNotFound) {
			code = 127
		}
		msg := fmt.Sprintf("Failed to execute %q: %v", program, err)
		fmt.Fprintln(child[2], msg)
		a.failStarted(s.proc, code, msg)
		log.WithError(err).Warn("session failed to execute")
	}
	closeFiles(child[:]...)

	sub := startStream(w, codec)
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go a.superviseSession(t, s)
	if err == nil {
		log.WithFields(logrus.Fields{"pid": s.proc.pid, "argv": argv, "tty": tty}).Info("session started")
	}
	a.followSession(r, s, sub, true)
}

// followSession streams s to one subscriber until the session is over or
// the subscriber leaves. The launching connection owns the session: when it
// breaks, the session is killed.
func (a *Agent) followSession(r *http.Request, s *session, sub *outSub, owner bool) {
	var parentDone <-chan struct{}
	if owner {
		parentDone = s.parent.done
	}
	stopping := a.stop
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-s.finished:
			sub.end(false)
			return
		case <-r.Context().Done():
		case <-sub.gone:
		case <-parentDone:
			s.log.Info("parent container ended: killing session")
			a.signalSession(s, syscall.SIGKILL)
			parentDone = nil
			continue
		case <-stopping:
			// The supervisor finishes the session (and the stream, cleanly).
			a.signalSession(s, syscall.SIGKILL)
			stopping = nil
			continue
		}
		// The client went away.
		if owner {
			cause := context.Cause(r.Context())
			if cause == nil {
				cause = sub.err
			}
			s.log.WithError(cause).Info("session connection closed: killing session")
			a.signalSession(s, syscall.SIGKILL)
		}
		sub.end(true)
		return
	}
}

// superviseSession pumps the session's output to its subscribers, and once
// the process has been reaped (its group killed by the reaper) drains what
// is left, closes the session's descriptors and keeps its status.
func (a *Agent) superviseSession(t *sessionTable, s *session) {
	var wg sync.WaitGroup
	for i, f := range s.outs {
		typ := agent.ProcessIO_Data_STDOUT
		if !s.tty && i == 1 {
			typ = agent.ProcessIO_Data_STDERR
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pump(f, typ)
		}()
	}
	select {
	case <-s.proc.done:
	case <-a.stop:
		// The agent closed: end the session; the process's reaper, which
		// outlives every agent, reaps it.
		a.signalSession(s, syscall.SIGKILL)
		<-s.proc.done
	}
	deadline := time.Now().Add(sessionDrainGrace)
	for _, f := range s.outs {
		if err := f.SetReadDeadline(deadline); err != nil {
			f.Close() // not pollable: closing is the only way to stop a read
		}
	}
	wg.Wait()
	closeFiles(append(s.outs, s.stdin)...)
	close(s.finished)
	t.retain(s)
	a.mu.Lock()
	term := s.proc.term
	a.mu.Unlock()
	if term != nil {
		s.log.WithField("state", term.state.String()).Info("session ended: " + term.message)
	}
}

func (s *session) pump(f *os.File, typ agent.ProcessIO_Data_Type) {
	buf := make([]byte, ioChunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			s.broadcast(dataRecord(typ, buf[:n]))
		}
		if err != nil {
			// EOF; EIO from a pty master once no slave is open; the drain
			// deadline; or closed.
			return
		}
	}
}

func (s *session) broadcast(m *agent.ProcessIO) {
	s.mu.Lock()
	subs := make([]*outSub, 0, len(s.subs))
	for o := range s.subs {
		subs = append(subs, o)
	}
	s.mu.Unlock()
	for _, o := range subs {
		o.send(m)
	}
}

// signalSession signals the session's process group, as KILL_CONTAINER does
// a container's (under a.mu, so a reaped pid is never signalled).
func (a *Agent) signalSession(s *session, sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := s.proc
	switch c.state {
	case stateLaunching:
		if sig != 0 {
			c.pendingSignal = sig
		}
	case stateRunning:
		if err := killGroup(c.pid, sig); err != nil && err != syscall.ESRCH {
			s.log.WithError(err).Warn("failed to signal session")
			return
		}
		if sig != 0 {
			c.killSignal = sig
		}
	}
}

// ---- ATTACH_CONTAINER_INPUT (a streaming request) ----

// noReuse makes the connection close after the answer. Reading a streaming
// request is stopped with a read deadline in the past; if net/http's
// background read (started once the body reached its end) is what the
// deadline interrupts, net/http cancels the connection's context, and every
// later request on a kept-alive connection would start with its context
// already done: a session launched on it would be killed at once. Must be
// called before the answer's header is written.
func noReuse(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
}

// serveStreamingRequest answers a request whose body is a RecordIO stream of
// Calls; ATTACH_CONTAINER_INPUT is the only such call.
func (a *Agent) serveStreamingRequest(w http.ResponseWriter, r *http.Request) {
	noReuse(w)
	rc := http.NewResponseController(w)
	// Any answer but the one to a finished stream first stops reading the
	// body: net/http would otherwise try to drain a stream the client is
	// still feeding before it sends the answer, and the client would wait.
	fail := func(err error) {
		_ = rc.SetReadDeadline(time.Now())
		writeErr(w, err)
	}
	mct := r.Header.Get("Message-Content-Type")
	mt, _, err := mime.ParseMediaType(mct)
	codec, ok := codecs.ByMediaType[encoding.MediaType(mt)]
	if mct == "" || err != nil || !ok {
		fail(&apiError{http.StatusUnsupportedMediaType, fmt.Sprintf(
			"Expecting 'Message-Content-Type' of %s or %s for a streaming request", codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)})
		return
	}
	body := recordio.NewReader(r.Body)
	dec := codec.NewDecoder(func() framing.Reader { return body })
	var call agent.Call
	if err := dec.Decode(&call); err != nil {
		if err == io.EOF {
			err = errors.New("empty stream")
		}
		fail(badRequest("Failed to parse the first record into Call: %v", err))
		return
	}
	log := a.log.WithField("call", call.Type.String())
	if call.Type != agent.Call_ATTACH_CONTAINER_INPUT {
		fail(&apiError{http.StatusUnsupportedMediaType, fmt.Sprintf(
			"Streaming 'Call' of type %s is not supported; only ATTACH_CONTAINER_INPUT is a streaming request", call.Type)})
		return
	}
	aci := call.AttachContainerInput
	if aci == nil || aci.Type != agent.Call_AttachContainerInput_CONTAINER_ID || aci.ContainerID == nil {
		fail(badRequest("Expecting the first record to be an 'attach_container_input' of type CONTAINER_ID with 'container_id'"))
		return
	}
	a.attachInput(w, rc, fail, dec, *aci.ContainerID, log)
}

func (a *Agent) attachInput(w http.ResponseWriter, rc *http.ResponseController, fail func(error), dec encoding.Decoder, id mesos.ContainerID, log logrus.FieldLogger) {
	if id.Parent == nil {
		a.mu.Lock()
		c := a.containers[id.Value]
		a.mu.Unlock()
		if c == nil {
			fail(notFound(id))
			return
		}
		fail(badRequest("container %s has no attachable stdin: standalone containers run with stdin from /dev/null and without a tty", id.Value))
		return
	}
	s := a.sessions().lookup(id)
	if s == nil {
		fail(notFound(id))
		return
	}
	s.mu.Lock()
	switch {
	case s.ended():
		s.mu.Unlock()
		fail(badRequest("container %s has terminated", id.Value))
		return
	case s.inputBusy:
		s.mu.Unlock()
		// Mesos' I/O switchboard answers the same.
		fail(&apiError{http.StatusConflict, "Multiple input connections are not allowed"})
		return
	}
	s.inputBusy = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inputBusy = false
		s.mu.Unlock()
	}()
	log = s.log.WithField("call", "ATTACH_CONTAINER_INPUT")

	// When the process is gone the input has nowhere to go: stop reading
	// and answer, as Mesos ends the input connection of a finished container.
	stop, watched := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-watched // no ResponseController use after the handler returns
	}()
	go func() {
		defer close(watched)
		select {
		case <-s.proc.done:
		case <-a.stop:
		case <-stop:
			return
		}
		_ = rc.SetReadDeadline(time.Now())
	}()
	over := func() bool {
		select {
		case <-s.proc.done:
			return true
		case <-a.stop:
			return true
		default:
			return false
		}
	}

	for {
		var call agent.Call
		err := dec.Decode(&call)
		if err == io.EOF {
			break
		}
		if err != nil {
			if over() {
				_ = rc.SetReadDeadline(time.Now())
				break
			}
			log.WithError(err).Debug("input stream broken")
			fail(badRequest("Failed to parse record into Call: %v", err))
			return
		}
		if err := s.input(&call, log); err != nil {
			fail(err)
			return
		}
	}
	writeNoData(w, http.StatusOK)
}

func (s *session) input(call *agent.Call, log logrus.FieldLogger) error {
	aci := call.AttachContainerInput
	if call.Type != agent.Call_ATTACH_CONTAINER_INPUT || aci == nil ||
		aci.Type != agent.Call_AttachContainerInput_PROCESS_IO || aci.ProcessIO == nil {
		return badRequest("Expecting every record after the first to be an 'attach_container_input' of type PROCESS_IO")
	}
	pio := aci.ProcessIO
	switch pio.Type {
	case agent.ProcessIO_DATA:
		if pio.Data == nil || pio.Data.Type != agent.ProcessIO_Data_STDIN {
			return badRequest("Expecting 'process_io.data.type' to be STDIN")
		}
		s.writeStdin(pio.Data.Data, log)
	case agent.ProcessIO_CONTROL:
		ctl := pio.Control
		if ctl == nil {
			return badRequest("Expecting 'process_io.control' to be present")
		}
		switch ctl.Type {
		case agent.ProcessIO_Control_TTY_INFO:
			ws := ctl.GetTTYInfo().GetWindowSize()
			if ws == nil {
				return badRequest("Expecting 'process_io.control.tty_info.window_size' to be present")
			}
			if !s.tty {
				log.Debug("TTY_INFO for a session without a tty ignored")
				return nil
			}
			if err := setWindowSize(s.master, ws.Rows, ws.Columns); err != nil {
				log.WithError(err).Debug("resize failed")
			}
		case agent.ProcessIO_Control_HEARTBEAT:
		default:
			return badRequest("Expecting 'process_io.control.type' to be TTY_INFO or HEARTBEAT")
		}
	default:
		return badRequest("Expecting 'process_io.type' to be DATA or CONTROL")
	}
	return nil
}

// writeStdin feeds the session; empty data is end of input. Without a tty
// that closes the stdin pipe; on a tty it types the EOF character (^D), as
// closing the master would hang the terminal up.
func (s *session) writeStdin(b []byte, log logrus.FieldLogger) {
	var err error
	switch {
	case s.tty && len(b) == 0:
		_, err = s.master.Write([]byte{0x04})
	case s.tty:
		_, err = s.master.Write(b)
	case len(b) == 0:
		err = s.stdin.Close()
	default:
		_, err = s.stdin.Write(b)
	}
	if err != nil {
		// The process closed its stdin or ended; like a pipe, drop it.
		log.WithError(err).Debug("stdin data dropped")
	}
}

// ---- ATTACH_CONTAINER_OUTPUT ----

func (a *Agent) attachOutput(w http.ResponseWriter, r *http.Request, codec encoding.Codec, id mesos.ContainerID, log logrus.FieldLogger) {
	if id.Parent != nil {
		s := a.sessions().lookup(id)
		if s == nil {
			writeErr(w, notFound(id))
			return
		}
		if s.ended() {
			writeErr(w, badRequest("container %s has terminated", id.Value))
			return
		}
		sub := startStream(w, codec)
		s.mu.Lock()
		s.subs[sub] = struct{}{}
		s.mu.Unlock()
		a.followSession(r, s, sub, false)
		return
	}
	a.mu.Lock()
	c := a.containers[id.Value]
	var state cstate
	if c != nil {
		state = c.state
	}
	a.mu.Unlock()
	if c == nil {
		writeErr(w, notFound(id))
		return
	}
	if state != stateRunning {
		writeErr(w, badRequest("container %s is not running (it is %s)", id.Value, state))
		return
	}
	a.tailContainer(w, r, codec, c, log.WithField("container", c.id))
}

// tailContainer streams what a standalone container writes to its sandbox
// stdout and stderr from now on, until it ends or the client leaves. The
// handler polls the files itself: no goroutine, two descriptors.
func (a *Agent) tailContainer(w http.ResponseWriter, r *http.Request, codec encoding.Codec, c *container, log logrus.FieldLogger) {
	var files [2]*os.File
	var offsets [2]int64
	for i, n := range []string{"stdout", "stderr"} {
		f, err := os.Open(filepath.Join(c.sandbox, n))
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil {
				offsets[i] = st.Size()
			}
		}
		if err != nil {
			closeFiles(files[:]...)
			closeFiles(f)
			writeErr(w, unavailable("cannot open %s of container %s: %v", n, c.id, err))
			return
		}
		files[i] = f
	}
	defer closeFiles(files[:]...)

	sub := startStream(w, codec)
	log.Debug("attached to container output")
	tick := time.NewTicker(attachPollInterval)
	defer tick.Stop()
	buf := make([]byte, ioChunk)
	types := [2]agent.ProcessIO_Data_Type{agent.ProcessIO_Data_STDOUT, agent.ProcessIO_Data_STDERR}
	for {
		final := false
		select {
		case <-tick.C:
		case <-c.done:
			final = true
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case <-a.stop:
			return
		}
		for i, f := range files {
			for {
				n, err := f.ReadAt(buf, offsets[i])
				if n > 0 {
					offsets[i] += int64(n)
					sub.send(dataRecord(types[i], buf[:n]))
				}
				if err != nil || n < len(buf) {
					break
				}
			}
		}
		if final {
			return
		}
	}
}

// ---- WAIT / KILL / REMOVE of sessions ----

func (a *Agent) waitSession(w http.ResponseWriter, r *http.Request, codec encoding.Codec, id mesos.ContainerID, nested bool) {
	s := a.sessions().lookup(id)
	if s == nil {
		writeErr(w, notFound(id))
		return
	}
	select {
	case <-s.proc.done:
	case <-s.finished:
	case <-r.Context().Done():
		return
	}
	a.mu.Lock()
	t := s.proc.term
	a.mu.Unlock()
	if t == nil {
		r := mesos.REASON_EXECUTOR_TERMINATED
		t = &termination{state: mesos.TASK_KILLED, reason: &r, message: "Session killed because the agent is shutting down"}
	}
	state := t.state
	var msg *string
	if t.message != "" {
		m := t.message
		msg = &m
	}
	if nested {
		writeResponse(w, codec, &agent.Response{
			Type: agent.Response_WAIT_NESTED_CONTAINER,
			WaitNestedContainer: &agent.Response_WaitNestedContainer{
				ExitStatus: t.status, State: &state, Reason: t.reason, Message: msg,
			},
		})
		return
	}
	writeResponse(w, codec, &agent.Response{
		Type: agent.Response_WAIT_CONTAINER,
		WaitContainer: &agent.Response_WaitContainer{
			ExitStatus: t.status, State: &state, Reason: t.reason, Message: msg,
		},
	})
}

func (a *Agent) killSessionCall(w http.ResponseWriter, id mesos.ContainerID, signal *int32) {
	sig := syscall.SIGKILL
	if signal != nil {
		sig = syscall.Signal(*signal)
	}
	if sig < 0 || sig > 64 {
		writeErr(w, badRequest("invalid signal %d", int(sig)))
		return
	}
	s := a.sessions().lookup(id)
	if s == nil {
		writeErr(w, notFound(id))
		return
	}
	a.signalSession(s, sig)
	s.log.WithField("signal", int(sig)).Info("session signalled")
	writeNoData(w, http.StatusOK)
}

func (a *Agent) removeSession(w http.ResponseWriter, id mesos.ContainerID) {
	t := a.sessions()
	s := t.lookup(id)
	if s == nil {
		writeErr(w, notFound(id))
		return
	}
	if !s.ended() {
		writeErr(w, badRequest("container %s has not terminated yet", id.Value))
		return
	}
	t.drop(s)
	writeNoData(w, http.StatusOK)
}
