package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vk-titus/vk-titus/internal/testlog"
	"github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// These tests drive the provider against the reference agent in this
// process, with real processes, and the informer listers of a fake cache:
// the lifecycle end to end without the API server.

type world struct {
	t      *testing.T
	agent  *agentclient.Client
	pods   cache.Indexer
	cms    cache.Indexer
	secret cache.Indexer
	// away makes the agent answer every call 503, as an agent whose
	// process is down behind a proxy would.
	away atomic.Bool
}

func newWorld(t *testing.T) *world {
	t.Helper()
	a, err := agent.New(agent.Config{WorkDir: t.TempDir(), Listen: "127.0.0.1:5051", Logger: testlog.New()})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t}
	h := a.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.away.Load() {
			http.Error(rw, "agent away", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(func() {
		a.Close()
		srv.Close()
	})
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	w.agent = agentclient.New(srv.URL, agentclient.Options{CallTimeout: 10 * time.Second})
	w.pods, w.cms, w.secret = idx(), idx(), idx()
	return w
}

// provider starts a provider (a bridge process) whose published statuses
// are written back to the fake pod cache, as the pod controller would.
func (w *world) provider(ctx context.Context, tweak ...func(*Config)) *Provider {
	cfg := &Config{}
	for _, f := range tweak {
		f(cfg)
	}
	cfg.Timeouts.HealthInterval.Duration = 200 * time.Millisecond
	cfg.Timeouts.RestartBackoff.Duration = 100 * time.Millisecond
	p := New(Options{NodeName: "node", Config: cfg, Client: w.agent, Log: testlog.New().WithField("test", w.t.Name()),
		Pods: corev1listers.NewPodLister(w.pods), ConfigMaps: corev1listers.NewConfigMapLister(w.cms),
		Secrets: corev1listers.NewSecretLister(w.secret)})
	p.NotifyPods(ctx, func(pod *corev1.Pod) {
		if old, ok, _ := w.pods.GetByKey(pod.Namespace + "/" + pod.Name); ok && old.(*corev1.Pod).UID == pod.UID {
			_ = w.pods.Update(pod)
		}
	})
	p.Start(ctx)
	return p
}

func testPod(name string, uid types.UID, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid},
		Spec: corev1.PodSpec{
			NodeName: "node", RestartPolicy: corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{ctrSpec("main", script)},
		},
	}
}

func ctrSpec(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", Command: []string{"sh", "-c", script},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}
}

func (w *world) add(pod *corev1.Pod) {
	if err := w.pods.Add(pod); err != nil {
		w.t.Fatal(err)
	}
}

// wait polls the provider's view of a pod until cond holds.
func wait(t *testing.T, p *Provider, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var pod *corev1.Pod
	for time.Now().Before(deadline) {
		var err error
		if pod, err = p.GetPod(context.Background(), "ns", name); err == nil && cond(pod) {
			return pod
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pod %s: never %s; last status %+v", name, what, pod)
	return nil
}

func running(name string) func(*corev1.Pod) bool {
	return func(pod *corev1.Pod) bool {
		for _, s := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if s.Name == name {
				return s.State.Running != nil
			}
		}
		return false
	}
}

func phase(ph corev1.PodPhase) func(*corev1.Pod) bool {
	return func(pod *corev1.Pod) bool { return pod.Status.Phase == ph }
}

func (w *world) live() map[string]bool {
	list, err := w.agent.Containers(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, c := range list {
		out[c.ID] = true
	}
	return out
}

// gone waits until the agent neither runs nor keeps the container id.
func (w *world) gone(id string) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := w.agent.Wait(ctx, id)
		cancel()
		if errors.Is(err, agentclient.ErrNotFound) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("container %s is still on the agent", id)
}

// launchBehindTheBridge launches the pod's container as a bridge would have
// just before dying: the agent runs it, no provider knows.
func (w *world) launchBehindTheBridge(pod *corev1.Pod) string {
	w.t.Helper()
	launches, _, err := translate.PodLaunches(pod, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	id := translate.ContainerID(pod.UID, "main")
	if _, err := w.agent.Launch(context.Background(), id, &launches[0]); err != nil {
		w.t.Fatal(err)
	}
	return id
}

func released(p *Provider, uid types.UID) bool { return p.recordOf(uid) == nil }

func TestInitContainersRunInOrder(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	pod := testPod("inits", "11111111-1111-4111-8111-111111111111", "sleep 30")
	pod.Spec.InitContainers = []corev1.Container{ctrSpec("first", "sleep 0.3"), ctrSpec("second", "exit 0")}
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	got := wait(t, p, "inits", "running its app", running("main"))
	first, second := got.Status.InitContainerStatuses[0].State.Terminated, got.Status.InitContainerStatuses[1].State.Terminated
	if first == nil || second == nil || second.StartedAt.Before(&first.FinishedAt) {
		t.Fatalf("init containers not run one after the other: %+v", got.Status.InitContainerStatuses)
	}
}

// A native sidecar starts and keeps running while the app runs; once the
// app has ended, the sidecar is stopped and the pod completes.
func TestNativeSidecar(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	pod := testPod("sidecar", "22222222-2222-4222-8222-222222222222", "sleep 0.5")
	always := corev1.ContainerRestartPolicyAlways
	side := ctrSpec("proxy", "sleep 300")
	side.RestartPolicy = &always
	pod.Spec.InitContainers = []corev1.Container{side}
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	wait(t, p, "sidecar", "running its app beside the sidecar", func(pod *corev1.Pod) bool {
		return running("main")(pod) && running("proxy")(pod)
	})
	got := wait(t, p, "sidecar", "Succeeded", phase(corev1.PodSucceeded))
	if st := got.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil {
		t.Fatalf("Succeeded while the sidecar is not terminated: %+v", st)
	}
	id := translate.ContainerID(pod.UID, "proxy")
	deadline := time.Now().Add(20 * time.Second)
	for w.live()[id] && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if w.live()[id] {
		t.Fatal("the sidecar still runs after the app ended")
	}
}

// A bridge that crashed right after LAUNCH left a container the API knows
// nothing about; the pod is deleted while it is down. The next bridge kills
// and removes it.
func TestDeletedWhileDownIsKilled(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pod := testPod("crashed", "33333333-3333-4333-8333-333333333333", "sleep 300")
	id := w.launchBehindTheBridge(pod)
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	w.add(pod)
	p := w.provider(ctx)
	if err := p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	w.gone(id)
	deadline := time.Now().Add(10 * time.Second)
	for !released(p, pod.UID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !released(p, pod.UID) {
		t.Fatal("the record was not released")
	}
}

// A restarted bridge adopts a running container from the agent's answer and
// the pod object alone (its ConfigMap is gone): no relaunch, and deleting it
// still works.
func TestRestartAdoptsWithoutConfigMap(t *testing.T) {
	w := newWorld(t)
	pod := testPod("adopt", "44444444-4444-4444-8444-444444444444", "sleep 300")
	pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"}, Data: map[string]string{"k": "v"}}
	if err := w.cms.Add(cm); err != nil {
		t.Fatal(err)
	}
	w.add(pod)
	ctx1, stop1 := context.WithCancel(context.Background())
	p1 := w.provider(ctx1)
	if err := p1.CreatePod(ctx1, pod); err != nil {
		t.Fatal(err)
	}
	wait(t, p1, "adopt", "Running", running("main"))
	stop1() // the bridge dies
	if err := w.cms.Delete(cm); err != nil {
		t.Fatal(err)
	}
	obj, _, _ := w.pods.GetByKey("ns/adopt")
	seen := obj.(*corev1.Pod)
	id := translate.ContainerID(pod.UID, "main")
	before := pidOf(t, w, id)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p2 := w.provider(ctx)
	if err := p2.CreatePod(ctx, seen); err != nil {
		t.Fatal(err)
	}
	wait(t, p2, "adopt", "Running again", func(pod *corev1.Pod) bool {
		rec := p2.recordOf(pod.UID)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.ctrs[0].state == sm.Running
	})
	if after := pidOf(t, w, id); after != before {
		t.Fatalf("relaunched: pid %d, was %d", after, before)
	}
	if err := p2.DeletePod(ctx, seen); err != nil {
		t.Fatal(err)
	}
	w.gone(id)
}

func pidOf(t *testing.T, w *world, id string) int {
	t.Helper()
	list, err := w.agent.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == id {
			return int(c.PID)
		}
	}
	t.Fatalf("%s is not running", id)
	return 0
}

// A same-named successor (a StatefulSet's) is another pod: deleting the old
// one leaves the new one running.
func TestSameNamedSuccessor(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	old := testPod("web-0", "55555555-5555-4555-8555-555555555555", "sleep 300")
	w.add(old)
	if err := p.CreatePod(ctx, old); err != nil {
		t.Fatal(err)
	}
	wait(t, p, "web-0", "Running", running("main"))
	if err := w.pods.Delete(old); err != nil {
		t.Fatal(err)
	}
	succ := testPod("web-0", "66666666-6666-4666-8666-666666666666", "sleep 300")
	w.add(succ)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = p.DeletePod(ctx, old) }()
	go func() { defer wg.Done(); _ = p.CreatePod(ctx, succ) }()
	wg.Wait()
	w.gone(translate.ContainerID(old.UID, "main"))
	got := wait(t, p, "web-0", "the successor Running", func(pod *corev1.Pod) bool { return pod.UID == succ.UID && running("main")(pod) })
	if got.UID != succ.UID || !w.live()[translate.ContainerID(succ.UID, "main")] {
		t.Fatal("the successor does not run")
	}
}

// A container the agent runs for no pod is killed and removed by the sweep.
func TestSweepKillsOrphans(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pod := testPod("orphan", "77777777-7777-4777-8777-777777777777", "sleep 300")
	id := w.launchBehindTheBridge(pod)
	p := w.provider(ctx)
	go p.Reconcile(ctx)
	w.gone(id)
}

// An exit that arrives while the container is thought disconnected is its
// exit, not dropped.
func TestExitWhileDisconnected(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	pod := testPod("disc", "88888888-8888-4888-8888-888888888888", "sleep 300")
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	wait(t, p, "disc", "Running", running("main"))
	rec := p.recordOf(pod.UID)
	p.enqueue(rec, item{c: rec.ctrs[0], ev: sm.Event{Type: sm.AgentUnreachable}})
	if err := w.agent.Kill(ctx, translate.ContainerID(pod.UID, "main"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := wait(t, p, "disc", "Failed", phase(corev1.PodFailed))
	if term := got.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 137 {
		t.Fatalf("exit not kept: %+v", got.Status.ContainerStatuses[0].State)
	}
}

// virtual-kubelet deletes a pod that stopped running straight from the API,
// without DeletePod: the sweep releases its record and removes its container.
func TestFinishedPodLeavingIsRemoved(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	pod := testPod("done", "99999999-9999-4999-8999-999999999999", "exit 0")
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	wait(t, p, "done", "Succeeded", phase(corev1.PodSucceeded))
	if err := w.pods.Delete(pod); err != nil {
		t.Fatal(err)
	}
	go p.Reconcile(ctx)
	w.gone(translate.ContainerID(pod.UID, "main"))
	deadline := time.Now().Add(10 * time.Second)
	for !released(p, pod.UID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !released(p, pod.UID) {
		t.Fatal("the record of a pod gone from the API was not released")
	}
}

// A REMOVE the agent does not take keeps the pod (and its finalizer) until
// the agent takes it: a bridge that restarted meanwhile would still find it.
func TestRemoveWaitsForTheAgent(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	pod := testPod("kept", "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "exit 0")
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	done := wait(t, p, "kept", "Succeeded", phase(corev1.PodSucceeded))
	if !slices.Contains(done.Finalizers, Finalizer) {
		t.Fatalf("the published pod lacks the finalizer: %v", done.Finalizers)
	}
	w.away.Store(true)
	now := metav1.Now()
	done.DeletionTimestamp = &now
	if err := p.DeletePod(ctx, done); err != nil {
		t.Fatal(err)
	}
	// Several REMOVEs fail meanwhile (back-off from 1 s): the pod stays.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if released(p, pod.UID) {
			t.Fatal("released while the agent had not taken the REMOVE")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.away.Store(false)
	deadline = time.Now().Add(20 * time.Second)
	for !released(p, pod.UID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !released(p, pod.UID) {
		t.Fatal("never released once the agent answered")
	}
	w.gone(translate.ContainerID(pod.UID, "main"))
}

// Containers beyond the WAIT budget are followed by the GET_CONTAINERS
// sweep: while the budget stays taken by long runs, each exit beyond it
// still reaches its pod, with its own code.
func TestExitsBeyondTheWaitBudget(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx, func(c *Config) { c.MaxWaits = 2 })
	uids := 0
	create := func(name, script string) {
		uids++
		pod := testPod(name, types.UID(fmt.Sprintf("22222222-2222-4222-8222-%012d", uids)), script)
		w.add(pod)
		if err := p.CreatePod(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"long-a", "long-b"} {
		create(name, "sleep 600")
		wait(t, p, name, "running", running("main"))
	}
	// The short runs end together once the test says so.
	gate := filepath.Join(t.TempDir(), "go")
	const n = 6
	for i := 0; i < n; i++ {
		create(fmt.Sprintf("short-%d", i), fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; exit %d", gate, 10+i))
	}
	for i := 0; i < n; i++ {
		wait(t, p, fmt.Sprintf("short-%d", i), "running", running("main"))
	}
	if long, swept := p.waits.following(); long != 2 || swept != n {
		t.Fatalf("followed by WAIT %d, by the sweep %d; want 2 and %d", long, swept, n)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		got := wait(t, p, fmt.Sprintf("short-%d", i), "failed", phase(corev1.PodFailed))
		if term := got.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != int32(10+i) {
			t.Fatalf("short-%d: terminated %+v, want exit code %d", i, term, 10+i)
		}
	}
}

// The bridge's own latency is observed once per pod, at its first launch,
// however many containers it launches.
func TestAdmitToLaunchObservedOnce(t *testing.T) {
	count := func() uint64 {
		var m dto.Metric
		if err := admitToLaunch.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := w.provider(ctx)
	before := count()
	pod := testPod("latency", "33333333-3333-4333-8333-333333333333", "sleep 30")
	pod.Spec.InitContainers = []corev1.Container{ctrSpec("first", "exit 0")}
	w.add(pod)
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	wait(t, p, "latency", "running its app", running("main"))
	if got := count() - before; got != 1 {
		t.Fatalf("%d observations for one pod with two launches, want 1", got)
	}
}
