package agentclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpagent"
	"github.com/sirupsen/logrus"

	legacyagent "github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/translate"
)

// syncBuffer is a bytes.Buffer safe to read while Exec writes to it; onWrite
// sees the contents after each write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(string)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, _ := s.b.Write(p)
	now := s.b.String()
	s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(now)
	}
	return n, nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startAgent(t *testing.T, mod ...func(*legacyagent.Config)) string {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	cfg := legacyagent.Config{WorkDir: t.TempDir(), Listen: "127.0.0.1:5051", Logger: l}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := legacyagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		a.Close()
		srv.Close()
	})
	return srv.URL
}

type codecCase struct {
	name   string
	client func(url string) *Client
}

var codecCases = []codecCase{
	{"protobuf", func(url string) *Client { return New(url, Options{}) }},
	{"json", func(url string) *Client {
		c := New(url, Options{})
		c.sender = httpagent.NewSender(httpcli.New(
			httpcli.Endpoint(url+"/api/v1"),
			httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeJSON]),
			httpcli.Do(httpcli.With(httpcli.Timeout(0))),
		).Send)
		return c
	}},
}

func launchParent(t *testing.T, c *Client, id, shell string, env map[string]string) {
	t.Helper()
	cmd := &mesos.CommandInfo{Value: &shell}
	if len(env) > 0 {
		cmd.Environment = &mesos.Environment{}
		for k, v := range env {
			cmd.Environment.Variables = append(cmd.Environment.Variables, mesos.Environment_Variable{Name: k, Value: &v})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Launch(ctx, id, &translate.Launch{Command: cmd}); err != nil {
		t.Fatalf("launch %s: %v", id, err)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestExec(t *testing.T) {
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			c := cc.client(startAgent(t))
			launchParent(t, c, "vkt-parent.1", "sleep 100", map[string]string{"FOO": "from the pod"})
			ctx := testCtx(t)
			run := func(cmd []string, eio ExecIO) (int, string, string) {
				t.Helper()
				var out, errb syncBuffer
				eio.Stdout, eio.Stderr = &out, &errb
				code, err := c.Exec(ctx, "vkt-parent.1", cmd, eio)
				if err != nil {
					t.Fatalf("exec %q: %v", cmd, err)
				}
				return code, out.String(), errb.String()
			}

			if code, out, _ := run([]string{"sh", "-c", "echo hi; exit 3"}, ExecIO{}); code != 3 || out != "hi\n" {
				t.Fatalf("echo hi; exit 3: code %d stdout %q", code, out)
			}
			code, out, errs := run([]string{"sh", "-c", `echo "$MESOS_SANDBOX"; pwd; echo "$FOO"; echo oops >&2`}, ExecIO{})
			lines := strings.Split(out, "\n")
			if code != 0 || len(lines) != 4 || lines[0] != lines[1] || !strings.HasSuffix(lines[0], "/sandboxes/vkt-parent.1") ||
				lines[2] != "from the pod" || errs != "oops\n" {
				t.Fatalf("env/cwd: code %d stdout %q stderr %q", code, out, errs)
			}
			if code, out, _ := run([]string{"cat"}, ExecIO{Stdin: strings.NewReader("one\ntwo\n")}); code != 0 || out != "one\ntwo\n" {
				t.Fatalf("cat with stdin: code %d stdout %q", code, out)
			}
			// No stdin: the command reads EOF at once instead of hanging.
			if code, out, _ := run([]string{"cat"}, ExecIO{}); code != 0 || out != "" {
				t.Fatalf("cat without stdin: code %d stdout %q", code, out)
			}
			if code, _, errs := run([]string{"no-such-command"}, ExecIO{}); code != 127 || !strings.Contains(errs, "no-such-command") {
				t.Fatalf("missing command: code %d stderr %q", code, errs)
			}
			if code, _, _ := run([]string{"sh", "-c", "kill -TERM $$"}, ExecIO{}); code != 128+int(syscall.SIGTERM) {
				t.Fatalf("signalled: code %d", code)
			}
			// Large output arrives whole and in order.
			if code, out, _ := run([]string{"sh", "-c", "seq 1 20000"}, ExecIO{}); code != 0 || !strings.HasSuffix(out, "\n19999\n20000\n") || strings.Count(out, "\n") != 20000 {
				t.Fatalf("seq: code %d, %d lines", code, strings.Count(out, "\n"))
			}
		})
	}
}

func TestExecTTY(t *testing.T) {
	c := New(startAgent(t), Options{})
	launchParent(t, c, "p", "sleep 100", nil)
	ctx := testCtx(t)

	resize := make(chan TermSize, 1)
	resize <- TermSize{Width: 80, Height: 24}
	var once sync.Once
	out := &syncBuffer{onWrite: func(s string) {
		if strings.Contains(s, "24 80") {
			once.Do(func() { go func() { resize <- TermSize{Width: 100, Height: 40} }() })
		}
	}}
	code, err := c.Exec(ctx, "p", []string{"sh", "-c", `tty; stty size; echo err >&2; while [ "$(stty size)" = "24 80" ]; do sleep 0.02; done; stty size`},
		ExecIO{TTY: true, Stdout: out, Stderr: out, Resize: resize})
	got := out.String()
	if err != nil || code != 0 || !strings.HasPrefix(got, "/dev/pts/") || !strings.Contains(got, "\r\n24 80\r\n") ||
		!strings.Contains(got, "err\r\n") || !strings.HasSuffix(got, "40 100\r\n") {
		t.Fatalf("tty: code %d err %v output %q", code, err, got)
	}

	// Stdin on a terminal: echoed by the line discipline, EOF typed at the end.
	out = &syncBuffer{}
	code, err = c.Exec(ctx, "p", []string{"sh", "-c", "cat; echo bye"}, ExecIO{TTY: true, Stdin: strings.NewReader("hello\n"), Stdout: out})
	if err != nil || code != 0 || strings.Count(out.String(), "hello\r\n") != 2 || !strings.HasSuffix(out.String(), "bye\r\n") {
		t.Fatalf("tty stdin: code %d err %v output %q", code, err, out.String())
	}
}

func TestExecErrors(t *testing.T) {
	c := New(startAgent(t), Options{})
	ctx := testCtx(t)
	if _, err := c.Exec(ctx, "nope", []string{"true"}, ExecIO{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exec into an unknown container: %v; want ErrNotFound", err)
	}
	launchParent(t, c, "ended", "exit 0", nil)
	if _, err := c.Wait(ctx, "ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "ended", []string{"true"}, ExecIO{}); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("exec into an ended container: %v; want ErrRejected", err)
	}
	if _, err := c.Exec(ctx, "ended", nil, ExecIO{}); !errors.Is(err, ErrRejected) {
		t.Fatalf("empty command: %v", err)
	}
}

// TestExecCancel: cancelling an exec kills the session's process.
func TestExecCancel(t *testing.T) {
	c := New(startAgent(t), Options{})
	launchParent(t, c, "p", "sleep 100", nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	pidc := make(chan int, 1)
	out := &syncBuffer{onWrite: func(s string) {
		if line, _, ok := strings.Cut(s, "\n"); ok {
			if pid, err := strconv.Atoi(line); err == nil {
				select {
				case pidc <- pid:
				default:
				}
			}
		}
	}}
	errc := make(chan error, 1)
	stdin, stdinW := io.Pipe() // an open stdin, as an interactive client's
	defer stdinW.Close()
	go func() {
		_, err := c.Exec(ctx, "p", []string{"sh", "-c", "echo $$; exec sleep 100"}, ExecIO{Stdin: stdin, Stdout: out})
		errc <- err
	}()
	var pid int
	select {
	case pid = <-pidc:
	case err := <-errc:
		t.Fatalf("exec ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no pid printed")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled exec returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled exec did not return")
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("session process %d outlived the cancelled exec", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAttach(t *testing.T) {
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			c := cc.client(startAgent(t))
			launchParent(t, c, "ticker", `i=0; while true; do echo "tick $i"; echo "tock $i" >&2; i=$((i+1)); sleep 0.05; done`, nil)
			ctx := testCtx(t)
			time.Sleep(300 * time.Millisecond) // output from before the attach is not replayed

			actx, cancel := context.WithCancel(ctx)
			out, errb := &syncBuffer{}, &syncBuffer{}
			out.onWrite = func(s string) {
				if strings.Count(s, "\n") >= 5 {
					cancel()
				}
			}
			err := c.Attach(actx, "ticker", ExecIO{Stdout: out, Stderr: errb})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("attach ended with %v", err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) < 5 || lines[0] == "tick 0" || !strings.HasPrefix(lines[0], "tick ") || !strings.HasPrefix(errb.String(), "tock ") {
				t.Fatalf("attached stdout %q stderr %q", out.String(), errb.String())
			}
			first, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "tick "))
			for i, l := range lines {
				if l != "tick "+strconv.Itoa(first+i) {
					t.Fatalf("line %d is %q: %q", i, l, out.String())
				}
			}

			// A container that ends ends the attach, with its last words.
			launchParent(t, c, "short", "sleep 0.3; echo last; echo words >&2", nil)
			out = &syncBuffer{}
			if err := c.Attach(ctx, "short", ExecIO{Stdout: out, Stderr: out, TTY: true}); err != nil || out.String() != "last\nwords\n" {
				t.Fatalf("attach to an ending container: %v, %q", err, out.String())
			}
			if err := c.Attach(ctx, "nope", ExecIO{}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("attach to an unknown container: %v", err)
			}
			if err := c.Attach(ctx, "ticker", ExecIO{Stdin: strings.NewReader("x")}); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("attach with stdin: %v", err)
			}
		})
	}
}

// TestExecUnsupportedAgent: an agent without the streaming calls gives a
// clear error, never a hang.
func TestExecUnsupportedAgent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"501", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "call LAUNCH_NESTED_CONTAINER_SESSION is not supported", http.StatusNotImplemented)
		}},
		{"no endpoint", http.NotFound},
		{"not a stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.Write([]byte{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c := New(srv.URL, Options{})
			ctx := testCtx(t)
			_, err := c.Exec(ctx, "p", []string{"true"}, ExecIO{Stdin: strings.NewReader("x"), TTY: true, Resize: make(chan TermSize)})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "not supported by this agent") {
				t.Fatalf("exec: %v; want ErrUnsupported", err)
			}
			if err := c.Attach(ctx, "p", ExecIO{}); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("attach: %v; want ErrUnsupported", err)
			}
		})
	}
}

func TestSessionIDs(t *testing.T) {
	id := sessionID("a.b/c d")
	if !strings.HasPrefix(id, "a-b-c-d-exec-") || len(id) != len("a-b-c-d-exec-")+16 || strings.ContainsAny(id, "./ ") {
		t.Fatalf("SessionID = %q", id)
	}
	if long := sessionID(strings.Repeat("x", 300)); len(long) != 255 {
		t.Fatalf("len %d", len(long))
	}
	if sessionID("p") == sessionID("p") {
		t.Fatal("session ids repeat")
	}
}

func TestMentionsID(t *testing.T) {
	for _, tc := range []struct {
		msg, id string
		want    bool
	}{
		{"404 page not found", "p", false},
		{"Container p cannot be found", "p", true},
		{"Container vkt-a.b cannot be found.", "vkt-a.b", true},
		{"Container vkt-a.b.", "vkt-a.b", true},
		{"Container vkt-a.bc", "vkt-a.b", false},
		{"Container xvkt-a", "vkt-a", false},
		{"", "p", false},
	} {
		if got := mentionsID(tc.msg, tc.id); got != tc.want {
			t.Errorf("mentionsID(%q, %q) = %v", tc.msg, tc.id, got)
		}
	}
}

// TestExecNoLeaks: execs leave no goroutines behind, in the client or in
// the agent (both live in this process).
func TestExecNoLeaks(t *testing.T) {
	c := New(startAgent(t), Options{})
	launchParent(t, c, "p", "sleep 100", nil)
	ctx := testCtx(t)
	execs := func(n int) {
		for i := 0; i < n; i++ {
			resize := make(chan TermSize, 1)
			resize <- TermSize{Width: 80, Height: 24}
			for _, eio := range []ExecIO{
				{Stdin: strings.NewReader("x\n"), Stdout: io.Discard},
				{},
				{TTY: true, Stdin: strings.NewReader("x\n"), Resize: resize},
			} {
				if code, err := c.Exec(ctx, "p", []string{"cat"}, eio); err != nil || code != 0 {
					t.Fatalf("exec: %d %v", code, err)
				}
			}
		}
	}
	execs(2)
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	execs(20)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+6 { // a few more idle keep-alive connections
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, before %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
