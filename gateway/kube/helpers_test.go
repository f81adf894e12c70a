package kube

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/translate"
)

const testNS = "jobs"

// t0 is the tests' epoch: whole seconds, as the API server stamps.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(sec) * time.Second)) }

func ms(sec int) legacyapi.U64 {
	return legacyapi.U64(t0.Add(time.Duration(sec) * time.Second).UnixMilli())
}

// newTestBackend starts a backend on a fake clientset and returns once
// its three watches are established: the fake tracker replays nothing, so
// a write between the informers' list and watch would be lost.
func newTestBackend(t testing.TB, objs ...runtime.Object) (*Backend, *fake.Clientset) {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	// Stamp resource versions as the API server does (the tracker does
	// not): writers wait for the cache to reach the version they wrote.
	var version atomic.Uint64
	client.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if w, ok := a.(interface{ GetObject() runtime.Object }); ok {
			if m, err := meta.Accessor(w.GetObject()); err == nil {
				m.SetResourceVersion(strconv.FormatUint(version.Add(1), 10))
			}
		}
		return false, nil, nil
	})
	watching := make(chan struct{}, 3)
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err == nil {
			watching <- struct{}{}
		}
		return true, w, err
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	b, err := New(client, Config{Namespace: testNS, CacheWait: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-watching:
		case <-time.After(5 * time.Second):
			t.Fatal("informers did not start watching")
		}
	}
	client.ClearActions()
	return b, client
}

// eventually waits, on cache events rather than sleeps, until cond holds.
func eventually(t testing.TB, b *Backend, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		changed := b.changed.next()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func batchDescriptor() legacyapi.JobDescriptor {
	return legacyapi.JobDescriptor{
		Owner:           &legacyapi.Owner{TeamEmail: "team@example.com"},
		ApplicationName: "My_App.v2",
		CapacityGroup:   "Flex_Pool.",
		Attributes:      map[string]string{"cost-center": "42"},
		Container: &legacyapi.Container{
			Resources:       &legacyapi.ContainerResources{CPU: 1.5, MemoryMB: 512, DiskMB: 1024, GPU: 1},
			Image:           &legacyapi.Image{Name: "registry.example.com/app", Tag: "1.0"},
			EntryPoint:      []string{"/bin/run"},
			Command:         []string{"--fast"},
			Env:             map[string]string{"B": "2", "A": "1"},
			HardConstraints: &legacyapi.Constraints{Constraints: map[string]string{"zone": "us-east-1a"}},
			SoftConstraints: &legacyapi.Constraints{Constraints: map[string]string{"rack": "r/1", "arch": "x86"}},
		},
		Batch: &legacyapi.BatchJobSpec{Size: 3, RuntimeLimitSec: 600,
			RetryPolicy: &legacyapi.RetryPolicy{Immediate: &legacyapi.ImmediateRetry{Retries: 2}}},
	}
}

func serviceDescriptor() legacyapi.JobDescriptor {
	d := batchDescriptor()
	d.ApplicationName = "web"
	d.Container.HardConstraints, d.Container.SoftConstraints = nil, nil
	d.Batch = nil
	d.Service = &legacyapi.ServiceJobSpec{Enabled: true, Capacity: &legacyapi.Capacity{Min: 1, Desired: 2, Max: 5}}
	return d
}

func create(t testing.TB, b *Backend, d legacyapi.JobDescriptor) (string, jobObject) {
	t.Helper()
	id, err := b.CreateJob(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := b.lookupJob(id)
	if !ok {
		t.Fatalf("job %s not in the cache after CreateJob", id)
	}
	return id, o
}

// podOf is a pod as the job's controller would make it from the template.
func podOf(o jobObject, uid string, created int, opts ...func(*corev1.Pod)) *corev1.Pod {
	var tmpl corev1.PodTemplateSpec
	if o.batch != nil {
		tmpl = o.batch.Spec.Template
	} else {
		tmpl = o.service.Spec.Template
	}
	pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
	pod.Namespace, pod.Name, pod.UID = testNS, o.meta.Name+"-"+uid, types.UID(uid)
	pod.CreationTimestamp = at(created)
	pod.Status.Phase = corev1.PodPending
	for _, opt := range opts {
		opt(pod)
	}
	return pod
}

func withIndex(index, failures string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Annotations[batchv1.JobCompletionIndexAnnotation] = index
		if failures != "" {
			p.Annotations[batchv1.JobIndexFailureCountAnnotation] = failures
		}
	}
}

// scheduled binds the pod at sec.
func scheduled(node string, sec int) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = node
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: at(sec)})
	}
}

// running: the provider started the main container at sec.
func running(sec int) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Annotations[translate.AnnotationState] = "running"
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: MainContainer,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(sec)}}}}
	}
}

// exited: the main container ran from start to end with code; state is
// the provider's, "" for none.
func exited(state string, code int32, start, end int) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if state != "" {
			p.Annotations[translate.AnnotationState] = state
		}
		p.Status.Phase = corev1.PodSucceeded
		if code != 0 {
			p.Status.Phase = corev1.PodFailed
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: MainContainer,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, StartedAt: at(start), FinishedAt: at(end)}}}}
	}
}

func deleting(sec int) func(*corev1.Pod) {
	return func(p *corev1.Pod) { t := at(sec); p.DeletionTimestamp = &t }
}

func addPods(t testing.TB, b *Backend, client *fake.Clientset, pods ...*corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		if _, err := client.CoreV1().Pods(testNS).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, b, "pods in the cache", func() bool {
		for _, p := range pods {
			if b.podByTaskID(legacyapi.KubePrefix+string(p.UID)) == nil {
				return false
			}
		}
		return true
	})
}

func states(h []legacyapi.TaskStatus) []string {
	out := make([]string, len(h))
	for i, s := range h {
		out[i] = s.State
	}
	return out
}

func wantErr(t testing.TB, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want one wrapping %v", err, kind)
	}
}
