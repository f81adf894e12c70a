package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/chaos"
	"github.com/vk-titus/vk-titus/integration/stack"
	"github.com/vk-titus/vk-titus/provider"
	"github.com/vk-titus/vk-titus/translate"
)

// The fault suite. The tests run in this order (go test runs a file's
// tests in source order); each restores what it killed before it returns.
// Durations are bounds on waits, never assertions.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// 1. vk-titus SIGKILLed in the middle of a burst of 200 bare pods; once
// restarted, every pod reaches its end state with its real exit code, each
// container ran exactly once, and deleting them leaves nothing behind.
func TestFaultVKKilledMidBurst(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "burst")
	restore(t, "vk-titus")
	n := envInt("FAULT_BURST", 200)
	group := "burst"
	var mu sync.Mutex
	var created []*corev1.Pod
	createRange := func(from, to int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 20)
		for i := from; i < to; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				code := 0
				if i%2 == 1 {
					code = 7
				}
				p, err := client.CoreV1().Pods(ns).Create(context.Background(), faultPod(fmt.Sprintf("burst-%03d", i), group, fmt.Sprintf("sleep 20; exit %d", code)), metav1.CreateOptions{})
				if err != nil {
					t.Errorf("create burst-%03d: %v", i, err)
					return
				}
				mu.Lock()
				created = append(created, p)
				mu.Unlock()
			}(i)
		}
		wg.Wait()
	}
	createRange(0, n/2)
	// Kill as soon as the agent has launched some of them: vk-titus is then
	// busy launching the rest.
	deadline := time.Now().Add(60 * time.Second)
	for launchLogPresent() && time.Now().Before(deadline) {
		runs, _ := chaos.ReadLaunchLogs(agentDirs()...)
		mu.Lock()
		uids := podUIDsOf(created...)
		mu.Unlock()
		if len(chaos.FilterRuns(runs, uids.owns)) >= n/10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	createRange(n/2, n)
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	uids := podUIDsOf(created...)
	ended := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	deadline = time.Now().Add(6 * time.Minute)
	var pods []corev1.Pod
	for {
		pods = podsByLabel(t, group)
		done := 0
		for i := range pods {
			if ended(&pods[i]) {
				done++
			}
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods ended within 6 min of vk-titus's restart", done, n)
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range pods {
		var i int
		fmt.Sscanf(p.Name, "burst-%d", &i)
		want, phase := int32(0), corev1.PodSucceeded
		if i%2 == 1 {
			want, phase = 7, corev1.PodFailed
		}
		if p.Status.Phase != phase {
			t.Errorf("pod %s: %s (%s), want %s", p.Name, p.Status.Phase, p.Status.Message, phase)
		}
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
			t.Errorf("pod %s: no terminated state: %+v", p.Name, p.Status.ContainerStatuses)
		} else if got := p.Status.ContainerStatuses[0].State.Terminated.ExitCode; got != want {
			t.Errorf("pod %s: exit code %d, want %d", p.Name, got, want)
		}
	}
	// Once each: one run per pod container (restartPolicy Never).
	perKey := map[string]int{}
	for _, r := range runsOf(t, uids) {
		perKey[chaos.PodContainerKey(r.ID)]++
	}
	for _, p := range pods {
		if c := perKey[translate.ContainerID(p.UID, "main")]; c != 1 {
			t.Errorf("pod %s: its container ran %d times, want once", p.Name, c)
		}
	}
	checkNoDuplicate(t, uids)
	checkExitCodes(t, uids, pods)
	if err := client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "fault=" + group}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(3 * time.Minute)
	for len(podsByLabel(t, group)) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if left := len(podsByLabel(t, group)); left > 0 {
		t.Errorf("%d pods not gone 3 min after their deletion", left)
	}
	checkNoOrphan(t, uids, time.Minute)
}

// 2. vk-titus SIGKILLed right after the agent launched a container, and the
// pod deleted while vk-titus is down: once restarted, vk-titus kills and
// removes the container.
func TestFaultVKKilledAfterLaunch(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "after-launch")
	restore(t, "vk-titus")
	token := fmt.Sprintf("vkt-fault-afterlaunch-%d", time.Now().UnixNano())
	p := create(t, faultPod("after-launch", "after-launch", "sleep 600; : "+token))
	id := translate.ContainerID(p.UID, "main")
	if _, ok := waitLaunched(t, id, 60*time.Second); !ok {
		t.Logf("no launch in the launch logs (none written?): waiting for the process instead")
		deadline := time.Now().Add(60 * time.Second)
		for len(processesWith(token)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p.Name, 2*time.Minute)
	waitNoProcess(t, token, time.Minute)
	checkNoOrphan(t, podUIDsOf(p), time.Minute)
	checkNoDuplicate(t, podUIDsOf(p))
}

// 3. A crash during a restart back-off: the container keeps exiting 1;
// vk-titus dies while the pod is in CrashLoopBackOff. Once restarted: one
// live run at a time, restartCount never goes back, delete leaves nothing.
func TestFaultVKKilledInCrashLoopBackOff(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "crashloop")
	restore(t, "vk-titus")
	pod := faultPod("crashloop", "crashloop", "sleep 1; exit 1")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	p := create(t, pod)
	p = waitPod(t, p.Name, 2*time.Minute, "in CrashLoopBackOff after a restart", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount >= 1 && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
				return true
			}
		}
		return false
	})
	rc := p.Status.ContainerStatuses[0].RestartCount
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	// Watch it crash on for a while: the count only grows.
	last := rc
	for end := time.Now().Add(40 * time.Second); time.Now().Before(end); {
		q, err := client.CoreV1().Pods(ns).Get(context.Background(), p.Name, metav1.GetOptions{})
		if err == nil && len(q.Status.ContainerStatuses) == 1 {
			got := q.Status.ContainerStatuses[0].RestartCount
			if got < last {
				t.Errorf("restartCount went back from %d to %d", last, got)
			}
			last = max(last, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("restartCount %d before the crash, %d 40 s after the restart", rc, last)
	if last <= rc {
		t.Errorf("the container was not restarted again after vk-titus came back (restartCount %d)", last)
	}
	uids := podUIDsOf(p)
	checkNoDuplicate(t, uids)
	q, _ := client.CoreV1().Pods(ns).Get(context.Background(), p.Name, metav1.GetOptions{})
	checkExitCodes(t, uids, []corev1.Pod{*q})
	// Runs are numbered without gaps or repeats: -r0 … -rN each launched once.
	seen := map[int]int{}
	for _, r := range runsOf(t, uids) {
		seen[chaos.RunIndex(r.ID)]++
	}
	for i, c := range seen {
		if c != 1 {
			t.Errorf("run %d launched %d times", i, c)
		}
	}
	deletePods(t, []string{p.Name}, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 7. A pod deleted and a pod of the same name created at once: the new pod
// runs its own container, the old one's is killed and removed, and the new
// one is not touched by the old one's deletion.
func TestFaultSameNamePodRecreated(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "twin")
	tokOld := fmt.Sprintf("vkt-fault-twin-old-%d", time.Now().UnixNano())
	tokNew := fmt.Sprintf("vkt-fault-twin-new-%d", time.Now().UnixNano())
	old := create(t, faultPod("twin", "twin", "sleep 600; : "+tokOld))
	waitPod(t, "twin", time.Minute, "Running", phaseIs(corev1.PodRunning))
	// Forced delete: the name is free at once, as with a controller that
	// recreates a pod under the same name.
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), "twin", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	var neu *corev1.Pod
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := client.CoreV1().Pods(ns).Create(context.Background(), faultPod("twin", "twin", "sleep 600; : "+tokNew), metav1.CreateOptions{})
		if err == nil {
			neu = p
			break
		}
		if !apierrors.IsAlreadyExists(err) || time.Now().After(deadline) {
			t.Fatalf("recreate twin: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitPod(t, "twin", time.Minute, "Running (the new one)", func(p *corev1.Pod) bool { return p.UID == neu.UID && runningNoRestart(p) })
	waitNoProcess(t, tokOld, time.Minute)
	checkNoOrphan(t, podUIDsOf(old), time.Minute)
	newPids := pidsOf(tokNew)
	if len(processesWith(tokNew)) != 1 {
		t.Fatalf("the new pod's process: %s", newPids)
	}
	time.Sleep(10 * time.Second)
	if got := pidsOf(tokNew); got != newPids {
		t.Errorf("the new pod's process changed after the old one's deletion: %s → %s", newPids, got)
	}
	stillRunning(t, "twin")
	uids := podUIDsOf(old, neu)
	checkNoDuplicate(t, uids)
	if launchLogPresent() {
		for _, r := range runsOf(t, podUIDsOf(neu)) {
			if !r.Alive || r.ID != translate.ContainerID(neu.UID, "main") {
				t.Errorf("the new pod's run: %s", r)
			}
		}
	}
	deletePods(t, []string{"twin"}, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 8. A native sidecar (an init container with restartPolicy Always) starts
// and keeps running, the app container runs and completes, then the
// sidecar is terminated and the pod Succeeds.
func TestFaultNativeSidecar(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "sidecar")
	always := corev1.ContainerRestartPolicyAlways
	pod := faultPod("sidecar", "sidecar", "sleep 5; echo app done; exit 0")
	side := pod.Spec.Containers[0]
	side.Name = "sidecar"
	side.Command = []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"}
	side.RestartPolicy = &always
	pod.Spec.InitContainers = []corev1.Container{side}
	p := create(t, pod)
	waitPod(t, p.Name, time.Minute, "sidecar running with the app", func(p *corev1.Pod) bool {
		return len(p.Status.InitContainerStatuses) == 1 && p.Status.InitContainerStatuses[0].State.Running != nil &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	p = waitPod(t, p.Name, 2*time.Minute, "Succeeded", phaseIs(corev1.PodSucceeded))
	if st := p.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil {
		t.Errorf("the sidecar is not terminated in a Succeeded pod: %+v", st)
	}
	if st := p.Status.ContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 0 {
		t.Errorf("app container: %+v", st)
	}
	uids := podUIDsOf(p)
	if launchLogPresent() {
		var app, sc *chaos.Run
		for _, r := range runsOf(t, uids) {
			r := r
			switch r.ID {
			case translate.ContainerID(p.UID, "main"):
				app = &r
			case translate.ContainerID(p.UID, "sidecar"):
				sc = &r
			}
		}
		switch {
		case app == nil || sc == nil:
			t.Errorf("launch log: app run %v, sidecar run %v", app, sc)
		case sc.Start.After(app.Start):
			t.Errorf("the sidecar started after the app: %s, %s", sc, app)
		case !sc.Exited || !app.Exited || sc.End.Before(app.End):
			t.Errorf("the sidecar must end after the app: %s, %s", sc, app)
		}
		if sc != nil && sc.Exited && sc.Signal == 0 && sc.Code == 0 {
			// trap TERM → exit 0: it was asked to stop.
		} else if sc != nil {
			t.Logf("sidecar ended: %s", sc)
		}
	}
	checkExitCodes(t, uids, []corev1.Pod{*p})
	checkNoDuplicate(t, uids)
	deletePods(t, []string{p.Name}, nil, time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 9. A 2 GB log: `kubectl logs --tail=100` returns exactly the last 100
// lines. vk-titus's resident memory before and after is reported.
func TestFaultHugeLogTail(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "biglog")
	size := envInt("FAULT_LOG_BYTES", 2_000_000_000) // 100-byte lines
	script := fmt.Sprintf(`yes "$(printf '%%099d' 0 | tr 0 x)" | head -c %d; exit 0`, size)
	p := create(t, faultPod("biglog", "biglog", script))
	t.Cleanup(func() { deletePods(t, []string{"biglog"}, nil, time.Minute) })
	pid, err := env.Pid("vk-titus")
	if err != nil {
		t.Fatal(err)
	}
	rssBefore, _ := stack.ProcStatus(pid, "VmRSS")
	waitPod(t, p.Name, 5*time.Minute, "Succeeded", phaseIs(corev1.PodSucceeded))
	start := time.Now()
	out := kubectl(t, "logs", "-n", ns, p.Name, "--tail=100")
	took := time.Since(start)
	rssAfter, _ := stack.ProcStatus(pid, "VmRSS")
	hwm, _ := stack.ProcStatus(pid, "VmHWM")
	t.Logf("vk-titus RSS %d MiB before, %d MiB after `kubectl logs --tail=100` of %d MB (took %s; peak RSS of the process so far %d MiB)",
		rssBefore/1024, rssAfter/1024, size/1_000_000, took.Round(time.Millisecond), hwm/1024)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 100 {
		t.Fatalf("--tail=100 returned %d lines (%d bytes)", len(lines), len(out))
	}
	want := strings.Repeat("x", 99)
	for i, l := range lines {
		if l != want {
			t.Fatalf("line %d of the tail: %q", i, l)
		}
	}
}

// 6. vk-titus restarted while an agent does not answer (SIGSTOPped): once
// it answers again its pods are re-adopted, not relaunched, and deleting
// them leaves nothing.
func TestFaultVKRestartWhileAgentUnreachable(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "frozen")
	restore(t, "agent-1", "vk-titus")
	token := fmt.Sprintf("vkt-fault-frozen-%d", time.Now().UnixNano())
	p := create(t, onAgent(faultPod("frozen-agent", "frozen", "sleep 600; : "+token), 1))
	waitPod(t, p.Name, time.Minute, "Running", runningNoRestart)
	uids := podUIDsOf(p)
	var before map[string][]chaos.Run
	if launchLogPresent() {
		before = snapshotRuns(t, uids)
	}
	pids := pidsOf(token)
	if err := env.Freeze("agent-1"); err != nil {
		t.Fatal(err)
	}
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			_ = env.Thaw("agent-1")
		}
	})
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := env.Thaw("agent-1"); err != nil {
		t.Fatal(err)
	}
	thawed = true
	waitNode(t, "agent-1", 90*time.Second, "Ready", readyNode)
	time.Sleep(10 * time.Second) // a few health checks and listings
	if got := pidsOf(token); got != pids {
		t.Errorf("the pod's process changed: %s → %s", pids, got)
	}
	stillRunning(t, p.Name)
	if before != nil {
		sameRuns(t, before, snapshotRuns(t, uids))
	}
	deletePods(t, []string{p.Name}, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 3b. Finished pods deleted while their agent is down, and the bridge
// SIGKILLed before the agent returns: the pods stay (Terminating, held by
// the bridge's finalizer) while their sandboxes cannot be removed, and once
// the restarted bridge has removed them from the returned agent the pods go
// and nothing is left behind.
func TestFaultVKKilledWithRemovalsPending(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "pending")
	restore(t, "agent-1", "vk-titus")
	var pods []*corev1.Pod
	for i := range 5 {
		pods = append(pods, create(t, onAgent(faultPod(fmt.Sprintf("pending-%d", i), "pending", "exit 0"), 1)))
	}
	for _, p := range pods {
		done := waitPod(t, p.Name, time.Minute, "Succeeded", phaseIs(corev1.PodSucceeded))
		if !slices.Contains(done.Finalizers, provider.Finalizer) {
			t.Fatalf("pod %s lacks the bridge's finalizer: %v", p.Name, done.Finalizers)
		}
	}
	uids := podUIDsOf(pods...)
	if err := env.Kill("agent-1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if err := client.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // a few REMOVE attempts
	for _, p := range pods {
		got, err := client.CoreV1().Pods(ns).Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s left the API before its sandbox was removed: %v", p.Name, err)
		}
		if got.DeletionTimestamp == nil {
			t.Fatalf("pod %s not being deleted", p.Name)
		}
	}
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := env.Start("agent-1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		waitGone(t, p.Name, 3*time.Minute)
	}
	checkNoOrphan(t, uids, time.Minute)
}

// 4a. The agent SIGKILLed and restarted with pods running, in the default
// recovery mode (reconnect): the same processes keep running, the pods
// stay Running, nothing is relaunched.
func TestFaultAgentCrashReconnect(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "reconnect")
	restore(t, "agent-0")
	token := fmt.Sprintf("vkt-fault-reconnect-%d", time.Now().UnixNano())
	var names []string
	var pods []*corev1.Pod
	for i := 0; i < envInt("FAULT_AGENT_PODS", 2); i++ {
		n := fmt.Sprintf("reconnect-%d", i)
		names = append(names, n)
		pods = append(pods, create(t, onAgent(faultPod(n, "reconnect", fmt.Sprintf("sleep 600; : %s-%d", token, i)), 0)))
	}
	for _, n := range names {
		waitPod(t, n, time.Minute, "Running", runningNoRestart)
	}
	uids := podUIDsOf(pods...)
	before := snapshotRuns(t, uids)
	pids := pidsOf(token)
	if err := env.Kill("agent-0"); err != nil {
		t.Fatal(err)
	}
	if got := pidsOf(token); got != pids {
		t.Fatalf("`stack.sh kill agent-0` took the containers with it (%s → %s): the reconnect scenario needs kill to SIGKILL the agent alone", pids, got)
	}
	if err := env.Start("agent-0"); err != nil {
		t.Fatal(err)
	}
	waitNode(t, "agent-0", 90*time.Second, "Ready", readyNode)
	time.Sleep(15 * time.Second) // several health checks and listings
	if got := pidsOf(token); got != pids {
		t.Errorf("processes changed across the agent's restart: %s → %s", pids, got)
	}
	stillRunning(t, names...)
	sameRuns(t, before, snapshotRuns(t, uids))
	checkNoDuplicate(t, uids)
	deletePods(t, names, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 4b. The same crash, the agent restarted with --recover=cleanup: it kills
// every container it finds; the pods end Failed with the real exit code
// and a reason, and nothing is left.
func TestFaultAgentCrashCleanup(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "cleanup")
	// Restart agent-0 as `up` configured it (reconnect) when done: a crash
	// and a plain start (the containers of other tests survive it).
	restore(t, "agent-0")
	t.Cleanup(func() { _ = env.Kill("agent-0") }) // runs before restore's start
	token := fmt.Sprintf("vkt-fault-cleanup-%d", time.Now().UnixNano())
	var names []string
	var pods []*corev1.Pod
	for i := 0; i < envInt("FAULT_AGENT_PODS", 2); i++ {
		n := fmt.Sprintf("cleanup-%d", i)
		names = append(names, n)
		pods = append(pods, create(t, onAgent(faultPod(n, "cleanup", fmt.Sprintf("sleep 600; : %s-%d", token, i)), 0)))
	}
	for _, n := range names {
		waitPod(t, n, time.Minute, "Running", runningNoRestart)
	}
	uids := podUIDsOf(pods...)
	if err := env.Kill("agent-0"); err != nil {
		t.Fatal(err)
	}
	if err := env.StartWithArgs("agent-0", "--recover=cleanup"); err != nil {
		t.Fatalf("starting agent-0 with --recover=cleanup: %v", err)
	}
	waitNoProcess(t, token, time.Minute)
	var ended []corev1.Pod
	for _, n := range names {
		p := waitPod(t, n, 2*time.Minute, "Failed", phaseIs(corev1.PodFailed))
		cs := p.Status.ContainerStatuses
		if len(cs) != 1 || cs[0].State.Terminated == nil {
			t.Errorf("pod %s: no terminated state: %+v", n, cs)
		} else if term := cs[0].State.Terminated; term.Reason == "" || term.ExitCode == 0 {
			t.Errorf("pod %s: terminated without a real exit reason: %+v", n, term)
		}
		ended = append(ended, *p)
	}
	checkExitCodes(t, uids, ended)
	checkNoDuplicate(t, uids)
	deletePods(t, names, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 5. kube-apiserver down for 60 s: no container is killed or relaunched,
// the pods are still Running afterwards and the nodes Ready again.
func TestFaultAPIServerDown(t *testing.T) {
	needFleet(t)
	cleanupGroup(t, "apiserver")
	restore(t, "kube-apiserver")
	token := fmt.Sprintf("vkt-fault-apiserver-%d", time.Now().UnixNano())
	var names []string
	var pods []*corev1.Pod
	for i := 0; i < 3; i++ {
		n := fmt.Sprintf("apiserver-down-%d", i)
		names = append(names, n)
		pods = append(pods, create(t, onAgent(faultPod(n, "apiserver", fmt.Sprintf("sleep 900; : %s-%d", token, i)), i)))
	}
	for _, n := range names {
		waitPod(t, n, time.Minute, "Running", runningNoRestart)
	}
	uids := podUIDsOf(pods...)
	var before map[string][]chaos.Run
	if launchLogPresent() {
		before = snapshotRuns(t, uids)
	}
	pids := pidsOf(token)
	if err := env.Kill("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(envInt("FAULT_APISERVER_DOWN_SECONDS", 60)) * time.Second)
	if err := env.Start("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for i := 0; i < 3; i++ {
		waitNode(t, fmt.Sprintf("agent-%d", i), 2*time.Minute, "Ready", readyNode)
	}
	t.Logf("every node Ready (as the API shows it) %s after kube-apiserver answered again", time.Since(back).Round(100*time.Millisecond))
	time.Sleep(5 * time.Second)
	if got := pidsOf(token); got != pids {
		t.Errorf("processes changed across the API server's outage: %s → %s", pids, got)
	}
	stillRunning(t, names...)
	if before != nil {
		sameRuns(t, before, snapshotRuns(t, uids))
	} else {
		t.Errorf("no launch log: could not check that no container was launched or ended")
	}
	deletePods(t, names, nil, 2*time.Minute)
	checkNoOrphan(t, uids, time.Minute)
}

// 11. A master failover during a KillTask through the legacy job API: the
// new leader completes the kill (the process ends, the task is Finished),
// and the service job replaces the task once, as its policy says.
func TestFaultMasterFailoverDuringKillTask(t *testing.T) {
	needFleet(t)
	lead := leader(t)
	leadName := fmt.Sprintf("master-%d", lead)
	restore(t, leadName)
	app := appName(t, "failover-kill")
	setStage(t, app, "legacy")
	token := fmt.Sprintf("vkt-fault-killtask-%d", time.Now().UnixNano())
	job := createJob(t, descriptor(app, "sleep 900; : "+token, service(2, 3)))
	t.Cleanup(func() { call(t, "DELETE", "/api/v3/jobs/"+job, nil) })
	tasks := waitTasks(t, job, 2*time.Minute, "2 Started", allIn("Started", "", 2))
	victim, _ := tasks[0]["id"].(string)
	survivor, _ := tasks[1]["id"].(string)
	// Wait until the victim runs on its agent.
	var victimRun chaos.Run
	for deadline := time.Now().Add(30 * time.Second); ; {
		if live := liveTaskProcesses(victim); len(live) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: no process in its sandbox on any agent", victim)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, out := call(t, "DELETE", "/api/v3/tasks/"+victim, nil)
	if err := env.Kill(leadName); err != nil {
		t.Fatal(err)
	}
	t.Logf("KillTask %s: %d %v; killed the leader %s at once", victim, code, out, leadName)
	// A refused kill (the gateway or master answered 5xx) is retried, as a
	// client would, until the new leader takes it; a retry of a kill that
	// did land answers 404, which clouddriver counts as done.
	for deadline := time.Now().Add(90 * time.Second); code != http.StatusOK && code != http.StatusNotFound; {
		if code != 0 && code < 500 {
			t.Fatalf("KillTask %s: %d %v", victim, code, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("KillTask %s never accepted after the failover: %d %v", victim, code, out)
		}
		time.Sleep(time.Second)
		code, out = call(t, "DELETE", "/api/v3/tasks/"+victim, nil)
	}
	// The new leader completes the kill: the task ends Finished and its
	// process is gone.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, task := call(t, "GET", "/api/v3/tasks/"+victim, nil)
		s, _ := status(task)
		if c == http.StatusOK && s == "Finished" && len(liveTaskProcesses(victim)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s after the failover: %d %s, processes %v", victim, c, s, liveTaskProcesses(victim))
		}
		time.Sleep(time.Second)
	}
	// The job replaces it once: two live tasks, the survivor among them,
	// three tasks in all.
	final := waitTasks(t, job, 2*time.Minute, "2 Started + 1 Finished", func(ts []obj) bool {
		started, finished := 0, 0
		for _, task := range ts {
			switch s, _ := status(task); s {
			case "Started":
				started++
			case "Finished":
				finished++
			}
		}
		return started == 2 && finished >= 1
	})
	time.Sleep(10 * time.Second)
	final = tasksOf(t, job)
	liveIDs := map[string]bool{}
	for _, task := range final {
		if s, _ := status(task); s != "Finished" {
			liveIDs[task["id"].(string)] = true
		}
	}
	if len(final) != 3 || len(liveIDs) != 2 || !liveIDs[survivor] || liveIDs[victim] {
		t.Errorf("after the kill: %d tasks, live %v (want 3 tasks: the survivor %s and one replacement live)", len(final), liveIDs, survivor)
	}
	procs := 0
	for id := range liveIDs {
		if n := len(liveTaskProcesses(id)); n > 0 {
			procs++
		}
	}
	if procs != 2 {
		t.Errorf("%d of the 2 live tasks run a process", procs)
	}
	if launchLogPresent() {
		runs, _ := chaos.ReadLaunchLogs(agentDirs()...)
		n := 0
		for _, r := range runs {
			if r.ID == victim {
				n++
				victimRun = r
			}
		}
		if n != 1 || victimRun.Alive {
			t.Errorf("the killed task's container was launched %d time(s); last run %s", n, victimRun)
		}
	}
	mustCall(t, 200, "DELETE", "/api/v3/jobs/"+job, nil)
	waitJobState(t, job, "Finished")
	waitNoProcess(t, token, time.Minute)
}

// liveTaskProcesses lists the pids running in a legacy task's sandbox (the
// master names the container after the task) on any agent.
func liveTaskProcesses(taskID string) []int {
	var pids []int
	for _, d := range agentDirs() {
		pids = append(pids, chaos.LiveProcesses(d)[taskID]...)
	}
	return pids
}

// 10. An agent removed and re-added again and again (the masters declare it
// gone, vk-titus removes its node; then it comes back): vk-titus's
// goroutines stay flat. Cycles: FAULT_AGENT_CYCLES (default 5; a cycle
// takes about 22 s on the local stack, mostly the masters' 15 s agent
// timeout, so the full 20 take some 7 minutes: FAULT_AGENT_CYCLES=20).
func TestFaultAgentChurnNoLeak(t *testing.T) {
	needFleet(t)
	restore(t, "agent-2")
	cycles := envInt("FAULT_AGENT_CYCLES", 5)
	// The floor of 10 samples a second apart, once what the last cycle
	// started (calls, relists) has ended: goroutines that come and go (a
	// metrics-server scrape every 10 s, probes, relists) are not counted,
	// one that every removal leaves behind is.
	settle := func() (float64, float64) {
		time.Sleep(5 * time.Second)
		var g, h float64
		for i := 0; i < 10; i++ {
			body := scrape(t)
			if v := metricValue(body, "go_goroutines"); i == 0 || v < g {
				g = v
			}
			h = metricValue(body, "go_memstats_heap_inuse_bytes")
			time.Sleep(time.Second)
		}
		return g, h
	}
	// The baseline is taken after the first cycle: what a first removal
	// sets up once (idle connections, pools) is not a leak; what every
	// removal leaves behind grows with the cycles after it.
	var g0, h0 float64
	for i := 0; i < cycles; i++ {
		if i == min(1, cycles-1) { // one cycle alone: the baseline is before it
			g0, h0 = settle()
		}
		start := time.Now()
		if err := env.Kill("agent-2"); err != nil {
			t.Fatal(err)
		}
		waitNode(t, "agent-2", 3*time.Minute, "removed", func(_ *corev1.Node, err error) bool { return apierrors.IsNotFound(err) })
		gone := time.Since(start)
		if err := env.Start("agent-2"); err != nil {
			t.Fatal(err)
		}
		waitNode(t, "agent-2", 90*time.Second, "back and Ready", readyNode)
		t.Logf("cycle %d: node removed after %s, back after %s", i+1, gone.Round(time.Second), time.Since(start).Round(time.Second))
	}
	g1, h1 := settle()
	t.Logf("vk-titus over agent removals 2..%d: goroutines %.0f → %.0f, heap in use %.1f → %.1f MiB", cycles, g0, g1, h0/(1<<20), h1/(1<<20))
	if g1 > g0+10 {
		t.Errorf("goroutines grew from %.0f to %.0f over %d agent removals", g0, g1, cycles-1)
	}
}
