package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
)

func nestedID(parent, id string) mesos.ContainerID {
	return mesos.ContainerID{Value: id, Parent: &mesos.ContainerID{Value: parent}}
}

// sessionOut is what a session streamed, per stream.
type sessionOut struct {
	stdout, stderr bytes.Buffer
}

// readSession decodes a ProcessIO stream until it ends.
func readSession(t *testing.T, res mesos.Response, onData func(*sessionOut)) *sessionOut {
	t.Helper()
	out := &sessionOut{}
	for {
		var pio agent.ProcessIO
		err := res.Decode(&pio)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("decoding the session stream: %v", err)
		}
		if pio.Type != agent.ProcessIO_DATA || pio.Data == nil {
			t.Fatalf("unexpected record %v", pio)
		}
		switch pio.Data.Type {
		case agent.ProcessIO_Data_STDOUT:
			out.stdout.Write(pio.Data.Data)
		case agent.ProcessIO_Data_STDERR:
			out.stderr.Write(pio.Data.Data)
		default:
			t.Fatalf("unexpected data type %v", pio.Data.Type)
		}
		if onData != nil {
			onData(out)
		}
	}
}

func (h *harness) startSession(ctx context.Context, id mesos.ContainerID, cmd *mesos.CommandInfo, ci *mesos.ContainerInfo) mesos.Response {
	h.t.Helper()
	res, err := h.sender.Send(ctx, calls.NonStreaming(calls.LaunchNestedContainerSession(id, cmd, ci)))
	if err != nil {
		h.t.Fatalf("LAUNCH_NESTED_CONTAINER_SESSION: %v", err)
	}
	if res == nil {
		h.t.Fatal("LAUNCH_NESTED_CONTAINER_SESSION: no stream")
	}
	h.t.Cleanup(func() { res.Close() })
	return res
}

func (h *harness) waitNested(id mesos.ContainerID) *agent.Response_WaitNestedContainer {
	h.t.Helper()
	w := h.mustGet(calls.WaitNestedContainer(id)).GetWaitNestedContainer()
	if w == nil || w.ExitStatus == nil {
		h.t.Fatalf("WAIT_NESTED_CONTAINER: no exit status in %v", w)
	}
	return w
}

// inputStream is a hand-driven ATTACH_CONTAINER_INPUT request.
type inputStream struct {
	ch   chan *agent.Call
	done chan error
}

func (h *harness) attachInput(ctx context.Context, id mesos.ContainerID) *inputStream {
	in := &inputStream{ch: make(chan *agent.Call), done: make(chan error, 1)}
	req := calls.FromChan(in.ch).Push(calls.AttachContainerInput(id))
	go func() {
		res, err := h.sender.Send(ctx, req)
		if res != nil {
			res.Close()
		}
		in.done <- err
	}()
	return in
}

func TestSessionExec(t *testing.T) {
	for _, codec := range []*encoding.Codec{nil, ptrCodec(codecs.MediaTypeJSON)} {
		name := "protobuf"
		if codec != nil {
			name = codec.Name
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, codec)
			env := &mesos.Environment{Variables: []mesos.Environment_Variable{{Name: "FROM_PARENT", Value: strp("parent-value")}}}
			h.mustLaunch("p1", &mesos.CommandInfo{Value: strp("sleep 100"), Environment: env}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			id := nestedID("p1", "s1")
			res := h.startSession(ctx, id, shellCmd(`echo hi; echo oops >&2; echo "$MESOS_SANDBOX|$(pwd)|$FROM_PARENT|$OWN"; exit 3`), nil)
			out := readSession(t, res, nil)
			sandbox := h.a.sessions().lookup(id).parent.sandbox
			want := "hi\n" + sandbox + "|" + sandbox + "|parent-value|\n"
			if out.stdout.String() != want || out.stderr.String() != "oops\n" {
				t.Fatalf("stdout %q stderr %q; want %q and %q", out.stdout.String(), out.stderr.String(), want, "oops\n")
			}
			w := h.waitNested(id)
			if ws := syscall.WaitStatus(*w.ExitStatus); !ws.Exited() || ws.ExitStatus() != 3 {
				t.Fatalf("exit status %#x; want exit 3", *w.ExitStatus)
			}
			if w.GetState() != mesos.TASK_FAILED {
				t.Fatalf("state %v", w.GetState())
			}
			// WAIT_CONTAINER with the nested id answers too.
			wc := h.mustGet(calls.WaitContainer(id)).GetWaitContainer()
			if wc == nil || wc.GetExitStatus() != *w.ExitStatus {
				t.Fatalf("WAIT_CONTAINER(nested) = %v", wc)
			}

			// argv form, the session's own environment, stdin and its EOF.
			id2 := nestedID("p1", "s2")
			cmd := &mesos.CommandInfo{
				Shell: new(bool), Value: strp("/bin/sh"), Arguments: []string{"sh", "-c", `echo "own=$OWN"; cat; echo done`},
				Environment: &mesos.Environment{Variables: []mesos.Environment_Variable{{Name: "OWN", Value: strp("x")}}},
			}
			res = h.startSession(ctx, id2, cmd, nil)
			in := h.attachInput(ctx, id2)
			in.ch <- calls.AttachContainerInputData([]byte("line one\n"))
			in.ch <- calls.AttachContainerInputHeartbeat(nil)
			in.ch <- calls.AttachContainerInputData([]byte("line two\n"))
			in.ch <- calls.AttachContainerInputData(nil)
			close(in.ch)
			if err := <-in.done; err != nil {
				t.Fatalf("ATTACH_CONTAINER_INPUT: %v", err)
			}
			out = readSession(t, res, nil)
			if got := out.stdout.String(); got != "own=x\nline one\nline two\ndone\n" {
				t.Fatalf("stdout %q", got)
			}
			if ws := syscall.WaitStatus(*h.waitNested(id2).ExitStatus); ws.ExitStatus() != 0 {
				t.Fatalf("exit %d", ws.ExitStatus())
			}
			if err := h.send(calls.RemoveNestedContainer(id2)); err != nil {
				t.Fatalf("REMOVE_NESTED_CONTAINER: %v", err)
			}
			if _, err := h.get(calls.WaitNestedContainer(id2)); !apierrors.CodeNotFound.Matches(err) {
				t.Fatalf("WAIT after REMOVE: %v; want 404", err)
			}

			// A program that does not exist: the session says so and ends 127.
			id3 := nestedID("p1", "s3")
			res = h.startSession(ctx, id3, &mesos.CommandInfo{Shell: new(bool), Value: strp("no-such-program-here")}, nil)
			out = readSession(t, res, nil)
			if !strings.Contains(out.stderr.String(), "no-such-program-here") {
				t.Fatalf("stderr %q", out.stderr.String())
			}
			if ws := syscall.WaitStatus(*h.waitNested(id3).ExitStatus); ws.ExitStatus() != 127 {
				t.Fatalf("exit %d; want 127", ws.ExitStatus())
			}
		})
	}
}

func ptrCodec(mt encoding.MediaType) *encoding.Codec {
	c := codecs.ByMediaType[mt]
	return &c
}

func TestSessionTTY(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("p", shellCmd("sleep 100"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := nestedID("p", "t1")
	mesosType := mesos.ContainerInfo_MESOS
	ci := &mesos.ContainerInfo{Type: &mesosType, TTYInfo: &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: 24, Columns: 80}}}
	script := `tty; stty size; echo err >&2; while [ "$(stty size)" = "24 80" ]; do sleep 0.02; done; stty size; read line; echo "got $line"`
	res := h.startSession(ctx, id, shellCmd(script), ci)
	in := h.attachInput(ctx, id)
	resized := false
	out := readSession(t, res, func(o *sessionOut) {
		if !resized && strings.Contains(o.stdout.String(), "24 80") {
			resized = true
			in.ch <- calls.AttachContainerInputTTY(&mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: 40, Columns: 100}})
		}
		if strings.Contains(o.stdout.String(), "40 100") && !strings.Contains(o.stdout.String(), "hello") {
			select {
			case in.ch <- calls.AttachContainerInputData([]byte("hello\n")):
			case <-ctx.Done():
			}
		}
	})
	got := out.stdout.String()
	if !strings.HasPrefix(got, "/dev/pts/") || !strings.Contains(got, "\r\n24 80\r\n") ||
		!strings.Contains(got, "err\r\n") || !strings.Contains(got, "40 100\r\n") || !strings.Contains(got, "got hello\r\n") {
		t.Fatalf("tty output %q", got)
	}
	if out.stderr.Len() != 0 {
		t.Fatalf("a tty session has one output; stderr got %q", out.stderr.String())
	}
	if err := <-in.done; err != nil {
		t.Fatalf("input stream: %v", err)
	}
}

func TestSessionErrors(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("run", shellCmd("sleep 100"), nil)
	h.mustLaunch("done", shellCmd("exit 0"), nil)
	h.wait("done")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	launch := func(id mesos.ContainerID) error {
		res, err := h.sender.Send(ctx, calls.NonStreaming(calls.LaunchNestedContainerSession(id, shellCmd("true"), nil)))
		if res != nil {
			res.Close()
		}
		return err
	}
	deep := mesos.ContainerID{Value: "x", Parent: &mesos.ContainerID{Value: "y", Parent: &mesos.ContainerID{Value: "run"}}}
	for _, tc := range []struct {
		name string
		err  error
		code apierrors.Code
	}{
		{"unknown parent", launch(nestedID("nope", "s")), apierrors.CodeNotFound},
		{"parent not running", launch(nestedID("done", "s")), apierrors.CodeMalformedRequest},
		{"nested twice", launch(deep), apierrors.CodeMalformedRequest},
		{"no parent", launch(mesos.ContainerID{Value: "s"}), apierrors.CodeMalformedRequest},
		{"dot in id", launch(nestedID("run", "a.b")), apierrors.CodeMalformedRequest},
		{"wait unknown", h.send(calls.WaitNestedContainer(nestedID("run", "nope"))), apierrors.CodeNotFound},
		{"kill unknown", h.send(calls.KillNestedContainer(nestedID("run", "nope"))), apierrors.CodeNotFound},
		{"remove unknown", h.send(calls.RemoveNestedContainer(nestedID("run", "nope"))), apierrors.CodeNotFound},
		{"output unknown", h.send(calls.AttachContainerOutput(mesos.ContainerID{Value: "nope"})), apierrors.CodeNotFound},
		{"output ended", h.send(calls.AttachContainerOutput(mesos.ContainerID{Value: "done"})), apierrors.CodeMalformedRequest},
	} {
		if !tc.code.Matches(tc.err) {
			t.Errorf("%s: got %v; want HTTP %d", tc.name, tc.err, tc.code)
		}
	}

	// Input for an unknown session, or for a standalone container, is
	// refused at once although the client keeps its stream open.
	for _, id := range []mesos.ContainerID{nestedID("run", "nope"), {Value: "run"}} {
		in := h.attachInput(ctx, id)
		select {
		case err := <-in.done:
			if err == nil {
				t.Fatalf("input for %v accepted", id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("input for %v: no answer while the request stream is open", id)
		}
	}
	if err := h.send(&agent.Call{Type: agent.Call_ATTACH_CONTAINER_INPUT, AttachContainerInput: calls.AttachContainerInput(nestedID("run", "x")).AttachContainerInput}); err == nil {
		t.Fatal("a non-streaming ATTACH_CONTAINER_INPUT was accepted")
	}
}

func TestSessionWire(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("p", shellCmd("sleep 100"), nil)
	post := func(hdr map[string]string, call *agent.Call, codec encoding.Codec) *http.Response {
		t.Helper()
		var body bytes.Buffer
		if err := codec.NewEncoder(encoding.SinkWriter(&body)).Encode(call); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1", &body)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	pb, js := codecs.ByMediaType[codecs.MediaTypeProtobuf], codecs.ByMediaType[codecs.MediaTypeJSON]

	// As the Mesos CLI asks: only recordio accepted, the record codec in
	// Message-Accept.
	call := calls.LaunchNestedContainerSession(nestedID("p", "w1"), shellCmd("printf abc"), nil)
	res := post(map[string]string{"Content-Type": string(pb.Type), "Accept": mediaTypeRecordIO, "Message-Accept": string(js.Type)}, call, pb)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != mediaTypeRecordIO || res.Header.Get("Message-Content-Type") != string(js.Type) {
		t.Fatalf("got %d %v", res.StatusCode, res.Header)
	}
	dec := js.NewDecoder(func() framing.Reader { return recordio.NewReader(res.Body) })
	var got []byte
	for {
		var pio agent.ProcessIO
		if err := dec.Decode(&pio); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, pio.GetData().GetData()...)
	}
	if string(got) != "abc" {
		t.Fatalf("records carried %q", got)
	}
	// Other calls still need a codec the client accepts.
	res = post(map[string]string{"Content-Type": string(pb.Type), "Accept": mediaTypeRecordIO}, calls.GetHealth(), pb)
	if res.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("GET_HEALTH accepting only recordio: %d", res.StatusCode)
	}
	// A stream nobody can read is refused.
	res = post(map[string]string{"Content-Type": string(pb.Type), "Accept": string(pb.Type)}, calls.LaunchNestedContainerSession(nestedID("p", "w2"), shellCmd("true"), nil), pb)
	if res.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("session accepting only protobuf: %d", res.StatusCode)
	}
	// A streaming request with an unknown record type.
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1", strings.NewReader("2\nxx"))
	req.Header.Set("Content-Type", mediaTypeRecordIO)
	req.Header.Set("Message-Content-Type", "text/plain")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("recordio of text/plain: %d", r2.StatusCode)
	}
	// An input connection is never kept alive (noReuse): whole input, the
	// process ends on its EOF, and the answer closes the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess := h.startSession(ctx, nestedID("p", "w3"), shellCmd("cat"), nil)
	var in bytes.Buffer
	enc := js.NewEncoder(func() framing.Writer { return recordio.NewWriter(&in) })
	for _, c := range []*agent.Call{calls.AttachContainerInput(nestedID("p", "w3")), calls.AttachContainerInputData([]byte("x")), calls.AttachContainerInputData(nil)} {
		if err := enc.Encode(c); err != nil {
			t.Fatal(err)
		}
	}
	req, _ = http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1", &in)
	req.Header.Set("Content-Type", mediaTypeRecordIO)
	req.Header.Set("Message-Content-Type", string(js.Type))
	r3, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != http.StatusOK || !r3.Close {
		t.Fatalf("ATTACH_CONTAINER_INPUT answered %d, connection kept alive: %v", r3.StatusCode, !r3.Close)
	}
	if out := readSession(t, sess, nil); out.stdout.String() != "x" {
		t.Fatalf("session output %q", out.stdout.String())
	}
}

// TestSessionLifetime: a session dies with its connection, with its parent,
// or by KILL_NESTED_CONTAINER, and leaves no descriptor behind.
func TestSessionLifetime(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("p", shellCmd("sleep 100"), nil)
	baseFDs := countOpenFDs()

	// pidOf starts `echo $$; exec sleep 100` and returns the pid it printed.
	pidOf := func(ctx context.Context, id mesos.ContainerID) (int, mesos.Response) {
		t.Helper()
		res := h.startSession(ctx, id, shellCmd("echo $$; exec sleep 100"), nil)
		var pio agent.ProcessIO
		if err := res.Decode(&pio); err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(pio.GetData().GetData())))
		if err != nil {
			t.Fatalf("first record %v", pio)
		}
		return pid, res
	}
	gone := func(pid int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("session process %d still exists", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The client goes away.
	ctx, cancel := context.WithCancel(context.Background())
	pid, _ := pidOf(ctx, nestedID("p", "d1"))
	cancel()
	gone(pid)
	if w := h.waitNested(nestedID("p", "d1")); w.GetState() != mesos.TASK_KILLED {
		t.Fatalf("state %v", w.GetState())
	}

	// KILL_NESTED_CONTAINER with a signal.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pid, res := pidOf(ctx, nestedID("p", "k1"))
	kill := calls.KillNestedContainer(nestedID("p", "k1"))
	kill.KillNestedContainer.Signal = sig32(syscall.SIGTERM)
	if err := h.send(kill); err != nil {
		t.Fatal(err)
	}
	readSession(t, res, nil)
	gone(pid)
	if ws := syscall.WaitStatus(*h.waitNested(nestedID("p", "k1")).ExitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("wait status %#x; want SIGTERM", uint32(ws))
	}

	// Output attached by a second client sees what comes after it attached.
	res = h.startSession(ctx, nestedID("p", "o1"), shellCmd("read x; echo after $x"), nil)
	ores, err := h.sender.Send(ctx, calls.NonStreaming(calls.AttachContainerOutput(nestedID("p", "o1"))))
	if err != nil {
		t.Fatal(err)
	}
	in := h.attachInput(ctx, nestedID("p", "o1"))
	in.ch <- calls.AttachContainerInputData([]byte("go\n"))
	close(in.ch)
	if got := readSession(t, ores, nil).stdout.String(); got != "after go\n" {
		t.Fatalf("attached output %q", got)
	}
	ores.Close()
	if got := readSession(t, res, nil).stdout.String(); got != "after go\n" {
		t.Fatalf("session output %q", got)
	}
	<-in.done

	// The parent ends.
	pid, res = pidOf(ctx, nestedID("p", "c1"))
	if err := h.send(killCall("p", sig32(syscall.SIGKILL))); err != nil {
		t.Fatal(err)
	}
	readSession(t, res, nil)
	gone(pid)

	deadline := time.Now().Add(5 * time.Second)
	for countOpenFDs() > baseFDs+2 { // + idle keep-alive connections
		if time.Now().After(deadline) {
			t.Fatalf("open fds %d, before the sessions %d", countOpenFDs(), baseFDs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(h.a.sessions().byID); n != 4 {
		t.Fatalf("%d sessions retained; want 4 (the removed one is gone)", n)
	}
}

// TestCloseEndsSessions: closing the agent ends its sessions and their
// streams, and reaps their processes.
func TestCloseEndsSessions(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("p", shellCmd("sleep 100"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := h.startSession(ctx, nestedID("p", "c"), shellCmd("echo $$; exec sleep 100"), nil)
	var pio agent.ProcessIO
	if err := res.Decode(&pio); err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pio.GetData().GetData())))
	h.a.Close()
	readSession(t, res, nil)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("session process %d outlived the agent", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
