//go:build linux

package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentpb "github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/sirupsen/logrus"
)

// testAPIEnv makes the test binary run an agent API process (as
// cmd/legacy-agent would) instead of the tests, so a test can SIGKILL a
// real agent process and start another.
const testAPIEnv = "LEGACY_AGENT_TEST_API"

func TestMain(m *testing.M) {
	MaybeSupervise() // the re-executed supervisor never returns from here
	if js := os.Getenv(testAPIEnv); js != "" {
		os.Exit(runTestAPI(js))
	}
	os.Exit(m.Run())
}

func runTestAPI(js string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logrus.SetLevel(logrus.DebugLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

type apiProc struct {
	t       *testing.T
	workDir string
	port    int
	cmd     *exec.Cmd
	h       *harness
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAPI starts the agent API as a child process in its own process
// group, like stack.sh does, and waits until it answers GET_HEALTH.
func startAPI(t *testing.T, workDir string, port int, mode string) *apiProc {
	t.Helper()
	cfg := Config{WorkDir: workDir, Listen: fmt.Sprintf("127.0.0.1:%d", port), AgentID: "agent-test", Recover: mode}
	js, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testAPIEnv+"="+string(js))
	logf, err := os.OpenFile(filepath.Join(workDir, "api.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &apiProc{t: t, workDir: workDir, port: port, cmd: cmd}
	p.h = &harness{t: t, sender: newSender(fmt.Sprintf("http://127.0.0.1:%d", port), nil)}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := p.h.sender.Send(ctx, calls.NonStreaming(calls.GetHealth()))
		cancel()
		if err == nil {
			resp.Close()
			return p
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(workDir, "api.log"))
			sb, _ := os.ReadFile(filepath.Join(workDir, supervisorLogFile))
			t.Fatalf("agent did not come up: %v\n%s\nsupervisor.log:\n%s", err, b, sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crash SIGKILLs the API process and its group, as `stack.sh kill` does.
func (p *apiProc) crash() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *apiProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.crash()
	}
}

func supervisorPid(workDir string) int {
	b, _ := os.ReadFile(filepath.Join(workDir, supervisorPidFile))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processesUnder lists the processes whose working directory is in dir:
// what stack.sh's sweep_agent_orphans kills.
func processesUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, ok := processCwd(pid); ok && within(dir, cwd) && !procIsZombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func sweep(t *testing.T, workDir string) {
	for _, pid := range processesUnder(workDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func assertNothingUnder(t *testing.T, workDir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := processesUnder(workDir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind under %s: %v", workDir, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !procIsZombie(pid)
}

func containerPids(t *testing.T, h *harness) map[string]int {
	t.Helper()
	gc := calls.GetContainers()
	yes := true
	gc.GetContainers = &agentpb.Call_GetContainers{ShowStandalone: &yes}
	r := h.mustGet(gc)
	out := map[string]int{}
	for _, c := range r.GetContainers.Containers {
		out[c.ContainerID.Value] = int(c.GetContainerStatus().GetExecutorPID())
	}
	return out
}

func readLaunchLog(t *testing.T, workDir string) []launchLine {
	t.Helper()
	f, err := os.Open(filepath.Join(workDir, launchLogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []launchLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l launchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("launches.log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func waitExitLogged(t *testing.T, workDir, id string) launchLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range readLaunchLog(t, workDir) {
			if l.Event == "exit" && l.ID == id {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no exit of %s in launches.log", id)
	return launchLine{}
}

func recoveryWorkDir(t *testing.T) string {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pid := supervisorPid(dir); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		sweep(t, dir)
	})
	return dir
}

// TestRecoverReconnect: the agent process is SIGKILLed and restarted; the
// running containers are re-attached, an exit that happened meanwhile is
// reported, and KILL/WAIT/REMOVE/READ_FILE work on recovered containers.
func TestRecoverReconnect(t *testing.T) {
	dir := recoveryWorkDir(t)
	port := freePort(t)
	p := startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	h := p.h
	h.mustLaunch("run", shellCmd("echo hello; exec sleep 100"), nil)
	h.mustLaunch("killme", shellCmd("exec sleep 100"), nil)
	h.mustLaunch("seven", shellCmd("while [ ! -e go ]; do sleep 0.02; done; exit 7"), nil)
	h.waitForFile("/sandboxes/run/stdout", "hello")
	before := containerPids(t, h)
	if len(before) != 3 {
		t.Fatalf("GET_CONTAINERS before the crash: %v", before)
	}

	p.crash()
	// While the agent is down: "seven" ends with 7, "run" keeps running.
	if err := os.WriteFile(filepath.Join(dir, "sandboxes", "seven", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if l := waitExitLogged(t, dir, "seven"); *l.Code != 7 || *l.Signal != 0 || l.Pid != before["seven"] {
		t.Fatalf("launches.log exit of seven: %+v", l)
	}
	if !pidAlive(before["run"]) {
		t.Fatal("container died with the agent")
	}
	// A sandbox no container owns (a launch the agent died in before its
	// process started) is collected by the restarted agent.
	if err := os.MkdirAll(filepath.Join(dir, "sandboxes", "orphaned", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}

	p = startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	h = p.h
	after := containerPids(t, h)
	if after["run"] != before["run"] || after["killme"] != before["killme"] || len(after) != 2 {
		t.Fatalf("GET_CONTAINERS after recovery %v; before %v", after, before)
	}
	w := h.wait("seven")
	if ws := syscall.WaitStatus(w.GetExitStatus()); !ws.Exited() || ws.ExitStatus() != 7 || w.GetState() != mesos.TASK_FAILED {
		t.Fatalf("WAIT seven = %v", w)
	}
	if got := h.readFile("/sandboxes/run/stdout"); got != "hello\n" {
		t.Fatalf("READ_FILE of a recovered sandbox: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "sandboxes", "orphaned")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the orphaned sandbox survived the recovery: %v", err)
	}
	if err := h.send(calls.RemoveContainer(mesos.ContainerID{Value: "seven"})); err != nil {
		t.Fatalf("REMOVE seven: %v", err)
	}

	// KILL, WAIT, REMOVE on a recovered container.
	if err := h.send(killCall("killme", sig32(syscall.SIGTERM))); err != nil {
		t.Fatalf("KILL: %v", err)
	}
	w = h.wait("killme")
	if ws := syscall.WaitStatus(w.GetExitStatus()); !ws.Signaled() || ws.Signal() != syscall.SIGTERM || w.GetState() != mesos.TASK_KILLED {
		t.Fatalf("WAIT killme = %v", w)
	}
	if err := h.send(calls.RemoveContainer(mesos.ContainerID{Value: "killme"})); err != nil {
		t.Fatalf("REMOVE killme: %v", err)
	}
	if _, err := h.get(calls.WaitContainer(mesos.ContainerID{Value: "killme"})); !apierrors.CodeNotFound.Matches(err) {
		t.Fatalf("WAIT after REMOVE: %v", err)
	}
	if pidAlive(before["killme"]) {
		t.Fatal("killed container still runs")
	}
	// The id is free again, in the supervisor too.
	h.mustLaunch("killme", shellCmd("exit 0"), nil)
	if w := h.wait("killme"); w.GetState() != mesos.TASK_FINISHED {
		t.Fatalf("relaunch: %v", w)
	}

	// A graceful stop leaves the container running; a restart finds it
	// again; WAIT blocks until it really ends.
	p.stop()
	if !pidAlive(before["run"]) {
		t.Fatal("SIGTERM of the agent killed a container")
	}
	p = startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	h = p.h
	if got := containerPids(t, h); got["run"] != before["run"] {
		t.Fatalf("after a graceful restart: %v", got)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := h.get(calls.WaitContainer(mesos.ContainerID{Value: "run"}))
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("WAIT of a live recovered container returned early: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := h.send(killCall("run", sig32(syscall.SIGKILL))); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WAIT run: %v", err)
	}

	// Every launch in the log has its exit, with WAIT's code.
	launched, exited := map[string]int{}, map[string]int{}
	for _, l := range readLaunchLog(t, dir) {
		if l.Event == "launch" {
			launched[l.ID+"/"+strconv.Itoa(l.Pid)]++
		} else {
			exited[l.ID+"/"+strconv.Itoa(l.Pid)]++
			if l.ID == "run" && (*l.Code != 137 || *l.Signal != 9) {
				t.Fatalf("exit line of run: %+v", l)
			}
		}
	}
	if len(launched) != 4 || fmt.Sprint(launched) != fmt.Sprint(exited) {
		t.Fatalf("launches %v, exits %v", launched, exited)
	}

	p.stop()
	if pid := supervisorPid(dir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	assertNothingUnder(t, dir)
}

// TestRecoverCleanup: --recover=cleanup kills what the crashed agent left;
// and when the supervisor is gone too, the orphans are killed (never left
// running) and WAIT says they were killed at recovery.
func TestRecoverCleanup(t *testing.T) {
	dir := recoveryWorkDir(t)
	port := freePort(t)
	p := startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	p.h.mustLaunch("a", shellCmd("exec sleep 100"), nil)
	p.h.mustLaunch("b", shellCmd("sleep 100; true"), nil)
	before := containerPids(t, p.h)
	p.crash()

	p = startAPI(t, dir, port, RecoverCleanup)
	t.Cleanup(p.crash)
	h := p.h
	for _, id := range []string{"a", "b"} {
		w := h.wait(id)
		ws := syscall.WaitStatus(w.GetExitStatus())
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL || w.GetState() != mesos.TASK_KILLED ||
			w.GetReason() != mesos.REASON_AGENT_RESTARTED || !strings.Contains(w.GetMessage(), "recovery") {
			t.Fatalf("WAIT %s after cleanup = %v", id, w)
		}
		if pidAlive(before[id]) {
			t.Fatalf("container %s still runs after cleanup", id)
		}
		if err := h.send(calls.RemoveContainer(mesos.ContainerID{Value: id})); err != nil {
			t.Fatalf("REMOVE %s: %v", id, err)
		}
	}
	if got := containerPids(t, h); len(got) != 0 {
		t.Fatalf("GET_CONTAINERS after cleanup: %v", got)
	}

	// Supervisor and agent both gone: the orphan is killed at recovery
	// (its pid verified by start time first), and WAIT says so.
	h.mustLaunch("orphan", shellCmd("exec sleep 100"), nil)
	opid := containerPids(t, h)["orphan"]
	p.crash()
	if err := syscall.Kill(supervisorPid(dir), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if !pidAlive(opid) {
		t.Fatal("container died with its supervisor")
	}
	p = startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	w := p.h.wait("orphan")
	if ws := syscall.WaitStatus(w.GetExitStatus()); !ws.Signaled() || ws.Signal() != syscall.SIGKILL ||
		w.GetState() != mesos.TASK_KILLED || !strings.Contains(w.GetMessage(), "killed during agent recovery") {
		t.Fatalf("WAIT orphan = %v", w)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(opid) {
		if time.Now().After(deadline) {
			t.Fatal("orphaned container left running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := waitExitLogged(t, dir, "orphan"); *l.Code != 137 {
		t.Fatalf("launches.log exit of orphan: %+v", l)
	}
	p.stop()
	if pid := supervisorPid(dir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	assertNothingUnder(t, dir)
}

// TestRecoverSessions: an exec session in a supervised container works, and
// does not outlive a crash of the agent process (sessions are not recovered,
// as in Mesos); the container itself does.
func TestRecoverSessions(t *testing.T) {
	dir := recoveryWorkDir(t)
	port := freePort(t)
	p := startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	p.h.mustLaunch("p", shellCmd("exec sleep 100"), nil)
	cpid := containerPids(t, p.h)["p"]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := p.h.startSession(ctx, nestedID("p", "s"), shellCmd("echo $$ $MESOS_CONTAINER_ID; exec sleep 100"), nil)
	var pio agentpb.ProcessIO
	if err := res.Decode(&pio); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pio.GetData().GetData()))
	if len(f) != 2 || f[1] != "p" {
		t.Fatalf("session said %q", pio.GetData().GetData())
	}
	spid, _ := strconv.Atoi(f[0])
	p.crash()
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(spid) {
		if time.Now().After(deadline) {
			t.Fatal("exec session outlived the agent process")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !pidAlive(cpid) {
		t.Fatal("container died with the agent process")
	}
	p = startAPI(t, dir, port, RecoverReconnect)
	t.Cleanup(p.crash)
	if err := p.h.send(killCall("p", sig32(syscall.SIGKILL))); err != nil {
		t.Fatal(err)
	}
	p.h.wait("p")
	p.stop()
	if pid := supervisorPid(dir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	assertNothingUnder(t, dir)
}
