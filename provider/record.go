package provider

import (
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// podRecord is the provider's one owner of a pod's status (as the kubelet's
// status manager): only what the state machine decided is shown.
type podRecord struct {
	mu       sync.Mutex
	key      string
	uid      types.UID
	pod      *corev1.Pod
	ctrs     []*ctr
	deleting bool
	grace    *time.Duration // the deletion's grace period, when it set one
	started  metav1.Time
	// annotation is the container-info annotation the bridge derived for a
	// pod that came without one; it stays on every copy the pod controller
	// gets, so a metadata update racing the first status write keeps it.
	annotation string
	reason     string // pod-level reason (NodeLost, InvalidContainerInfo)
	message    string
	status     corev1.PodStatus // as last published
	// shownState is the task state last published in translate.AnnotationState.
	shownState statemachine.State
	// translated: admit translated the pod (its containers can launch).
	translated bool
	// unannounced: the status was computed but not yet published (the pod
	// waits for the launcher); the next finish publishes it even unchanged.
	unannounced bool
	// released: finish dropped the record (deleted and terminal) and queued
	// the pod object's removal; nothing is to be done for it any more.
	released bool
}

// ctr is one pod container: one legacy container per run.
type ctr struct {
	name      string
	image     string
	init      bool
	launch    translate.Launch
	state     statemachine.State
	shown     statemachine.State // the last state whose view is not "last known"
	restarts  int32
	adopt     bool // it ran before this bridge process: reconcile, never relaunch
	exit      statemachine.Event
	since     metav1.Time // when the current view began (started or finished)
	startedAt metav1.Time // when the current run started
	last      *corev1.ContainerStateTerminated
	timer     *time.Timer
	probes    probeState
}

func newPodRecord(pod *corev1.Pod) *podRecord {
	rec := &podRecord{key: podKey(pod.Namespace, pod.Name), uid: pod.UID, pod: pod.DeepCopy(), started: metav1.Now()}
	if pod.Status.StartTime != nil {
		rec.started = *pod.Status.StartTime
	}
	add := func(c corev1.Container, init bool) {
		rec.ctrs = append(rec.ctrs, &ctr{name: c.Name, image: c.Image, init: init,
			state: statemachine.Accepted, shown: statemachine.Accepted, since: metav1.Now()})
	}
	for _, c := range pod.Spec.InitContainers {
		add(c, true)
	}
	for _, c := range pod.Spec.Containers {
		add(c, false)
	}
	return rec
}

// adoptFrom takes over what the API already shows of a container after a
// bridge restart: its restart count names the run that is (or was) on the
// agent, and a container that had started must be reconciled, never
// launched again.
func (c *ctr) adoptFrom(pod *corev1.Pod) {
	statuses := pod.Status.ContainerStatuses
	if c.init {
		statuses = pod.Status.InitContainerStatuses
	}
	for _, s := range statuses {
		if s.Name != c.name {
			continue
		}
		c.restarts = s.RestartCount
		c.last = s.LastTerminationState.Terminated
		c.adopt = s.State.Running != nil || s.State.Terminated != nil || s.RestartCount > 0 || c.last != nil
		if s.State.Running != nil {
			c.since = s.State.Running.StartedAt
		}
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
// containers are retried on failure unless the pod never restarts.
func (r *podRecord) policy(c *ctr) corev1.RestartPolicy {
	pol := r.pod.Spec.RestartPolicy
	if pol == "" {
		pol = corev1.RestartPolicyAlways
	}
	if c.init && pol == corev1.RestartPolicyAlways {
		return corev1.RestartPolicyOnFailure
	}
	return pol
}

func (r *podRecord) terminal() bool {
	for _, c := range r.ctrs {
		if !statemachine.InfoOf(c.state).Terminal {
			return false
		}
	}
	return true
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
	pod.Status = *r.status.DeepCopy()
	return pod
}

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
// the legacy job API counts one task per pod.
func (r *podRecord) taskState() statemachine.State {
	for _, c := range r.ctrs {
		if !c.init {
			return c.state
		}
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
	for _, c := range r.ctrs {
		cs := r.containerStatus(c)
		info := statemachine.InfoOf(c.shown)
		if c.init {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			if c.shown != statemachine.Succeeded {
				initDone = false
				initFailed = initFailed || (info.Terminal && r.policy(c) == corev1.RestartPolicyNever) ||
					c.shown == statemachine.Rejected || c.shown == statemachine.Lost
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
		cs.Ready = !c.init && c.shown == statemachine.Running && c.probes.ready
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
