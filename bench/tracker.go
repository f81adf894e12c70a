package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PodTimes is what the bench saw of one pod, in local (watch-observed) time:
// creationTimestamp has a one-second resolution, too coarse for latencies of
// tens of milliseconds.
type PodTimes struct {
	UID  types.UID
	Node string
	// Created is when the create call returned (the pod exists on the API).
	Created time.Time
	// Running is the first event with phase Running and every container
	// running; Terminated the first with a container terminated or a
	// terminal phase; Gone the DELETED event.
	Running, Terminated, Gone time.Time
	// LastUpdate is the latest event of any kind for the pod; Events counts
	// them, and EventsToRunning is Events when it was first seen Running
	// (the ADD included): every write to the pod shows as one event.
	LastUpdate              time.Time
	Events, EventsToRunning int
	Phase                   corev1.PodPhase
}

// Tracker follows every pod of the bench namespace through one informer and
// records when each was first seen in each state.
type Tracker struct {
	mu   sync.Mutex
	pods map[string]*PodTimes
	kick chan struct{}
}

// StartTracker starts the informer and waits for its cache. Pods are cut
// down to what the tracker reads (a transform), so 10,000 of them cost the
// bench little memory.
func StartTracker(ctx context.Context, client kubernetes.Interface, namespace string) (*Tracker, error) {
	t := &Tracker{pods: map[string]*PodTimes{}, kick: make(chan struct{}, 1)}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTransform(slimPod))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			t.observe(obj, true)
		},
	})
	if err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("pod informer did not sync")
	}
	return t, nil
}

func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp},
		Spec:   corev1.PodSpec{NodeName: pod.Spec.NodeName},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, cs := range pod.Status.ContainerStatuses {
		out.Status.ContainerStatuses = append(out.Status.ContainerStatuses, corev1.ContainerStatus{Name: cs.Name, State: cs.State})
	}
	return out, nil
}

func (t *Tracker) observe(obj any, deleted bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	pt := t.entry(pod.Name)
	if pt.UID != "" && pt.UID != pod.UID {
		// A new pod under an old name: start over.
		created := pt.Created
		*pt = PodTimes{Created: created}
	}
	pt.UID, pt.Node, pt.Phase, pt.LastUpdate = pod.UID, pod.Spec.NodeName, pod.Status.Phase, now
	pt.Events++
	if deleted && pt.Gone.IsZero() {
		pt.Gone = now
	}
	if pt.Running.IsZero() && isRunning(pod) {
		pt.Running, pt.EventsToRunning = now, pt.Events
	}
	if pt.Terminated.IsZero() && isTerminated(pod) {
		pt.Terminated = now
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *Tracker) entry(name string) *PodTimes {
	pt := t.pods[name]
	if pt == nil {
		pt = &PodTimes{}
		t.pods[name] = pt
	}
	return pt
}

func isRunning(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

func isTerminated(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return true
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// MarkCreated records when the create call for name returned.
func (t *Tracker) MarkCreated(name string, at time.Time) {
	t.mu.Lock()
	t.entry(name).Created = at
	t.mu.Unlock()
}

// Forget drops names (a finished set), so the map does not grow across rounds.
func (t *Tracker) Forget(names []string) {
	t.mu.Lock()
	for _, n := range names {
		delete(t.pods, n)
	}
	t.mu.Unlock()
}

// Get returns a copy of what is known of the named pods (zero values for
// pods never seen).
func (t *Tracker) Get(names []string) []PodTimes {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PodTimes, len(names))
	for i, n := range names {
		if pt := t.pods[n]; pt != nil {
			out[i] = *pt
		}
	}
	return out
}

// Count returns how many of names satisfy f.
func (t *Tracker) Count(names []string, f func(PodTimes) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, name := range names {
		if pt := t.pods[name]; pt != nil && f(*pt) {
			n++
		}
	}
	return n
}

// WaitFor re-evaluates check on every pod event (and at least every 250 ms)
// until it reports done, printing its progress every 5 s. It fails when
// timeout passes or ctx ends.
func (t *Tracker) WaitFor(ctx context.Context, timeout time.Duration, what string, check func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start, lastLog := time.Now(), time.Now()
	for {
		done, progress := check()
		if done {
			return nil
		}
		if time.Since(lastLog) >= 5*time.Second {
			logf("  %s: %s (%.0fs)", what, progress, time.Since(start).Seconds())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not done after %s: %s", what, time.Since(start).Round(time.Second), progress)
		case <-t.kick:
		case <-tick.C:
		}
	}
}
