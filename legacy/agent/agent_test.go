package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpagent"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/internal/testlog"
)

type harness struct {
	t      *testing.T
	a      *Agent
	srv    *httptest.Server
	sender calls.Sender
	active *atomic.Int64 // requests inside the handler
}

// in returns the harness bound to a subtest, so helpers fail that subtest.
func (h *harness) in(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func quietLogger() logrus.FieldLogger { return testlog.New() }

func newHarness(t *testing.T, codec *encoding.Codec, mod ...func(*Config)) *harness {
	t.Helper()
	cfg := Config{
		WorkDir:    t.TempDir(),
		Listen:     "127.0.0.1:5051",
		Attributes: "zone:us-east-1a;instance_type:m5.large",
		Logger:     quietLogger(),
	}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, a: a, active: new(atomic.Int64)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.active.Add(1)
		defer h.active.Add(-1)
		a.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		a.Close()
		h.srv.Close()
	})
	h.sender = newSender(h.srv.URL, codec)
	return h
}

func newSender(url string, codec *encoding.Codec) calls.Sender {
	opts := []httpcli.Opt{
		httpcli.Endpoint(url + "/api/v1"),
		httpcli.Do(httpcli.With(httpcli.Timeout(0))),
	}
	if codec != nil {
		opts = append(opts, httpcli.Codec(*codec))
	}
	return httpagent.NewSender(httpcli.New(opts...).Send)
}

func (h *harness) send(call *agent.Call) error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.sender.Send(ctx, calls.NonStreaming(call))
	if resp != nil {
		resp.Close()
	}
	return err
}

func (h *harness) get(call *agent.Call) (*agent.Response, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.sender.Send(ctx, calls.NonStreaming(call))
	if resp != nil {
		defer resp.Close()
	}
	if err != nil {
		return nil, err
	}
	var r agent.Response
	if err := resp.Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (h *harness) mustGet(call *agent.Call) *agent.Response {
	h.t.Helper()
	r, err := h.get(call)
	if err != nil {
		h.t.Fatalf("%s: %v", call.Type, err)
	}
	return r
}

func shellCmd(s string) *mesos.CommandInfo {
	return &mesos.CommandInfo{Value: &s}
}

func (h *harness) launch(id string, cmd *mesos.CommandInfo, ci *mesos.ContainerInfo) error {
	h.t.Helper()
	return h.send(calls.LaunchContainer(mesos.ContainerID{Value: id}, cmd, ci, nil))
}

func (h *harness) mustLaunch(id string, cmd *mesos.CommandInfo, ci *mesos.ContainerInfo) {
	h.t.Helper()
	if err := h.launch(id, cmd, ci); err != nil {
		h.t.Fatalf("launch %s: %v", id, err)
	}
}

func (h *harness) wait(id string) *agent.Response_WaitContainer {
	h.t.Helper()
	r := h.mustGet(calls.WaitContainer(mesos.ContainerID{Value: id}))
	if r.WaitContainer == nil {
		h.t.Fatalf("wait %s: no wait_container in %v", id, r)
	}
	return r.WaitContainer
}

func (h *harness) readFile(path string) string {
	h.t.Helper()
	r := h.mustGet(calls.ReadFile(path, 0))
	return string(r.ReadFile.Data)
}

// waitForFile polls READ_FILE until the file contains want.
func (h *harness) waitForFile(path, want string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := h.get(calls.ReadFile(path, 0)); err == nil && strings.Contains(string(r.ReadFile.Data), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("%s never contained %q", path, want)
}

func killCall(id string, sig *int32) *agent.Call {
	c := calls.KillContainer(mesos.ContainerID{Value: id})
	c.KillContainer.Signal = sig
	return c
}

func sig32(s syscall.Signal) *int32 { v := int32(s); return &v }

var codecCases = []struct {
	name  string
	codec *encoding.Codec
}{
	{"protobuf", nil},
	{"json", func() *encoding.Codec { c := codecs.ByMediaType[codecs.MediaTypeJSON]; return &c }()},
}

func TestOperatorAPI(t *testing.T) {
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) { testOperatorAPI(t, cc.codec) })
	}
}

func testOperatorAPI(t *testing.T, codec *encoding.Codec) {
	h := newHarness(t, codec)

	t.Run("health_version_agent", func(t *testing.T) {
		h := h.in(t)
		if r := h.mustGet(calls.GetHealth()); !r.GetHealth.Healthy {
			t.Fatal("not healthy")
		}
		if v := h.mustGet(calls.GetVersion()).GetVersion.VersionInfo.Version; v != Version {
			t.Fatalf("version %q", v)
		}
		ai := h.mustGet(calls.GetAgent()).GetAgent.AgentInfo
		if ai == nil || ai.ID == nil || ai.ID.Value == "" || ai.Hostname != "127.0.0.1" || ai.GetPort() != 5051 {
			t.Fatalf("agent info %+v", ai)
		}
		if len(ai.Resources) != 4 || ai.Resources[0].Name != "cpus" || ai.Resources[0].Scalar.Value != 4 {
			t.Fatalf("resources %+v", ai.Resources)
		}
		if len(ai.Attributes) != 2 || ai.Attributes[0].Text.Value != "us-east-1a" {
			t.Fatalf("attributes %+v", ai.Attributes)
		}
	})

	t.Run("exit_status_and_read_file", func(t *testing.T) {
		h := h.in(t)
		h.mustLaunch("c-exit", shellCmd("echo hi; echo oops >&2; exit 3"), nil)
		wc := h.wait("c-exit")
		ws := syscall.WaitStatus(wc.GetExitStatus())
		if wc.ExitStatus == nil || !ws.Exited() || ws.ExitStatus() != 3 {
			t.Fatalf("exit status %v", wc.ExitStatus)
		}
		if wc.GetState() != mesos.TASK_FAILED || wc.Reason == nil || wc.GetMessage() != "Command exited with status 3" {
			t.Fatalf("wait %+v", wc)
		}
		if got := h.readFile("/sandboxes/c-exit/stdout"); got != "hi\n" {
			t.Fatalf("stdout %q", got)
		}
		abs := filepath.Join(h.a.workDir, "sandboxes", "c-exit", "stderr")
		if got := h.readFile(abs); got != "oops\n" {
			t.Fatalf("stderr %q", got)
		}
		// offset and length
		r := h.mustGet(calls.ReadFileWithLength("/sandboxes/c-exit/stdout", 1, 1))
		if r.ReadFile.Size_ != 3 || string(r.ReadFile.Data) != "i" {
			t.Fatalf("partial read %+v", r.ReadFile)
		}
		r = h.mustGet(calls.ReadFile("/sandboxes/c-exit/stdout", 10))
		if r.ReadFile.Size_ != 3 || len(r.ReadFile.Data) != 0 {
			t.Fatalf("read past end %+v", r.ReadFile)
		}
		// A terminated container answers WAIT at once, as often as asked.
		if h.wait("c-exit").GetExitStatus() != wc.GetExitStatus() {
			t.Fatal("second wait differs")
		}
		// Same id again: 200, nothing new runs.
		if err := h.launch("c-exit", shellCmd("echo again"), nil); err != nil {
			t.Fatalf("relaunch: %v", err)
		}
		if got := h.readFile("/sandboxes/c-exit/stdout"); got != "hi\n" {
			t.Fatalf("relaunch ran something: %q", got)
		}
	})

	t.Run("read_file_errors", func(t *testing.T) {
		h := h.in(t)
		_, err := h.get(calls.ReadFile("/sandboxes/c-exit/nope", 0))
		if !apierrors.CodeNotFound.Matches(err) {
			t.Fatalf("missing file: %v", err)
		}
		for _, p := range []string{"/etc/passwd", "/sandboxes/../../../etc/passwd", "relative/stdout", "/sandboxes/c-exit"} {
			if _, err := h.get(calls.ReadFile(p, 0)); !apierrors.CodeMalformedRequest.Matches(err) {
				t.Fatalf("%s: want 400, got %v", p, err)
			}
		}
	})

	t.Run("finished", func(t *testing.T) {
		h := h.in(t)
		h.mustLaunch("c-ok", shellCmd("true"), nil)
		wc := h.wait("c-ok")
		if wc.GetExitStatus() != 0 || wc.GetState() != mesos.TASK_FINISHED || wc.Reason != nil {
			t.Fatalf("wait %+v", wc)
		}
	})

	t.Run("leftover_group_members_killed", func(t *testing.T) {
		h := h.in(t)
		h.mustLaunch("c-bg", shellCmd("sleep 300 & echo $! > bgpid; exit 0"), nil)
		if wc := h.wait("c-bg"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("%+v", wc)
		}
		var pid int
		fmt.Sscan(h.readFile("/sandboxes/c-bg/bgpid"), &pid)
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
				break // killed, waiting for init to reap it
			}
			if time.Now().After(deadline) {
				t.Fatalf("background process %d survived its container", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("kill_sigterm_trap", func(t *testing.T) {
		h := h.in(t)
		h.mustLaunch("c-term", shellCmd("trap 'exit 7' TERM; echo ready; sleep 100 & wait"), nil)
		h.waitForFile("/sandboxes/c-term/stdout", "ready")
		if err := h.send(killCall("c-term", sig32(syscall.SIGTERM))); err != nil {
			t.Fatal(err)
		}
		wc := h.wait("c-term")
		ws := syscall.WaitStatus(wc.GetExitStatus())
		if !ws.Exited() || ws.ExitStatus() != 7 || wc.GetState() != mesos.TASK_KILLED {
			t.Fatalf("wait %+v (status %#x)", wc, wc.GetExitStatus())
		}
	})

	t.Run("kill_default_sigkill_and_containers", func(t *testing.T) {
		h := h.in(t)
		h.mustLaunch("c-kill", shellCmd("sleep 100"), nil)
		// Not listed unless show_standalone is set, as in Mesos.
		if cs := h.mustGet(calls.GetContainers()).GetContainers.Containers; len(cs) != 0 {
			t.Fatalf("listed without show_standalone: %v", cs)
		}
		gc := calls.GetContainers()
		yes := true
		gc.GetContainers = &agent.Call_GetContainers{ShowStandalone: &yes}
		var found *agent.Response_GetContainers_Container
		for _, c := range h.mustGet(gc).GetContainers.Containers {
			if c.ContainerID.Value == "c-kill" {
				c := c
				found = &c
			}
		}
		if found == nil {
			t.Fatal("running container not listed")
		}
		st := found.ResourceStatistics
		if found.ContainerStatus.GetExecutorPID() == 0 || st == nil || st.GetMemRSSBytes() == 0 || st.Timestamp == 0 || st.CPUsUserTimeSecs == nil {
			t.Fatalf("container %+v stats %+v", found, st)
		}

		// Still running: REMOVE is refused.
		if err := h.send(calls.RemoveContainer(mesos.ContainerID{Value: "c-kill"})); !apierrors.CodeMalformedRequest.Matches(err) {
			t.Fatalf("remove running: %v", err)
		}
		if err := h.send(killCall("c-kill", nil)); err != nil {
			t.Fatal(err)
		}
		wc := h.wait("c-kill")
		ws := syscall.WaitStatus(wc.GetExitStatus())
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL || wc.GetState() != mesos.TASK_KILLED {
			t.Fatalf("wait %+v", wc)
		}
		// KILL of an ended container is harmless.
		if err := h.send(killCall("c-kill", nil)); err != nil {
			t.Fatal(err)
		}
		for _, c := range h.mustGet(gc).GetContainers.Containers {
			if c.ContainerID.Value == "c-kill" {
				t.Fatal("ended container still listed")
			}
		}
	})

	t.Run("remove_then_404", func(t *testing.T) {
		h := h.in(t)
		id := mesos.ContainerID{Value: "c-exit"}
		if err := h.send(calls.RemoveContainer(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(h.a.workDir, "sandboxes", "c-exit")); !os.IsNotExist(err) {
			t.Fatalf("sandbox still there: %v", err)
		}
		_, err := h.get(calls.WaitContainer(id))
		if !apierrors.CodeNotFound.Matches(err) {
			t.Fatalf("wait after remove: %v", err)
		}
		if _, ok := err.(*apierrors.Error); !ok {
			t.Fatalf("error type %T", err)
		}
		for _, c := range []*agent.Call{calls.RemoveContainer(id), killCall("c-exit", nil), calls.WaitContainer(mesos.ContainerID{Value: "never"})} {
			if err := h.send(c); !apierrors.CodeNotFound.Matches(err) {
				t.Fatalf("%s after remove: %v", c.Type, err)
			}
		}
		// The id is free again.
		h.mustLaunch("c-exit", shellCmd("echo second"), nil)
		h.wait("c-exit")
		if got := h.readFile("/sandboxes/c-exit/stdout"); got != "second\n" {
			t.Fatalf("stdout %q", got)
		}
	})

	t.Run("image_catalog", func(t *testing.T) {
		h := h.in(t)
		ci := mesosImage("busybox:1.36")
		h.mustLaunch("c-busybox", nil, ci)
		if wc := h.wait("c-busybox"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("busybox: %+v", wc)
		}
		dockerCI := &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: &mesos.ContainerInfo_DockerInfo{Image: "docker.io/library/alpine:3.20"}}
		h.mustLaunch("c-alpine", &mesos.CommandInfo{Shell: new(bool), Arguments: []string{"-c", "echo from-args"}}, dockerCI)
		h.wait("c-alpine")
		err := h.launch("c-unknown", nil, mesosImage("foo:1"))
		if !apierrors.CodeMalformedRequest.Matches(err) || !strings.Contains(err.Error(), `image "foo:1" not found in catalog (pull failed)`) {
			t.Fatalf("unknown image: %v", err)
		}
		if _, err := h.get(calls.WaitContainer(mesos.ContainerID{Value: "c-unknown"})); !apierrors.CodeNotFound.Matches(err) {
			t.Fatalf("refused launch left a container: %v", err)
		}
		// An unknown image with a command runs the command on the host.
		h.mustLaunch("c-unknown", shellCmd("exit 0"), mesosImage("foo:1"))
		if wc := h.wait("c-unknown"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("%+v", wc)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		h := h.in(t)
		secret := "s3cr3t-value"
		ci := &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), Volumes: []mesos.Volume{
			{ContainerPath: "/etc/config/key", Mode: mesos.RO.Enum(), Source: &mesos.Volume_Source{
				Type:   mesos.Volume_Source_SECRET,
				Secret: &mesos.Secret{Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: []byte(secret)}},
			}},
			{ContainerPath: "data", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{
				Type:        mesos.Volume_Source_SANDBOX_PATH,
				SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_SELF, Path: "shared/data"},
			}},
			{ContainerPath: "/host-tmp", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{
				Type:     mesos.Volume_Source_HOST_PATH,
				HostPath: &mesos.Volume_Source_HostPath{Path: os.TempDir()},
			}},
		}}
		h.mustLaunch("c-vol", shellCmd("cat etc/config/key; echo x > data/f; test -d host-tmp/ && echo host-ok"), ci)
		if wc := h.wait("c-vol"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("%+v", wc)
		}
		if got := h.readFile("/sandboxes/c-vol/stdout"); got != secret+"host-ok\n" {
			t.Fatalf("stdout %q", got)
		}
		if got := h.readFile("/sandboxes/c-vol/shared/data/f"); got != "x\n" {
			t.Fatalf("sandbox path volume %q", got)
		}
		// The read-only secret and the host link do not stop REMOVE, and the
		// host directory behind the link survives it.
		if err := h.send(calls.RemoveContainer(mesos.ContainerID{Value: "c-vol"})); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(os.TempDir()); err != nil {
			t.Fatal(err)
		}

		bad := map[string]mesos.Volume{
			"escape": {ContainerPath: "../../outside", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET,
				Secret: &mesos.Secret{Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: []byte("x")}}}},
			"secret references must be resolved by the caller": {ContainerPath: "k", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET,
				Secret: &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: &mesos.Secret_Reference{Name: "/db/pass"}}}},
			"sandbox_path.path": {ContainerPath: "d", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SANDBOX_PATH,
				SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_SELF, Path: "../x"}}},
		}
		for want, v := range bad {
			ci := &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), Volumes: []mesos.Volume{v}}
			err := h.launch("c-badvol", shellCmd("true"), ci)
			if !apierrors.CodeMalformedRequest.Matches(err) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: %v", want, err)
			}
		}
		// A later volume may not write through an earlier HOST_PATH link.
		outside := t.TempDir()
		ci = &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), Volumes: []mesos.Volume{
			{ContainerPath: "etc", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_HOST_PATH, HostPath: &mesos.Volume_Source_HostPath{Path: outside}}},
			{ContainerPath: "etc/key", Mode: mesos.RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET,
				Secret: &mesos.Secret{Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: []byte("x")}}}},
		}}
		if err := h.launch("c-badvol", shellCmd("true"), ci); !apierrors.CodeMalformedRequest.Matches(err) {
			t.Fatalf("write through host link: %v", err)
		}
		if _, err := os.Stat(filepath.Join(outside, "key")); !os.IsNotExist(err) {
			t.Fatal("secret written outside the sandbox")
		}
	})

	t.Run("command_semantics", func(t *testing.T) {
		h := h.in(t)
		sh := "/bin/sh"
		no := false
		cmd := &mesos.CommandInfo{Shell: &no, Value: &sh, Arguments: []string{"argv0-name", "-c", `echo "$0 $FOO $MESOS_CONTAINER_ID"; echo "$MESOS_SANDBOX"; echo "$PATH"; pwd`},
			Environment: &mesos.Environment{Variables: []mesos.Environment_Variable{
				{Name: "FOO", Value: strp("bar")},
				{Name: "SEC", Type: mesos.Environment_Variable_SECRET.Enum(), Secret: &mesos.Secret{Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: []byte("v")}}},
			}},
			User: strp("somebody-else"),
		}
		h.mustLaunch("c-argv", cmd, nil)
		if wc := h.wait("c-argv"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("%+v", wc)
		}
		sandbox := filepath.Join(h.a.workDir, "sandboxes", "c-argv")
		want := "argv0-name bar c-argv\n" + sandbox + "\n" + defaultPath + "\n" + sandbox + "\n"
		if got := h.readFile("/sandboxes/c-argv/stdout"); got != want {
			t.Fatalf("stdout %q want %q", got, want)
		}

		// A program that cannot be executed: the launch succeeds, WAIT tells.
		missing := "/nonexistent/program"
		h.mustLaunch("c-noexec", &mesos.CommandInfo{Shell: &no, Value: &missing}, nil)
		wc := h.wait("c-noexec")
		ws := syscall.WaitStatus(wc.GetExitStatus())
		if ws.ExitStatus() != 127 || wc.GetState() != mesos.TASK_FAILED || wc.GetReason() != mesos.REASON_CONTAINER_LAUNCH_FAILED {
			t.Fatalf("%+v", wc)
		}
		notInPath := "no-such-program-anywhere"
		h.mustLaunch("c-nopath", &mesos.CommandInfo{Shell: &no, Value: &notInPath}, nil)
		if ws := syscall.WaitStatus(h.wait("c-nopath").GetExitStatus()); ws.ExitStatus() != 127 {
			t.Fatalf("status %v", ws)
		}
		// PATH lookup uses the container's PATH.
		sleep := "true"
		h.mustLaunch("c-path", &mesos.CommandInfo{Shell: &no, Value: &sleep}, nil)
		if wc := h.wait("c-path"); wc.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("%+v", wc)
		}
		// Nested ids and ids that are paths are refused.
		for _, id := range []mesos.ContainerID{{Value: "a/b"}, {Value: ".."}, {Value: ""}, {Value: "child", Parent: &mesos.ContainerID{Value: "p"}}} {
			err := h.send(calls.LaunchContainer(id, shellCmd("true"), nil, nil))
			if !apierrors.CodeMalformedRequest.Matches(err) {
				t.Fatalf("id %+v: %v", id, err)
			}
		}
	})
}

func strp(s string) *string { return &s }

func mesosImage(name string) *mesos.ContainerInfo {
	return &mesos.ContainerInfo{
		Type: mesos.ContainerInfo_MESOS.Enum(),
		Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{
			Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{Name: name},
		}},
	}
}

func TestCustomCatalog(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.json")
	os.WriteFile(cat, []byte(`{"images": {
		"envtest:2": {"entrypoint": ["/bin/sh", "-c"], "command": ["echo $FOO $BAR > out; pwd"], "env": {"FOO": "from-image", "BAR": "image"}, "workingDir": "/app"},
		"*": {"command": ["/bin/sh", "-c", "echo fallback"]}
	}}`), 0o644)
	h := newHarness(t, nil, func(c *Config) { c.ImageCatalog = cat })
	h.mustLaunch("c1", &mesos.CommandInfo{Environment: &mesos.Environment{Variables: []mesos.Environment_Variable{{Name: "BAR", Value: strp("cmd")}}}},
		mesosImage("registry.example.com:5000/envtest:2"))
	if wc := h.wait("c1"); wc.GetState() != mesos.TASK_FINISHED {
		t.Fatalf("%+v", wc)
	}
	if got := h.readFile("/sandboxes/c1/app/out"); got != "from-image cmd\n" {
		t.Fatalf("out %q", got)
	}
	if got := h.readFile("/sandboxes/c1/stdout"); !strings.HasSuffix(got, "/sandboxes/c1/app\n") {
		t.Fatalf("pwd %q", got)
	}
	h.mustLaunch("c2", nil, mesosImage("anything:latest"))
	h.wait("c2")
	if got := h.readFile("/sandboxes/c2/stdout"); got != "fallback\n" {
		t.Fatalf("fallback %q", got)
	}
}

func TestCatalogLookup(t *testing.T) {
	c, err := DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"busybox", "busybox:1.36", "docker.io/library/busybox:1.36", "python:3.12@sha256:abcd", "ubuntu", "debian:12", "alpine"} {
		if _, _, ok := c.Lookup(n); !ok {
			t.Errorf("%s not found", n)
		}
	}
	for _, n := range []string{"foo:1", "quay.io/busybox2", "localhost:5000/nginx"} {
		if _, _, ok := c.Lookup(n); ok {
			t.Errorf("%s found", n)
		}
	}
	c.Images["busybox:1.36"] = ImageConfig{Command: []string{"tagged"}}
	if cfg, key, _ := c.Lookup("busybox:1.36"); key != "busybox:1.36" || cfg.Command[0] != "tagged" {
		t.Errorf("tag not preferred: %s", key)
	}
	if got := imageCandidates("localhost:5000/app:v1"); strings.Join(got, ",") != "localhost:5000/app:v1,app:v1,localhost:5000/app,app" {
		t.Errorf("candidates %v", got)
	}
}

func TestParseResourcesAttributes(t *testing.T) {
	rs, err := ParseResources("cpus:4;mem:8192;disk(role1):20480;ports:[31000-32000,33000-33001];gpus:0;zones:{a,b}")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 6 || rs[2].GetRole() != "role1" || rs[3].Ranges.Range[1].End != 33001 || rs[5].Set.Item[1] != "b" || rs[4].GetType() != mesos.SCALAR {
		t.Fatalf("%+v", rs)
	}
	if _, err := ParseResources("cpus"); err == nil {
		t.Fatal("no value accepted")
	}
	if _, err := ParseResources("name:text"); err == nil {
		t.Fatal("text resource accepted")
	}
	as, err := ParseAttributes("zone:us-east-1a;rack:12;ports:[1-2]")
	if err != nil {
		t.Fatal(err)
	}
	if as[0].Type != mesos.TEXT || as[1].Type != mesos.SCALAR || as[1].Scalar.Value != 12 || as[2].Type != mesos.RANGES {
		t.Fatalf("%+v", as)
	}
	if _, err := ParseAttributes("s:{a,b}"); err == nil {
		t.Fatal("set attribute accepted")
	}
}

// TestWireProtocol checks status codes and headers byte by byte, where
// mesos-go would hide them.
func TestWireProtocol(t *testing.T) {
	h := newHarness(t, nil)
	url := h.srv.URL + "/api/v1"
	post := func(ct, accept string, call *agent.Call) *http.Response {
		t.Helper()
		codec := codecs.ByMediaType[encoding.MediaType(ct)]
		var body strings.Builder
		if codec.NewEncoder != nil {
			if err := codec.NewEncoder(encoding.SinkWriter(&body)).Encode(call); err != nil {
				t.Fatal(err)
			}
		} else {
			body.WriteString("whatever")
		}
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body.String()))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	pb, js := string(codecs.MediaTypeProtobuf), string(codecs.MediaTypeJSON)
	expect := func(res *http.Response, code int, ct string, emptyBody bool) {
		t.Helper()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != code || res.Header.Get("Content-Type") != ct || (emptyBody && len(b) != 0) {
			t.Fatalf("got %d %q body %q; want %d %q", res.StatusCode, res.Header.Get("Content-Type"), b, code, ct)
		}
	}

	res, _ := http.Get(url)
	expect(res, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", false)
	expect(post("", "", calls.GetHealth()), http.StatusBadRequest, "text/plain; charset=utf-8", false)
	expect(post("text/plain", "", calls.GetHealth()), http.StatusUnsupportedMediaType, "text/plain; charset=utf-8", false)
	expect(post(pb, "text/html", calls.GetHealth()), http.StatusNotAcceptable, "text/plain; charset=utf-8", false)
	expect(post(pb, "", &agent.Call{}), http.StatusBadRequest, "text/plain; charset=utf-8", false)
	expect(post(js, "", calls.GetState()), http.StatusNotImplemented, "text/plain; charset=utf-8", false)

	expect(post(pb, "", calls.GetHealth()), http.StatusOK, pb, false)
	expect(post(js, "", calls.GetHealth()), http.StatusOK, js, false)
	expect(post(js, pb, calls.GetHealth()), http.StatusOK, pb, false)
	expect(post(pb, "application/json;q=0.9, */*;q=0.1", calls.GetHealth()), http.StatusOK, pb, false)
	expect(post(pb, js, calls.GetHealth()), http.StatusOK, js, false)

	launch := calls.LaunchContainer(mesos.ContainerID{Value: "w1"}, shellCmd("sleep 100"), nil, nil)
	expect(post(pb, pb, launch), launchNewStatus, "", true)
	expect(post(js, js, launch), launchExistsStatus, "", true)
	expect(post(pb, pb, calls.RemoveContainer(mesos.ContainerID{Value: "w1"})), http.StatusBadRequest, "text/plain; charset=utf-8", false)
	expect(post(pb, pb, killCall("w1", nil)), http.StatusOK, "", true)
	expect(post(pb, pb, calls.WaitContainer(mesos.ContainerID{Value: "w1"})), http.StatusOK, pb, false)
	expect(post(pb, pb, calls.RemoveContainer(mesos.ContainerID{Value: "w1"})), http.StatusOK, "", true)
	expect(post(pb, pb, calls.WaitContainer(mesos.ContainerID{Value: "w1"})), http.StatusNotFound, "text/plain; charset=utf-8", false)
	expect(post(pb, pb, killCall("w1", nil)), http.StatusNotFound, "text/plain; charset=utf-8", false)
}

// TestWaitReturnsOnDisconnect: a long-poll whose client goes away must not
// keep a handler (and its goroutine) alive.
func TestWaitReturnsOnDisconnect(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("long", shellCmd("sleep 100"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.sender.Send(ctx, calls.NonStreaming(calls.WaitContainer(mesos.ContainerID{Value: "long"})))
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.active.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h.active.Load() != 1 {
		t.Fatal("wait never reached the handler")
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled wait returned no error")
	}
	for h.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("handler still running after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestScaleNoFDPerContainer launches many containers and parks a WAIT on
// each: the agent itself must hold no descriptor per container, and every
// exit must be reaped and routed to the right container.
func TestScaleNoFDPerContainer(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 50
	}
	h := newHarness(t, nil)
	before := countOpenFDs()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// The exit code encodes the container, so misrouted exits show.
			errs <- h.launch(fmt.Sprintf("s-%d", i), shellCmd(fmt.Sprintf("trap 'exit %d' TERM; echo ready; sleep 100 & wait", i%200)), nil)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Idle keep-alive connections of the test client may linger; allow a few.
	if after := countOpenFDs(); after-before > 10 {
		t.Fatalf("open fds grew from %d to %d with %d running containers", before, after, n)
	}
	// Signal only once every trap is installed.
	for i := 0; i < n; i++ {
		p := filepath.Join(h.a.sandboxRoot, fmt.Sprintf("s-%d", i), "stdout")
		deadline := time.Now().Add(20 * time.Second)
		for {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "ready") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got ready", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	type result struct {
		i  int
		wc *agent.Response_WaitContainer
		e  error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			r, err := h.get(calls.WaitContainer(mesos.ContainerID{Value: fmt.Sprintf("s-%d", i)}))
			if err != nil {
				results <- result{i, nil, err}
				return
			}
			results <- result{i, r.WaitContainer, nil}
		}(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.active.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Each parked WAIT costs its connection: one fd on each side in this
	// process, nothing else.
	if during := countOpenFDs(); during-before > 2*n+10 {
		t.Fatalf("open fds %d -> %d with %d waits parked", before, during, n)
	}
	for i := 0; i < n; i++ {
		if err := h.send(killCall(fmt.Sprintf("s-%d", i), sig32(syscall.SIGTERM))); err != nil {
			t.Fatal(err)
		}
	}
	for k := 0; k < n; k++ {
		r := <-results
		if r.e != nil {
			t.Fatalf("wait %d: %v", r.i, r.e)
		}
		ws := syscall.WaitStatus(r.wc.GetExitStatus())
		if !ws.Exited() || ws.ExitStatus() != r.i%200 || r.wc.GetState() != mesos.TASK_KILLED {
			t.Fatalf("container %d: status %#x state %s", r.i, r.wc.GetExitStatus(), r.wc.GetState())
		}
	}
}

// TestForeignChildrenLeftAlone: children started by other code in the same
// process (os/exec) must still be reapable by their owner, and the agent
// must keep reaping its own containers meanwhile.
func TestForeignChildrenLeftAlone(t *testing.T) {
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("sh", "-c", "exit 4")
			if err := cmd.Start(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(300 * time.Millisecond) // stay a zombie for a while
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 {
				t.Errorf("foreign child: %v", err)
			}
		}()
	}
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("f-%d", i)
		h.mustLaunch(id, shellCmd(fmt.Sprintf("exit %d", i)), nil)
		if ws := syscall.WaitStatus(h.wait(id).GetExitStatus()); ws.ExitStatus() != i {
			t.Fatalf("%s: %v", id, ws)
		}
	}
	wg.Wait()
}

func TestCloseKillsContainers(t *testing.T) {
	h := newHarness(t, nil)
	h.mustLaunch("bye", shellCmd("sleep 100"), nil)
	done := make(chan *agent.Response_WaitContainer, 1)
	go func() { done <- h.wait("bye") }()
	time.Sleep(50 * time.Millisecond)
	h.a.Close()
	select {
	case wc := <-done:
		if wc.GetState() != mesos.TASK_KILLED || syscall.WaitStatus(wc.GetExitStatus()).Signal() != syscall.SIGKILL {
			t.Fatalf("%+v", wc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait not answered after Close")
	}
	err := h.launch("after", shellCmd("true"), nil)
	if !apierrors.CodeMesosUnavailable.Matches(err) {
		t.Fatalf("launch after close: %v", err)
	}
}
