package provider

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// podRecord is the provider's one owner of a pod's status (as the kubelet's
// status manager): only what the state machine decided is shown. Its fields
// are guarded by mu; only the pod's worker changes state, ctrs' states and
// inbox order, and it never holds mu across an agent call.
type podRecord struct {
	mu    sync.Mutex
	key   string // namespace/name, for logs and lookups by name
	uid   types.UID
	pod   *corev1.Pod
	ctrs  []*ctr
	state statemachine.PodState
	grace *time.Duration // the deletion's grace period, when it set one
	// started is the pod's start time as the API shows it.
	started metav1.Time
	// annotation is the container-info annotation the bridge derived for a
	// pod that came without one; it stays on every copy the pod controller
	// gets, so a metadata update racing the first status write keeps it.
	annotation string
	reason     string // pod-level reason (NodeLost, InvalidContainerInfo)
	message    string
	status     corev1.PodStatus // as last published
	// shownState is the task state last published in translate.AnnotationState.
	shownState statemachine.State
	// inbox holds what happened to the pod, in order, until its worker
	// takes it.
	inbox []item
	// admitted is when the bridge took the pod in; launched is set by the
	// first LAUNCH sent for it (or at once for a pod that ran before): the
	// two give vktitus_pod_admit_to_launch_seconds.
	admitted time.Time
	launched atomic.Bool
}

// item is one thing that happened to a pod: a pod-level event (c nil) or a
// container event. gen and run tie timer and WAIT answers to the timer and
// run they were for, so that stale news is dropped before the table.
type item struct {
	c   *ctr
	ev  statemachine.Event
	pod statemachine.PodEventType
	gen uint64 // a timer's generation (0: not a timer)
	run string // the run a WAIT answered for ("" : not a WAIT answer)
}

// ctr is one pod container: one legacy container per run.
type ctr struct {
	name   string
	image  string
	role   statemachine.Role
	launch *translate.Launch // nil until the pod is translated (adoption needs none)
	state  statemachine.State
	shown  statemachine.State // the last state whose view is not "last known"
	// restarts is the run on the agent: -r<restarts> in its id.
	restarts int32
	// ran: a run of it exists or existed on the agent before this process
	// saw the pod (the API shows one, or the agent lists one): it is
	// adopted, never launched as new.
	ran       bool
	exit      statemachine.Event
	since     metav1.Time // when the current view began (started or finished)
	startedAt metav1.Time // when the current run started
	last      *corev1.ContainerStateTerminated
	timer     *time.Timer
	timerGen  uint64
	probes    probeState
	// removeTries counts the REMOVEs the agent did not take, for the
	// back-off of the next one.
	removeTries int
}

func newPodRecord(pod *corev1.Pod) *podRecord {
	rec := &podRecord{key: podKey(pod.Namespace, pod.Name), uid: pod.UID, pod: pod.DeepCopy(),
		state: statemachine.PodPending, started: metav1.Now(), admitted: time.Now()}
	if pod.Status.StartTime != nil {
		rec.started = *pod.Status.StartTime
	}
	add := func(c corev1.Container, role statemachine.Role) {
		rec.ctrs = append(rec.ctrs, &ctr{name: c.Name, image: c.Image, role: role,
			state: statemachine.Accepted, shown: statemachine.Accepted, since: metav1.Now()})
	}
	for _, c := range pod.Spec.InitContainers {
		role := statemachine.RoleInit
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			role = statemachine.RoleSidecar
		}
		add(c, role)
	}
	for _, c := range pod.Spec.Containers {
		add(c, statemachine.RoleApp)
	}
	return rec
}

// adoptFrom takes over what the API already shows of a container after a
// bridge restart or a takeover, and what the agent holds of it: the newest
// run of either is the one on the agent, and a container that had started
// must be reconciled, never launched again.
func (c *ctr) adoptFrom(pod *corev1.Pod, newestLive int32) {
	statuses := pod.Status.ContainerStatuses
	if c.role != statemachine.RoleApp {
		statuses = pod.Status.InitContainerStatuses
	}
	for _, s := range statuses {
		if s.Name != c.name {
			continue
		}
		c.restarts = s.RestartCount
		c.last = s.LastTerminationState.Terminated
		c.ran = s.State.Running != nil || s.State.Terminated != nil || s.RestartCount > 0 || c.last != nil
		if s.State.Running != nil {
			c.since = s.State.Running.StartedAt
		}
	}
	if newestLive >= 0 {
		c.ran = true
		c.restarts = max(c.restarts, newestLive)
	}
}

// runID is the agent container id of the container's current run. Each
// restart is a new legacy container so the previous run's sandbox (and its
// logs, for `kubectl logs --previous`) survives until the next one.
func (c *ctr) runID(uid types.UID) string { return runID(uid, c.name, c.restarts) }

func runID(uid types.UID, name string, restarts int32) string {
	base := translate.ContainerID(uid, name)
	if restarts == 0 {
		return base
	}
	return fmt.Sprintf("%s-r%d", base, restarts)
}

// policy is the restart policy that applies to the container: init
// containers are retried on failure unless the pod never restarts, and a
// native sidecar always restarts.
func (r *podRecord) policy(c *ctr) corev1.RestartPolicy {
	pol := r.pod.Spec.RestartPolicy
	if pol == "" {
		pol = corev1.RestartPolicyAlways
	}
	switch {
	case c.role == statemachine.RoleSidecar:
		return corev1.RestartPolicyAlways
	case c.role == statemachine.RoleInit && pol == corev1.RestartPolicyAlways:
		return corev1.RestartPolicyOnFailure
	}
	return pol
}

// facts are the containers as the pod table's Progress reads them.
func (r *podRecord) facts() []statemachine.Facts {
	out := make([]statemachine.Facts, len(r.ctrs))
	for i, c := range r.ctrs {
		out[i] = statemachine.Facts{Role: c.role, State: c.state}
	}
	return out
}

// killGrace is the grace period a KILL of c gives: the deletion's, or the
// pod's terminationGracePeriodSeconds.
func (r *podRecord) killGrace(c *ctr) time.Duration {
	if r.grace != nil {
		return *r.grace
	}
	if c.launch != nil {
		return c.launch.KillGrace
	}
	return translate.KillGrace(r.pod)
}

func (r *podRecord) podWithStatus() *corev1.Pod {
	pod := r.pod.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if r.annotation != "" && pod.Annotations[translate.AnnotationContainerInfo] == "" {
		pod.Annotations[translate.AnnotationContainerInfo] = r.annotation
	}
	if r.shownState != "" {
		pod.Annotations[translate.AnnotationState] = string(r.shownState)
	}
	if pod.DeletionTimestamp == nil && !slices.Contains(pod.Finalizers, Finalizer) {
		// The pod object stays until the bridge released it: the status
		// write carries the finalizer (pods/status takes metadata), so it
		// costs no write of its own. The API server refuses a new finalizer
		// on an object being deleted, hence not then.
		pod.Finalizers = append(pod.Finalizers, Finalizer)
	}
	pod.Status = *r.status.DeepCopy()
	return pod
}

// Finalizer keeps a pod object until the bridge has removed everything the
// pod left on the agent (its pod record released): a bridge that restarts
// meanwhile still finds the pod, and with it the sandboxes to remove.
const Finalizer = "vk-titus.io/sandboxes"

// refreshStatus recomputes the status from the containers' states; it
// reports whether anything a client could see changed.
func (r *podRecord) refreshStatus(hostIP string) bool {
	st := r.computeStatus(hostIP)
	state := r.taskState()
	// Into KillInitiated alone is not worth a write: Kubernetes shows it as
	// the pod's deletionTimestamp, and a delete burst would double its writes.
	moved := state != r.shownState && statemachine.TitusOf(state).State != "KillInitiated"
	if equality.Semantic.DeepEqual(st, r.status) && !moved {
		return false
	}
	r.status, r.shownState = st, state
	return true
}

// taskState is the state of the pod's first app container: the task, as
// the legacy job API counts one task per pod. A state with no Titus state of
// its own (Removed) shows what the container ended as.
func (r *podRecord) taskState() statemachine.State {
	for _, c := range r.ctrs {
		if c.role != statemachine.RoleApp {
			continue
		}
		if statemachine.TitusOf(c.state).State == "" {
			return c.shown
		}
		return c.state
	}
	return statemachine.Accepted
}

func (r *podRecord) computeStatus(hostIP string) corev1.PodStatus {
	st := corev1.PodStatus{
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     hostIP,
		PodIPs:    []corev1.PodIP{{IP: hostIP}},
		StartTime: &r.started,
		Reason:    r.reason,
		Message:   r.message,
		QOSClass:  r.pod.Status.QOSClass,
	}
	initDone, initFailed := true, false
	allDone, allOK, anyRunning, ready := true, true, false, true
	sidecarLive := false
	for _, c := range r.ctrs {
		cs := r.containerStatus(c)
		info := statemachine.InfoOf(c.shown)
		if c.role != statemachine.RoleApp {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			sidecarLive = sidecarLive || c.role == statemachine.RoleSidecar && info.Phase == corev1.PodRunning
			if !statemachine.StepDone(statemachine.Facts{Role: c.role, State: c.shown}) {
				initDone = false
				initFailed = initFailed || (c.role == statemachine.RoleInit && info.Terminal)
			}
			continue
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allDone = allDone && info.Terminal
		allOK = allOK && c.shown == statemachine.Succeeded
		anyRunning = anyRunning || info.Phase == corev1.PodRunning
		ready = ready && cs.Ready
	}
	switch {
	case sidecarLive && (initFailed || allDone):
		// As the kubelet: a pod is marked terminal only once every
		// container has stopped, the sidecars being stopped included (a
		// Job controller counts a Succeeded pod as done).
		st.Phase = corev1.PodRunning
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone:
		st.Phase = corev1.PodPending
	case allDone && allOK:
		st.Phase = corev1.PodSucceeded
	case allDone:
		st.Phase = corev1.PodFailed
	case anyRunning:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	ready = ready && initDone && st.Phase == corev1.PodRunning
	st.Conditions = conditions(r.pod, initDone, ready, st.Phase)
	return st
}

func conditions(pod *corev1.Pod, initDone, ready bool, phase corev1.PodPhase) []corev1.PodCondition {
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse}
		if ok {
			c.Status = corev1.ConditionTrue
		}
		// Keep the transition time the API already has, so a status refresh
		// does not look like a flap.
		for _, old := range pod.Status.Conditions {
			if old.Type == t && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(time.Now().Truncate(time.Second))
		}
		return c
	}
	return []corev1.PodCondition{
		cond(corev1.PodScheduled, true),
		cond(corev1.PodInitialized, initDone || phase == corev1.PodSucceeded),
		cond(corev1.ContainersReady, ready),
		cond(corev1.PodReady, ready),
	}
}

func (r *podRecord) containerStatus(c *ctr) corev1.ContainerStatus {
	info := statemachine.InfoOf(c.shown)
	cs := corev1.ContainerStatus{
		Name:         c.name,
		Image:        c.image,
		ImageID:      c.image,
		RestartCount: c.restarts,
		ContainerID:  "mesos://" + c.runID(r.uid),
	}
	if c.last != nil {
		cs.LastTerminationState.Terminated = c.last.DeepCopy()
	}
	switch info.View {
	case statemachine.ViewRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.since}
		cs.Ready = c.role != statemachine.RoleInit && c.shown == statemachine.Running && c.probes.ready
		started := c.probes.started
		cs.Started = &started
	case statemachine.ViewTerminated:
		cs.State.Terminated = c.terminated(c.shown)
		started := false
		cs.Started = &started
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: info.WaitingReason}
		if c.shown == statemachine.BackOff && c.last != nil {
			cs.State.Waiting.Message = fmt.Sprintf("back-off restarting failed container %s in pod %s", c.name, strings.TrimPrefix(r.key, r.pod.Namespace+"/"))
		}
		started := false
		cs.Started = &started
	}
	return cs
}

func (c *ctr) terminated(s statemachine.State) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:   c.exit.ExitCode,
		Signal:     c.exit.Signal,
		Reason:     statemachine.TerminatedReason(s, c.exit.ExitCode),
		Message:    c.exit.Message,
		StartedAt:  c.startedAt, // zero (null) when it never ran, as the kubelet shows it
		FinishedAt: c.since,
	}
	return t
}
