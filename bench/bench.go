package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/integration/stack"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
)

// Namespace holds every pod the bench creates; SetLabel names the set (one
// scenario, implementation and round) a pod belongs to.
const (
	Namespace    = "vk-bench"
	SetLabel     = "vk-bench/set"
	BaselineNode = "vk-baseline"
	ctrName      = "c"
)

// Options are the command's flags.
type Options struct {
	Burst, Scale, Restart, Rounds int
	Scenarios                     []string
	// Idle is the window over which idle RSS and CPU are read.
	Idle time.Duration
	// Kills is how many pods' processes are killed at scale to time a
	// status change; OutageKills how many die while vk-titus is down.
	Kills, OutageKills int
	// Creators is how many create/delete calls the bench keeps in flight.
	Creators int
	// Nodes is how many agents (virtual nodes) the nodes scenario adds to
	// vk-titus, NodePods how many pods each runs; their agents listen on
	// NodesPortBase, NodesPortBase+1, ...
	Nodes, NodePods, NodesPortBase int
	// BaselineQueueQPS > 0 builds the baseline with vknode and pod queues
	// at that rate (vk-titus's node plumbing) instead of nodeutil.
	BaselineQueueQPS float64
	// StopStack brings the stack down at the end even if it was up before.
	StopStack bool
	// Self is the bench binary, re-run as `baseline` for the baseline node.
	Self string
}

// impl is one side of the comparison.
type impl struct {
	name string // "baseline" or "vk-titus"
	node string
}

// Bench runs the scenarios against the local stack.
type Bench struct {
	o        Options
	env      *stack.Env
	client   kubernetes.Interface
	tracker  *Tracker
	agent    *agentclient.Client
	agentDir string
	rep      *Report

	baseline *child

	startedStack bool
	origConfig   []byte // vk-titus.yaml before the bench changed it
	stopTracker  context.CancelFunc
	// flowSchema is set once the nodes scenario made its FlowSchema;
	// teardown deletes it.
	flowSchema string
}

// Run brings the stack up when it is not, runs the scenarios, prints the
// table and writes .local/bench/. It always cleans up its pods.
func Run(ctx context.Context, o Options) (err error) {
	RaiseOpenFileLimit()
	b := &Bench{o: o, rep: NewReport(o)}
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	unlock, err := stack.LockTool(filepath.Join(root, ".local"), "bench")
	if err != nil {
		return err
	}
	defer unlock()
	env, err := stack.Load()
	if errors.Is(err, stack.ErrNotUp) {
		logf("stack not up: scripts/stack.sh up")
		if err := script(ctx, "", "up"); err != nil {
			return err
		}
		b.startedStack = true
		env, err = stack.Load()
	}
	if err != nil {
		return err
	}
	b.env = env
	if env.LegacyAgent == "" || env.Vars["VK_TITUS"] == "0" {
		return errors.New("the stack must run vk-titus and at least one agent")
	}
	defer func() {
		// Cleanup must run even when ctx was cancelled (^C).
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if cerr := b.teardown(cctx); cerr != nil {
			logf("teardown: %v", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()

	cfg, err := env.RestConfig()
	if err != nil {
		return err
	}
	// The bench's own client must never be the bottleneck.
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.UserAgent = "vk-bench"
	if b.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	b.agent = agentclient.New(env.LegacyAgent, agentclient.Options{CallTimeout: 60 * time.Second, Credential: env.MesosCredential})
	b.agentDir = filepath.Join(env.StackRoot, "agents", "agent-0")

	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, sc := range o.Scenarios {
		if ctx.Err() != nil {
			break
		}
		if sc == "micro" {
			if err := b.micro(ctx); err != nil {
				b.rep.Error("micro", err)
			}
			continue
		}
		for r := 1; r <= o.Rounds && ctx.Err() == nil; r++ {
			for _, im := range b.sides(sc, r) {
				if err := b.scenario(ctx, sc, r, im); err != nil {
					if ctx.Err() != nil {
						return ctx.Err() // interrupted: teardown cleans up
					}
					logf("%s round %d %s: %v", sc, r, im.name, err)
					b.rep.Error(fmt.Sprintf("%s r%d %s", sc, r, im.name), err)
					if cerr := b.cleanupAll(ctx); cerr != nil {
						return fmt.Errorf("cleanup after a failed scenario: %w", cerr)
					}
				}
			}
		}
		b.rep.Save(env.StackRoot) // a partial report survives a later failure
	}
	b.rep.Finish()
	fmt.Print(b.rep.Markdown())
	if err := b.rep.Save(env.StackRoot); err != nil {
		return err
	}
	if n := len(b.rep.Errors); n > 0 {
		// The report is written; the exit status still says it is partial.
		return fmt.Errorf("%d scenario run(s) failed (see the report's errors)", n)
	}
	return nil
}

// sides are the implementations a scenario's round runs, in order: both,
// alternating who goes first so that warm-up favours neither; vk-titus
// alone for nodes (the baseline serves one node per process).
func (b *Bench) sides(sc string, round int) []impl {
	vkt := impl{"vk-titus", b.env.NodeName}
	if sc == "nodes" {
		return []impl{vkt}
	}
	if round%2 == 0 {
		return []impl{vkt, {"baseline", BaselineNode}}
	}
	return []impl{{"baseline", BaselineNode}, vkt}
}

func (b *Bench) scenario(ctx context.Context, sc string, round int, im impl) error {
	logf("== %s round %d: %s", sc, round, im.name)
	switch sc {
	case "burst":
		if err := b.burst(ctx, round, im, true); err != nil {
			return err
		}
		return b.burst(ctx, round, im, false)
	case "scale":
		return b.scale(ctx, round, im)
	case "restart":
		return b.restart(ctx, round, im)
	case "nodes":
		return b.nodes(ctx, round)
	}
	return fmt.Errorf("unknown scenario %q", sc)
}

// setup gives vk-titus the capacity the issue asks for, prepares the
// namespace, removes what an interrupted run left, and starts the baseline.
func (b *Bench) setup(ctx context.Context) error {
	if err := b.configureVKTitus(ctx); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if _, err := b.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// ServiceAccount admission needs the default account, and vk-titus the
	// kube-root-ca.crt ConfigMap of the projected token volume.
	if err := poll(ctx, 2*time.Minute, "namespace "+Namespace+" ready", func() (bool, error) {
		_, e1 := b.client.CoreV1().ServiceAccounts(Namespace).Get(ctx, "default", metav1.GetOptions{})
		_, e2 := b.client.CoreV1().ConfigMaps(Namespace).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return e1 == nil && e2 == nil, nil
	}); err != nil {
		return err
	}
	// The tracker outlives ctx: teardown after ^C still waits on it.
	trackCtx, stop := context.WithCancel(context.Background())
	b.stopTracker = stop
	var err error
	if b.tracker, err = StartTracker(trackCtx, b.client, Namespace); err != nil {
		return err
	}
	if err := b.startBaseline(ctx); err != nil {
		return err
	}
	return b.cleanupAll(ctx)
}

// configureVKTitus adds the capacity override to .local/vk-titus.yaml (the
// agent's 8 cpus / 16 GiB and 10,000 pods are too few for the scale
// scenario through the scheduler) and restarts vk-titus when it changed.
func (b *Bench) configureVKTitus(ctx context.Context) error {
	path := filepath.Join(b.env.StackRoot, "vk-titus.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.Contains(string(orig), "maxPods:") {
		return nil
	}
	cfg := strings.TrimRight(string(orig), "\n") + "\nresources: {cpu: \"1000\", memory: \"1000Gi\"}\nmaxPods: 20000\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	b.origConfig = orig
	logf("vk-titus: capacity 1000 cpus / 1000Gi / 20000 pods; restarting it")
	if err := script(ctx, b.env.Root, "stop", "vk-titus"); err != nil {
		return err
	}
	return script(ctx, b.env.Root, "start", "vk-titus")
}

func (b *Bench) teardown(ctx context.Context) error {
	var errs []error
	if b.client != nil && b.tracker != nil {
		errs = append(errs, b.cleanupAll(ctx))
	}
	b.stopBaseline(syscall.SIGTERM)
	if b.client != nil {
		errs = append(errs, b.deleteFlowSchema(ctx))
	}
	if b.stopTracker != nil {
		b.stopTracker()
	}
	if b.client != nil {
		err := b.client.CoreV1().Nodes().Delete(ctx, BaselineNode, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	switch {
	case b.startedStack || b.o.StopStack:
		if b.origConfig != nil {
			errs = append(errs, os.WriteFile(filepath.Join(b.env.StackRoot, "vk-titus.yaml"), b.origConfig, 0o644))
		}
		logf("scripts/stack.sh down")
		errs = append(errs, script(ctx, b.env.Root, "down"))
	case b.origConfig != nil:
		logf("restoring vk-titus.yaml and restarting vk-titus")
		errs = append(errs, os.WriteFile(filepath.Join(b.env.StackRoot, "vk-titus.yaml"), b.origConfig, 0o644),
			script(ctx, b.env.Root, "stop", "vk-titus"), script(ctx, b.env.Root, "start", "vk-titus"))
	}
	return errors.Join(errs...)
}

// script runs scripts/stack.sh (root "" : the working directory's repo).
func script(ctx context.Context, root string, args ...string) error {
	if root == "" {
		r, err := stack.RepoRoot()
		if err != nil {
			return err
		}
		root = r
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "stack.sh"), args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/stack.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// poll calls f every 250 ms until it is done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: timed out after %s", what, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------- baseline

// startBaseline runs this binary as `baseline` in a process of its own, so
// that its RSS and CPU can be read as vk-titus's are, and waits until its
// node is Ready with a heartbeat from this start.
func (b *Bench) startBaseline(ctx context.Context) error {
	start := time.Now().Add(-time.Second)
	c, err := b.startChild("vk-baseline", b.o.Self, "baseline", "--kubeconfig", b.env.Kubeconfig, "--nodename", BaselineNode,
		"--kube-api-qps", "200", "--kube-api-burst", "400", "--pod-sync-workers", "10",
		"--pod-queue-qps", fmt.Sprint(b.o.BaselineQueueQPS))
	if err != nil {
		return err
	}
	b.baseline = c
	return poll(ctx, 2*time.Minute, "node "+BaselineNode+" Ready", func() (bool, error) {
		if c.exited() {
			return false, fmt.Errorf("vk-baseline exited; see %s", c.log)
		}
		n, err := b.client.CoreV1().Nodes().Get(ctx, BaselineNode, metav1.GetOptions{})
		return err == nil && readySince(n, start), nil
	})
}

// readySince tells whether n is Ready with a heartbeat after since (the API
// keeps a node's last status, Ready included, after its process is gone).
func readySince(n *corev1.Node, since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && c.LastHeartbeatTime.After(since) {
			return true
		}
	}
	return false
}

func (b *Bench) stopBaseline(sig syscall.Signal) {
	if b.baseline != nil {
		b.baseline.stop(sig)
		b.baseline = nil
	}
}

// cpuSnapshot is CPUSnapshot with the baseline and the bench itself.
func (b *Bench) cpuSnapshot() map[string]float64 {
	extra := map[string]int{"vk-bench": os.Getpid()}
	if b.baseline != nil {
		extra["vk-baseline"] = b.baseline.pid()
	}
	return CPUSnapshot(b.env.StackRoot, extra)
}

// addCPU records the CPU seconds each part of the stack spent between two
// snapshots: the side's node process, the agent, the API server, and every
// process of the stack together: where a burst's time goes on a machine
// whose cores everything shares.
func (b *Bench) addCPU(sc, phase string, im impl, before, after map[string]float64) {
	node := "vk-titus"
	if im.name == "baseline" {
		node = "vk-baseline"
	}
	total := 0.0
	for name, v := range after {
		total += v - before[name]
	}
	for _, c := range []struct{ key, label string }{{node, "node process"}, {"agent-0", "agent-0"},
		{"kube-apiserver", "kube-apiserver"}} {
		if _, ok := after[c.key]; ok {
			b.rep.Add(sc, fmt.Sprintf("CPU s %s: %s", phase, c.label), im.name, after[c.key]-before[c.key])
		}
	}
	b.rep.Add(sc, fmt.Sprintf("CPU s %s: all processes", phase), im.name, total)
}

// pid is the process whose RSS and CPU stand for im.
func (b *Bench) pid(im impl) (int, error) {
	if im.name == "baseline" {
		if b.baseline == nil {
			return 0, errors.New("vk-baseline is not running")
		}
		return b.baseline.pid(), nil
	}
	return ReadPidFile(b.env.StackRoot, "vk-titus")
}

// ---------------------------------------------------------------- pods

// podSpec is the bench pod: one `sleep 100000` container, tiny requests,
// never restarted (a killed process must show as terminated, not be
// relaunched), tolerating the virtual-kubelet taint. preset binds it to node
// directly; otherwise the scheduler places it there by hostname.
func podSpec(name, set, node string, preset bool) *corev1.Pod {
	grace := int64(2)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{SetLabel: set}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Tolerations:                   []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: ctrName, Image: "busybox", Command: []string{"sleep", "100000"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("1Mi")}},
			}},
		},
	}
	if preset {
		p.Spec.NodeName = node
	} else {
		p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node}
	}
	return p
}

// parallel runs f for every name with b.o.Creators calls in flight, and
// returns the first error.
func (b *Bench) parallel(ctx context.Context, names []string, f func(ctx context.Context, name string) error) error {
	ch := make(chan string)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < b.o.Creators; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range ch {
				if err := f(ctx, name); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, n := range names {
		select {
		case ch <- n:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// podName is the name of pod i of a set.
func podName(set string, i int) string { return fmt.Sprintf("%s-%05d", set, i) }

// createPods creates n pods of a set on node and records when each create
// returned.
func (b *Bench) createPods(ctx context.Context, set string, n int, node string, preset bool) ([]string, error) {
	return b.createPodsOn(ctx, set, n, func(int) string { return node }, preset)
}

// createPodsOn is createPods with pod i on nodeOf(i).
func (b *Bench) createPodsOn(ctx context.Context, set string, n int, nodeOf func(i int) string, preset bool) ([]string, error) {
	names := make([]string, n)
	nodes := make(map[string]string, n)
	for i := range names {
		names[i] = podName(set, i)
		nodes[names[i]] = nodeOf(i)
	}
	err := b.parallel(ctx, names, func(ctx context.Context, name string) error {
		pod := podSpec(name, set, nodes[name], preset)
		for attempt := 0; ; attempt++ {
			_, err := b.client.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{})
			if err == nil {
				b.tracker.MarkCreated(name, time.Now())
				return nil
			}
			// An overloaded API server answers 429/5xx/timeouts: retry a few times.
			if attempt >= 5 || ctx.Err() != nil || apierrors.IsInvalid(err) || apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create %s: %w", name, err)
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
	})
	return names, err
}

// syncTimeout bounds a wait for n pods to be handled by a node: virtual-
// kubelet's pod controller (nodeutil, v1.13.0) takes pods from a work queue
// with client-go's default controller rate limiter, 10 per second after a
// burst of 100 (creation takes one item per pod, deletion two), so n pods
// need up to n/5 seconds.
func syncTimeout(n int) time.Duration {
	return 3*time.Minute + time.Duration(n)*250*time.Millisecond
}

// waitRunning waits until every pod was seen Running.
func (b *Bench) waitRunning(ctx context.Context, what string, names []string) error {
	return b.tracker.WaitFor(ctx, syncTimeout(len(names)), what, func() (bool, string) {
		n := b.tracker.Count(names, func(p PodTimes) bool { return !p.Running.IsZero() })
		return n == len(names), fmt.Sprintf("%d/%d Running", n, len(names))
	})
}

// settle waits until no pod of names has changed for quiet (at most limit):
// status updates still in flight would count as idle work otherwise.
func (b *Bench) settle(ctx context.Context, names []string, quiet, limit time.Duration) {
	_ = b.tracker.WaitFor(ctx, limit, "settle", func() (bool, string) {
		var last time.Time
		for _, p := range b.tracker.Get(names) {
			if p.LastUpdate.After(last) {
				last = p.LastUpdate
			}
		}
		return time.Since(last) >= quiet, "last pod event " + time.Since(last).Round(time.Second).String() + " ago"
	})
}

// deleteSet deletes the pods and waits until they are gone from the API and,
// for vk-titus, the agent lists none of their containers and no container
// process is left under its work directory. It returns the time from the
// first delete call until all of that held.
func (b *Bench) deleteSet(ctx context.Context, im impl, names []string) (time.Duration, error) {
	if im.name != "vk-titus" {
		return b.deletePods(ctx, names, nil)
	}
	uids := map[types.UID]bool{}
	for _, p := range b.tracker.Get(names) {
		uids[p.UID] = true
	}
	return b.deletePods(ctx, names, func(ctx context.Context) bool {
		live, err := b.agent.Containers(ctx)
		if err != nil {
			return false
		}
		for _, c := range live {
			if uids[uidOf(c.ID)] {
				return false
			}
		}
		return ProcsUnder(b.agentDir) == 0
	})
}

// deletePods deletes the pods and waits until they are gone from the API
// and ended (nil: at once) reports their containers ended. It returns the
// time from the first delete call until both held.
func (b *Bench) deletePods(ctx context.Context, names []string, ended func(context.Context) bool) (time.Duration, error) {
	t0 := time.Now()
	err := b.parallel(ctx, names, func(ctx context.Context, name string) error {
		err := b.client.CoreV1().Pods(Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	timeout := syncTimeout(len(names))
	err = b.tracker.WaitFor(ctx, timeout, "deleted", func() (bool, string) {
		n := b.tracker.Count(names, func(p PodTimes) bool { return !p.Gone.IsZero() })
		return n == len(names), fmt.Sprintf("%d/%d gone", n, len(names))
	})
	if err != nil {
		return 0, err
	}
	if ended != nil {
		err = poll(ctx, timeout, "agent containers and processes ended", func() (bool, error) { return ended(ctx), nil })
	}
	took := time.Since(t0)
	b.tracker.Forget(names)
	return took, err
}

// cleanupAll deletes every bench pod (an interrupted run's too) and waits
// until they and their processes are gone; pods stuck beyond the wait are
// force-deleted, and processes vk-titus failed to end are reported.
func (b *Bench) cleanupAll(ctx context.Context) error {
	list, err := b.client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(list.Items) > 0 {
		logf("cleanup: deleting %d pod(s)", len(list.Items))
		names := make([]string, len(list.Items))
		for i, p := range list.Items {
			names[i] = p.Name
		}
		if _, err := b.deleteSet(ctx, impl{name: "vk-titus"}, names); err != nil {
			logf("cleanup: %v; force-deleting what is left", err)
			zero := int64(0)
			_ = b.client.CoreV1().Pods(Namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		}
	}
	if n := ProcsUnder(b.agentDir); n > 0 {
		return fmt.Errorf("%d container process(es) still run under %s", n, b.agentDir)
	}
	return nil
}
