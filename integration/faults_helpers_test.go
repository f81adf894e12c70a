package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/chaos"
	"github.com/vk-titus/vk-titus/translate"
)

// The fault suite kills real components of the stack through
// scripts/stack.sh and then checks invariants from the agents' own view
// (their launch logs and the processes in their sandboxes) and the API:
// no two live runs of a pod container at once, no orphan after delete, the
// real exit code reported. Every test restores what it broke in t.Cleanup
// and waits until the stack is healthy again.

// restore makes sure the named components run again (and vk-titus's node
// and the three agent nodes are Ready) when the test ends, whatever it did.
func restore(t *testing.T, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range names {
			if strings.HasPrefix(n, "agent-") {
				_ = env.Thaw(n) // in case the test froze it
			}
			if err := env.Start(n); err != nil {
				t.Errorf("restoring %s: %v", n, err)
			}
		}
		for i := 0; i < len(env.LegacyAgents); i++ {
			waitNodeQuiet(t, fmt.Sprintf("agent-%d", i), 3*time.Minute)
		}
	})
}

// waitNodeQuiet waits for a Ready node, reporting (not failing fast) when it
// is not: used in cleanups.
func waitNodeQuiet(t *testing.T, name string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && nodeReady(n) {
			return
		}
		time.Sleep(time.Second)
	}
	t.Errorf("node %s not Ready %s after the test restored the stack", name, d)
}

func agentDirs() []string {
	var dirs []string
	for i := range env.LegacyAgents {
		dirs = append(dirs, env.AgentWorkDir(i))
	}
	return dirs
}

// uidSet is the set of pod UIDs a test owns.
type uidSet map[types.UID]bool

func (s uidSet) has(uid types.UID) bool { return s[uid] }

// owns: the container id is a run of one of the pods.
func (s uidSet) owns(id string) bool {
	uid, _, ok := translate.ParseContainerID(chaos.PodContainerKey(id))
	return ok && s[uid]
}

// runsOf reads every agent's launch log, keeping the runs of the pods. A
// missing launch log fails the test: the checks need the agents' view.
func runsOf(t *testing.T, uids uidSet) []chaos.Run {
	t.Helper()
	runs, err := chaos.ReadLaunchLogs(agentDirs()...)
	if err != nil {
		if errors.Is(err, chaos.ErrNoLaunchLog) {
			t.Fatalf("the agents' launch logs are needed for this check: %v", err)
		}
		t.Fatalf("launch logs: %v", err)
	}
	return chaos.FilterRuns(runs, uids.owns)
}

// launchLogPresent says whether every agent writes a launch log.
func launchLogPresent() bool {
	_, err := chaos.ReadLaunchLogs(agentDirs()...)
	return err == nil
}

// waitLaunched waits until the agents' launch logs show a run of id, and
// returns it; ok is false when no agent writes a launch log (the caller
// falls back on processes) or the wait timed out.
func waitLaunched(t *testing.T, id string, d time.Duration) (chaos.Run, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		runs, err := chaos.ReadLaunchLogs(agentDirs()...)
		if err != nil {
			return chaos.Run{}, false
		}
		for _, r := range runs {
			if r.ID == id {
				return r, true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return chaos.Run{}, false
}

func report(t *testing.T, what string, vs []chaos.Violation) {
	t.Helper()
	for _, v := range vs {
		t.Errorf("%s: %s", what, v)
	}
}

// checkNoDuplicate: launch→exit intervals of each pod container never
// overlap (across its -rN runs), and at most one run of each is alive now.
func checkNoDuplicate(t *testing.T, uids uidSet) {
	t.Helper()
	runs := runsOf(t, uids)
	report(t, "no duplicate", chaos.CheckOverlaps(runs))
	report(t, "no duplicate (now)", chaos.CheckLiveRuns(runs, agentViews(t, uids)))
}

// checkExitCodes: every terminated state the API shows for the pods equals
// the agent's logged exit.
func checkExitCodes(t *testing.T, uids uidSet, pods []corev1.Pod) {
	t.Helper()
	report(t, "exit code kept", chaos.CheckExitCodes(pods, runsOf(t, uids)))
}

// agentViews reads every agent's containers (with the stack's credential)
// and processes, keeping the pods' own.
func agentViews(t *testing.T, uids uidSet) []chaos.AgentView {
	t.Helper()
	var views []chaos.AgentView
	cli := env.MesosClient(20 * time.Second)
	for i, u := range env.LegacyAgents {
		v := chaos.ReadAgentView(cli, fmt.Sprintf("agent-%d", i), u, env.AgentWorkDir(i))
		var ids []string
		for _, id := range v.Containers {
			if uids.owns(id) {
				ids = append(ids, id)
			}
		}
		v.Containers = ids
		var sbs []string
		for _, id := range v.Sandboxes {
			if uids.owns(id) {
				sbs = append(sbs, id)
			}
		}
		v.Sandboxes = sbs
		for id := range v.Processes {
			if !uids.owns(id) {
				delete(v.Processes, id)
			}
		}
		views = append(views, v)
	}
	return views
}

// checkNoOrphan, once the pods are deleted: within d no process of theirs
// is left on any agent, no agent lists a container of theirs, and no
// sandbox of theirs is left (REMOVE_CONTAINER trashes it).
func checkNoOrphan(t *testing.T, uids uidSet, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var left []string
		for _, v := range agentViews(t, uids) {
			if v.Err != nil {
				left = append(left, fmt.Sprintf("%s: GET_CONTAINERS: %v", v.Name, v.Err))
			}
			for _, id := range v.Containers {
				left = append(left, fmt.Sprintf("%s lists container %s", v.Name, id))
			}
			for id, pids := range v.Processes {
				left = append(left, fmt.Sprintf("%s runs %s: pids %v", v.Name, id, pids))
			}
			for _, id := range v.Sandboxes {
				left = append(left, fmt.Sprintf("%s keeps the sandbox of %s (never removed)", v.Name, id))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(left) > 20 {
				left = append(left[:20], fmt.Sprintf("… and %d more", len(left)-20))
			}
			t.Errorf("no orphan: %s after the pods were deleted:\n  %s", d, strings.Join(left, "\n  "))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// deletePods deletes the pods (grace as given, nil: the pod's) and waits
// until they are gone from the API.
func deletePods(t *testing.T, names []string, grace *int64, d time.Duration) {
	t.Helper()
	for _, n := range names {
		err := client.CoreV1().Pods(ns).Delete(context.Background(), n, metav1.DeleteOptions{GracePeriodSeconds: grace})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete pod %s: %v", n, err)
		}
	}
	deadline := time.Now().Add(d)
	for _, n := range names {
		for {
			_, err := client.CoreV1().Pods(ns).Get(context.Background(), n, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("pod %s not gone %s after its deletion", n, d)
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// podsByLabel lists the test namespace's pods with label fault=<value>.
func podsByLabel(t *testing.T, value string) []corev1.Pod {
	t.Helper()
	l, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "fault=" + value})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	return l.Items
}

// cleanupGroup deletes the group's pods when the test ends (without
// waiting), so a failed test leaves nothing running for the next ones.
func cleanupGroup(t *testing.T, group string) {
	t.Cleanup(func() {
		_ = client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "fault=" + group})
	})
}

func faultPod(name, group, script string) *corev1.Pod {
	p := virtualPod(name, script)
	p.Labels = map[string]string{"fault": group}
	return p
}

// onAgent places the pod on agent-i by its zone label.
func onAgent(p *corev1.Pod, i int) *corev1.Pod {
	p.Spec.NodeSelector = map[string]string{"legacy.vk-titus.io/zone": fmt.Sprintf("zone-%d", i)}
	return p
}

// snapshot is the runs of some pods at one moment, by container id.
func snapshotRuns(t *testing.T, uids uidSet) map[string][]chaos.Run {
	t.Helper()
	out := map[string][]chaos.Run{}
	for _, r := range runsOf(t, uids) {
		out[r.ID] = append(out[r.ID], r)
	}
	return out
}

// sameRuns: no run of the pods was launched or ended between two snapshots.
func sameRuns(t *testing.T, before, after map[string][]chaos.Run) {
	t.Helper()
	for id, rs := range after {
		b := before[id]
		if len(rs) != len(b) {
			t.Errorf("container %s: %d run(s) before, %d after (a relaunch): %v → %v", id, len(b), len(rs), b, rs)
			continue
		}
		for i := range rs {
			if rs[i].Pid != b[i].Pid || rs[i].Exited != b[i].Exited {
				t.Errorf("container %s changed: %v → %v", id, b[i], rs[i])
			}
		}
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			t.Errorf("container %s vanished from the launch log", id)
		}
	}
}

func podUIDsOf(pods ...*corev1.Pod) uidSet {
	s := uidSet{}
	for _, p := range pods {
		s[p.UID] = true
	}
	return s
}

func runningNoRestart(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

// stillRunning checks, without waiting, that the pods are Running with no
// restart.
func stillRunning(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod %s: %v", n, err)
			continue
		}
		if !runningNoRestart(p) {
			t.Errorf("pod %s no longer Running: phase %s, %+v", n, p.Status.Phase, p.Status.ContainerStatuses)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("pod %s container %s restarted %d time(s)", n, cs.Name, cs.RestartCount)
			}
		}
	}
}

func pidsOf(token string) string { return fmt.Sprint(processesWith(token)) }
