package chaos

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/translate"
)

// RunID is the agent container id of a pod container's run number n (the
// bridge's naming: translate.ContainerID, "-rN" from the first restart).
func RunID(uid types.UID, container string, n int32) string {
	base := translate.ContainerID(uid, container)
	if n == 0 {
		return base
	}
	return fmt.Sprintf("%s-r%d", base, n)
}

// latestRun is the last run launched under id.
func latestRun(byID map[string][]Run, id string) (Run, bool) {
	rs := byID[id]
	if len(rs) == 0 {
		return Run{}, false
	}
	last := rs[0]
	for _, r := range rs[1:] {
		if r.Start.After(last.Start) {
			last = r
		}
	}
	return last, true
}

func indexRuns(runs []Run) map[string][]Run {
	byID := map[string][]Run{}
	for _, r := range runs {
		byID[r.ID] = append(byID[r.ID], r)
	}
	return byID
}

// CheckExitCodes compares every terminated state (current and last) the
// API reports for a pod container with the run the agent logged: the exit
// code must be the real one, and a container reported terminated must not
// still run. Runs the launch logs do not know are not judged (a container
// that never launched, say), nor is the code of a container reported lost
// (ContainerStatusUnknown) in a pod lost with its node (NodeLost): its agent
// was declared gone, the bridge says it does not know the exit (the
// kubelet's 137 for an unknown status), as Mesos says TASK_LOST — an end the
// agent logged while it was cut off is not one the bridge could have seen.
func CheckExitCodes(pods []corev1.Pod, runs []Run) []Violation {
	byID := indexRuns(runs)
	var out []Violation
	for _, p := range pods {
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			check := func(term *corev1.ContainerStateTerminated, n int32, which string) {
				if term == nil || n < 0 {
					return
				}
				id := RunID(p.UID, cs.Name, n)
				r, ok := latestRun(byID, id)
				if !ok {
					return
				}
				subject := fmt.Sprintf("pod %s/%s container %s (%s)", p.Namespace, p.Name, cs.Name, which)
				switch {
				case r.Alive:
					out = append(out, Violation{KindTerminatedRun, subject, fmt.Sprintf("reported terminated (exit %d, %s) but still runs: %s", term.ExitCode, term.Reason, r)})
				case r.Exited && !r.ExitUnknown && r.ExitCode() != term.ExitCode && !lostWithNode(&p, term):
					out = append(out, Violation{KindExitCode, subject, fmt.Sprintf("reported exit code %d (%s), the agent logged %d: %s", term.ExitCode, term.Reason, r.ExitCode(), r)})
				}
			}
			check(cs.State.Terminated, cs.RestartCount, "state")
			// The kubelet's numbering: restartCount counts the runs started
			// after the first. While a container waits (back-off), lastState
			// is the run that just ended, the latest (run restartCount);
			// while one runs or has ended, lastState is the one before.
			last := cs.RestartCount - 1
			if cs.State.Waiting != nil {
				last = cs.RestartCount
			}
			check(cs.LastTerminationState.Terminated, last, "lastState")
		}
	}
	return out
}

// podUIDs indexes pods by UID.
func podUIDs(pods []corev1.Pod) map[types.UID]*corev1.Pod {
	m := make(map[types.UID]*corev1.Pod, len(pods))
	for i := range pods {
		m[pods[i].UID] = &pods[i]
	}
	return m
}

// AgentView is what one agent shows: its GET_CONTAINERS answer and the
// processes in its sandboxes.
type AgentView struct {
	Name       string
	Containers []string         // GET_CONTAINERS
	Processes  map[string][]int // container id -> pids (LiveProcesses)
	Sandboxes  []string         // container ids with a sandbox (not yet REMOVE_CONTAINERed)
	Err        error            // GET_CONTAINERS failed
}

// ReadAgentView reads one agent's containers (through cli, as
// AgentContainers) and processes.
func ReadAgentView(cli *http.Client, name, url, workDir string) AgentView {
	v := AgentView{Name: name, Processes: LiveProcesses(workDir)}
	v.Containers, v.Err = AgentContainers(cli, url)
	if ents, err := os.ReadDir(filepath.Join(workDir, "sandboxes")); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				v.Sandboxes = append(v.Sandboxes, e.Name())
			}
		}
	}
	return v
}

// CheckOrphans reports bridge containers (ids built from a pod UID) that an
// agent lists or runs while no pod with that UID exists, and processes of
// pods that have ended. Ids that are not the bridge's (legacy tasks) are
// left to the legacy checks. keep, when not nil, limits the check to some
// pods' UIDs (a test's own).
func CheckOrphans(pods []corev1.Pod, views []AgentView, keep func(types.UID) bool) []Violation {
	byUID := podUIDs(pods)
	var out []Violation
	for _, v := range views {
		if v.Err != nil {
			out = append(out, Violation{KindCheck, v.Name, "GET_CONTAINERS: " + v.Err.Error()})
		}
		for _, id := range v.Containers {
			uid, _, ok := translate.ParseContainerID(PodContainerKey(id))
			if !ok || (keep != nil && !keep(uid)) {
				continue
			}
			if byUID[uid] == nil {
				out = append(out, Violation{KindOrphan, id, fmt.Sprintf("%s lists the container but pod %s no longer exists", v.Name, uid)})
			}
		}
		for _, id := range v.Sandboxes {
			uid, _, ok := translate.ParseContainerID(PodContainerKey(id))
			if !ok || (keep != nil && !keep(uid)) {
				continue
			}
			if byUID[uid] == nil {
				out = append(out, Violation{KindOrphan, id, fmt.Sprintf("%s still has the sandbox (never REMOVE_CONTAINERed) but pod %s no longer exists", v.Name, uid)})
			}
		}
		ids := make([]string, 0, len(v.Processes))
		for id := range v.Processes {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			pids := v.Processes[id]
			uid, _, ok := translate.ParseContainerID(PodContainerKey(id))
			if !ok || (keep != nil && !keep(uid)) {
				continue
			}
			p := byUID[uid]
			switch {
			case p == nil:
				out = append(out, Violation{KindOrphan, id, fmt.Sprintf("processes %v run on %s but pod %s no longer exists", pids, v.Name, uid)})
			case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
				out = append(out, Violation{KindOrphan, id, fmt.Sprintf("processes %v run on %s but pod %s/%s has ended (%s %s)", pids, v.Name, p.Namespace, p.Name, p.Status.Phase, p.Status.Reason)})
			}
		}
	}
	return out
}

// CheckRunningHaveContainers reports pod containers the API shows running
// while no process of theirs runs on any agent.
func CheckRunningHaveContainers(pods []corev1.Pod, views []AgentView) []Violation {
	live := map[string]bool{}
	for _, v := range views {
		for id := range v.Processes {
			live[PodContainerKey(id)] = true
		}
	}
	var out []Violation
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if cs.State.Running == nil {
				continue
			}
			if !live[translate.ContainerID(p.UID, cs.Name)] {
				out = append(out, Violation{KindNoContainer, fmt.Sprintf("pod %s/%s container %s", p.Namespace, p.Name, cs.Name),
					fmt.Sprintf("reported running on %s (run %d) but no process of it runs on any agent", p.Spec.NodeName, cs.RestartCount)})
			}
		}
	}
	return out
}

// CheckLiveRuns reports pod containers with more than one live run right
// now, from the launch logs and from the processes.
func CheckLiveRuns(runs []Run, views []AgentView) []Violation {
	var out []Violation
	for k, rs := range LiveRunsPerPodContainer(runs) {
		if len(rs) > 1 {
			out = append(out, Violation{KindDuplicate, k, fmt.Sprintf("%d live runs: %v", len(rs), rs)})
		}
	}
	ids := map[string][]string{}
	for _, v := range views {
		for id := range v.Processes {
			k := PodContainerKey(id)
			ids[k] = append(ids[k], v.Name+"/"+id)
		}
	}
	for k, l := range ids {
		if len(l) > 1 {
			sort.Strings(l)
			out = append(out, Violation{KindDuplicate, k, fmt.Sprintf("processes of %d runs alive at once: %v", len(l), l)})
		}
	}
	return out
}

// CheckJobs: every Job that ended completed exactly its completions: the
// status counts them and exactly that many pods (one per index for an
// Indexed Job) succeeded. A Job that failed or did not end is reported
// too (the chaos workload's Jobs only exit 0).
func CheckJobs(jobs []batchv1.Job, pods []corev1.Pod) []Violation {
	var out []Violation
	for _, j := range jobs {
		want := int32(1)
		if j.Spec.Completions != nil {
			want = *j.Spec.Completions
		}
		subject := "job " + j.Namespace + "/" + j.Name
		complete, failed := false, ""
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				complete = true
			case batchv1.JobFailed:
				failed = c.Reason + ": " + c.Message
			}
		}
		succeeded := map[string]int{}
		n := 0
		for _, p := range pods {
			if p.Namespace != j.Namespace || p.Labels["batch.kubernetes.io/controller-uid"] != string(j.UID) || p.Status.Phase != corev1.PodSucceeded {
				continue
			}
			n++
			succeeded[p.Annotations["batch.kubernetes.io/job-completion-index"]]++
		}
		switch {
		case failed != "":
			out = append(out, Violation{KindJob, subject, "failed: " + failed})
		case !complete:
			out = append(out, Violation{KindJob, subject, fmt.Sprintf("not complete (succeeded %d of %d, active %d)", j.Status.Succeeded, want, j.Status.Active)})
		case j.Status.Succeeded != want:
			out = append(out, Violation{KindJob, subject, fmt.Sprintf("status counts %d completions, want %d", j.Status.Succeeded, want)})
		}
		if n > int(want) {
			out = append(out, Violation{KindJob, subject, fmt.Sprintf("%d pods succeeded for %d completions", n, want)})
		}
		for idx, c := range succeeded {
			if idx != "" && c > 1 {
				out = append(out, Violation{KindJob, subject, fmt.Sprintf("index %s succeeded %d times", idx, c)})
			}
		}
	}
	return out
}

// lostWithNode says term reports an unknown end of a container whose pod was
// lost with its node.
func lostWithNode(p *corev1.Pod, term *corev1.ContainerStateTerminated) bool {
	return p.Status.Reason == "NodeLost" && term.Reason == "ContainerStatusUnknown"
}
