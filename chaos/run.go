package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/integration/stack"
	"github.com/vk-titus/vk-titus/vknode"
)

// Options configure a chaos run.
type Options struct {
	Duration time.Duration // workload and faults
	Seed     int64
	Settle   time.Duration // after the workload stops, before the checks
	Report   string        // markdown report path ("" : .local/chaos/latest.md)
	NoFaults bool          // the workload alone (a baseline for the checker)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s vk-chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Result is what a run found.
type Result struct {
	Seed       int64
	Schedule   []Fault
	Injected   map[string]int // fault kind → count
	Failed     []string       // faults whose kill or start failed
	Workload   map[string]int // what the workload did
	Errors     map[string]int // workload calls that failed (expected under faults)
	Violations []Violation
	Started    time.Time
	Took       time.Duration
	Duration   time.Duration // of the workload and faults (the schedule depends on it)
}

type runner struct {
	o       Options
	env     *stack.Env
	kc      *kubernetes.Clientset
	legacy  *LegacyClient
	mesos   *http.Client // direct agent calls, with the stack's credential
	ns      string
	rnd     *rand.Rand
	mu      sync.Mutex
	res     *Result
	jobs    []LegacyJob
	apps    []string
	started bool
}

// Execute brings the stack up if needed (AGENTS=3 MASTERS=2), runs the seeded
// workload and fault schedule for o.Duration, lets things settle, runs the
// checks and writes the report. The error is about the run itself; the
// violations are in the Result.
func Execute(ctx context.Context, o Options) (*Result, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return nil, err
	}
	unlock, err := stack.LockTool(filepath.Join(root, ".local"), "chaos")
	if err != nil {
		return nil, err
	}
	defer unlock()
	r := &runner{o: o, rnd: rand.New(rand.NewSource(o.Seed)), res: &Result{
		Seed: o.Seed, Duration: o.Duration, Injected: map[string]int{}, Workload: map[string]int{}, Errors: map[string]int{}, Started: time.Now(),
	}}
	env, err := stack.Load()
	if errors.Is(err, stack.ErrNotUp) {
		logf("stack not up: AGENTS=3 MASTERS=2 scripts/stack.sh up")
		if err := script(ctx, root, []string{"AGENTS=3", "MASTERS=2"}, "up"); err != nil {
			return nil, err
		}
		r.started = true
		env, err = stack.Load()
	}
	if err != nil {
		return nil, err
	}
	r.env = env
	if env.JobAPI == "" || len(env.LegacyAgents) == 0 {
		return nil, errors.New("the chaos run needs the stack with vk-titus, masters, agents and the gateway (make up AGENTS=3 MASTERS=2)")
	}
	// As the stack's test client (system:masters), which the job API lets
	// do anything.
	r.legacy = &LegacyClient{Base: env.JobAPI, HTTP: env.JobAPIClient(30*time.Second, false)}
	r.mesos = env.MesosClient(20 * time.Second)
	cfg, err := env.RestConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "vk-chaos"
	cfg.Timeout = 20 * time.Second
	if r.kc, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	masters := 0
	fmt.Sscan(env.Vars["MASTERS"], &masters)
	r.res.Schedule = Schedule(o.Seed, o.Duration, len(env.LegacyAgents), masters)
	if o.NoFaults {
		r.res.Schedule = nil
	}
	logf("seed %d (replay: make chaos SEED=%d DURATION=%s); %d faults scheduled:\n%s", o.Seed, o.Seed, o.Duration, len(r.res.Schedule), FormatSchedule(r.res.Schedule))

	r.ns = fmt.Sprintf("chaos-%d", time.Now().Unix())
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	defer r.teardown()

	wctx, stop := context.WithTimeout(ctx, o.Duration)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.workload(wctx, rand.New(rand.NewSource(o.Seed+1))) }()
	go func() { defer wg.Done(); r.faults(wctx) }()
	wg.Wait()
	stop()
	if ctx.Err() != nil {
		return r.res, ctx.Err()
	}

	logf("workload and faults over; making sure every component runs")
	if err := r.heal(ctx); err != nil {
		r.res.Failed = append(r.res.Failed, "heal: "+err.Error())
	}
	logf("stopping the workload, settling for up to %s", o.Settle)
	r.stopWorkload(ctx)
	r.settle(ctx)
	logf("checking")
	r.res.Violations = r.check(ctx)
	r.res.Took = time.Since(r.res.Started)
	path := o.Report
	if path == "" {
		path = filepath.Join(env.StackRoot, "chaos", "latest.md")
	}
	md := FormatReport(r.res)
	fmt.Print(md)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			logf("report: %v", err)
		} else {
			logf("report: %s", path)
		}
	}
	return r.res, nil
}

func (r *runner) count(m map[string]int, k string) {
	r.mu.Lock()
	m[k]++
	r.mu.Unlock()
}

func (r *runner) setup(ctx context.Context) error {
	if _, err := r.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace %s: %w", r.ns, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		if _, err := r.kc.CoreV1().ServiceAccounts(r.ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no default ServiceAccount in %s", r.ns)
		}
	}
	// Applications are named per run (after its namespace), not per seed:
	// a replay on a stack that kept an earlier run's jobs must not count
	// them as its own.
	for i := 0; i < 2; i++ {
		r.apps = append(r.apps, fmt.Sprintf("%s-app%d", r.ns, i))
	}
	return nil
}

func (r *runner) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, j := range r.jobs {
		_ = r.legacy.KillJob(ctx, j.ID)
	}
	_ = r.kc.CoreV1().Namespaces().Delete(ctx, r.ns, metav1.DeleteOptions{})
	if r.started {
		logf("scripts/stack.sh down (the run brought the stack up)")
		_ = script(ctx, r.env.Root, nil, "down")
	}
}

// ---------------------------------------------------------------- faults

func (r *runner) faults(ctx context.Context) {
	start := time.Now()
	for _, f := range r.res.Schedule {
		if !vknode.Sleep(ctx, time.Until(start.Add(f.At))) {
			return
		}
		logf("fault: kill %s for %s", f.Target, f.Down.Round(time.Second))
		if err := script(context.Background(), r.env.Root, nil, "kill", f.Target); err != nil {
			r.mu.Lock()
			r.res.Failed = append(r.res.Failed, fmt.Sprintf("kill %s: %v", f.Target, err))
			r.mu.Unlock()
			continue
		}
		r.count(r.res.Injected, f.Kind)
		vknode.Sleep(ctx, f.Down) // the component comes back even when the run ends
		if err := r.start(f.Target); err != nil {
			r.mu.Lock()
			r.res.Failed = append(r.res.Failed, fmt.Sprintf("start %s: %v", f.Target, err))
			r.mu.Unlock()
		}
	}
}

// start starts a component again, retrying: a component may need another
// one that is just coming back (vk-titus its API server, say).
func (r *runner) start(name string) error {
	var err error
	for i := 0; i < 3; i++ {
		if err = script(context.Background(), r.env.Root, nil, "start", name); err == nil {
			return nil
		}
		time.Sleep(5 * time.Second)
	}
	return err
}

// heal starts whatever does not run (stack.sh up is idempotent), in the
// shape the stack runs in: an up with another MESOS_AUTH would restart
// the agents, masters and vk-titus.
func (r *runner) heal(ctx context.Context) error {
	return script(ctx, r.env.Root, []string{"AGENTS=" + r.env.Vars["AGENTS"], "MASTERS=" + r.env.Vars["MASTERS"],
		"MESOS_AUTH=" + r.env.Vars["MESOS_AUTH"], "SKIP_BUILD=1"}, "up")
}

// ---------------------------------------------------------------- workload

func (r *runner) podSpec(restart corev1.RestartPolicy, script string) corev1.PodSpec {
	return corev1.PodSpec{
		RestartPolicy:                 restart,
		TerminationGracePeriodSeconds: ptr(int64(3)),
		NodeSelector:                  map[string]string{"type": "virtual-kubelet"},
		Tolerations:                   []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
		Containers: []corev1.Container{{
			Name: "main", Image: "busybox", Command: []string{"sh", "-c", script},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// workload runs one action every 2–5 s until ctx ends.
func (r *runner) workload(ctx context.Context, rnd *rand.Rand) {
	n := 0
	stages := []string{"legacy", "kube", "50%"}
	for ctx.Err() == nil {
		n++
		var err error
		var what string
		switch x := rnd.Intn(100); {
		case x < 30:
			what = "bare-pod"
			err = r.barePod(ctx, rnd, n)
		case x < 45:
			what = "job"
			err = r.job(ctx, rnd, n)
		case x < 60:
			what = "deployment"
			err = r.deployment(ctx, rnd, n)
		case x < 80:
			what = "legacy-job"
			err = r.legacyJob(ctx, rnd, n)
		case x < 88:
			what = "stage-change"
			app := r.apps[rnd.Intn(len(r.apps))]
			err = r.legacy.SetStage(ctx, app, stages[rnd.Intn(len(stages))])
		default:
			what = "cleanup"
			err = r.cleanupSome(ctx, rnd)
		}
		if err != nil {
			r.count(r.res.Errors, what)
		} else {
			r.count(r.res.Workload, what)
		}
		vknode.Sleep(ctx, 2*time.Second+time.Duration(rnd.Int63n(int64(3*time.Second))))
	}
}

func (r *runner) barePod(ctx context.Context, rnd *rand.Rand, n int) error {
	var pol corev1.RestartPolicy
	var script string
	switch rnd.Intn(3) {
	case 0:
		pol, script = corev1.RestartPolicyNever, fmt.Sprintf("sleep %d; exit %d", 2+rnd.Intn(20), rnd.Intn(4))
	case 1:
		pol, script = corev1.RestartPolicyOnFailure, fmt.Sprintf("sleep %d; exit %d", 2+rnd.Intn(10), rnd.Intn(2))
	default:
		pol, script = corev1.RestartPolicyAlways, fmt.Sprintf("sleep %d; exit %d", 5+rnd.Intn(60), rnd.Intn(3))
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", n), Labels: map[string]string{"chaos": "pod"}},
		Spec: r.podSpec(pol, script)}
	_, err := r.kc.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{})
	return err
}

func (r *runner) job(ctx context.Context, rnd *rand.Rand, n int) error {
	comp := int32(1 + rnd.Intn(3))
	mode := batchv1.IndexedCompletion
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-%d", n)}, Spec: batchv1.JobSpec{
		Completions: &comp, Parallelism: ptr(int32(2)), CompletionMode: &mode, BackoffLimit: ptr(int32(20)),
		Template: corev1.PodTemplateSpec{Spec: r.podSpec(corev1.RestartPolicyNever, fmt.Sprintf("sleep %d; exit 0", 2+rnd.Intn(8)))},
	}}
	_, err := r.kc.BatchV1().Jobs(r.ns).Create(ctx, j, metav1.CreateOptions{})
	return err
}

func (r *runner) deployment(ctx context.Context, rnd *rand.Rand, n int) error {
	list, err := r.kc.AppsV1().Deployments(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(list.Items) >= 3 {
		d := list.Items[rnd.Intn(len(list.Items))]
		d.Spec.Replicas = ptr(int32(rnd.Intn(4)))
		_, err := r.kc.AppsV1().Deployments(r.ns).Update(ctx, &d, metav1.UpdateOptions{})
		return err
	}
	name := fmt.Sprintf("deploy-%d", n)
	labels := map[string]string{"app": name}
	spec := r.podSpec(corev1.RestartPolicyAlways, "trap 'exit 0' TERM; while true; do sleep 1; done")
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(1 + rnd.Intn(3))), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
	}}
	_, err = r.kc.AppsV1().Deployments(r.ns).Create(ctx, d, metav1.CreateOptions{})
	return err
}

func (r *runner) legacyJob(ctx context.Context, rnd *rand.Rand, n int) error {
	app := r.apps[rnd.Intn(len(r.apps))]
	batch := rnd.Intn(2) == 0
	size := 1 + rnd.Intn(2)
	script := fmt.Sprintf("sleep %d; exit 0", 3+rnd.Intn(10))
	if !batch {
		script = "trap 'exit 0' TERM; while true; do sleep 1; done"
	}
	id, err := r.legacy.CreateJob(ctx, Descriptor(app, script, batch, size))
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.jobs = append(r.jobs, LegacyJob{ID: id, App: app, Batch: batch, Size: size, Created: time.Now()})
	r.mu.Unlock()
	return nil
}

// cleanupSome deletes a finished bare pod or two, a Deployment, or kills a
// legacy service job.
func (r *runner) cleanupSome(ctx context.Context, rnd *rand.Rand) error {
	switch rnd.Intn(3) {
	case 0:
		pods, err := r.kc.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "chaos=pod"})
		if err != nil || len(pods.Items) == 0 {
			return err
		}
		p := pods.Items[rnd.Intn(len(pods.Items))]
		return r.kc.CoreV1().Pods(r.ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
	case 1:
		list, err := r.kc.AppsV1().Deployments(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			return err
		}
		return r.kc.AppsV1().Deployments(r.ns).Delete(ctx, list.Items[rnd.Intn(len(list.Items))].Name, metav1.DeleteOptions{})
	default:
		r.mu.Lock()
		var svc []int
		for i, j := range r.jobs {
			if !j.Batch && !j.Killed {
				svc = append(svc, i)
			}
		}
		r.mu.Unlock()
		if len(svc) == 0 {
			return nil
		}
		i := svc[rnd.Intn(len(svc))]
		if err := r.legacy.KillJob(ctx, r.jobs[i].ID); err != nil {
			return err
		}
		r.mu.Lock()
		r.jobs[i].Killed = true
		r.mu.Unlock()
		return nil
	}
}

// stopWorkload deletes the Deployments and the bare pods that restart, and
// kills the legacy service jobs; Jobs and batch jobs are left to finish.
func (r *runner) stopWorkload(ctx context.Context) {
	bg := metav1.DeletePropagationBackground
	_ = r.kc.AppsV1().Deployments(r.ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{})
	if pods, err := r.kc.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "chaos=pod"}); err == nil {
		for _, p := range pods.Items {
			if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
				_ = r.kc.CoreV1().Pods(r.ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		}
	}
	for i, j := range r.jobs {
		if !j.Batch && !j.Killed {
			if err := r.legacy.KillJob(ctx, j.ID); err == nil {
				r.jobs[i].Killed = true
			} else {
				logf("kill legacy job %s: %v", j.ID, err)
			}
		}
	}
}

// settle waits (up to Settle) until the Jobs and legacy batch jobs ended,
// no pod is being deleted, and the killed legacy jobs are Finished.
func (r *runner) settle(ctx context.Context) {
	deadline := time.Now().Add(r.o.Settle)
	for time.Now().Before(deadline) {
		busy := []string{}
		if jobs, err := r.kc.BatchV1().Jobs(r.ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, j := range jobs.Items {
				if j.Status.CompletionTime == nil && !jobFailed(j) {
					busy = append(busy, "job "+j.Name)
				}
			}
		}
		if pods, err := r.kc.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil || (p.Labels["chaos"] == "pod" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed) {
					busy = append(busy, "pod "+p.Name)
				}
			}
		}
		for _, j := range r.jobs {
			if code, s, err := r.legacy.Job(ctx, j.ID); err == nil && code == 200 && s != "Finished" {
				busy = append(busy, "legacy "+j.ID)
			}
		}
		if len(busy) == 0 {
			break
		}
		logf("settling: %d busy (%s…)", len(busy), busy[0])
		time.Sleep(5 * time.Second)
	}
	time.Sleep(5 * time.Second)
}

func jobFailed(j batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- checks

func (r *runner) check(ctx context.Context) []Violation {
	var out []Violation
	dirs := AgentWorkDirs(r.env.StackRoot)
	runs, err := ReadLaunchLogs(dirs...)
	if err != nil {
		out = append(out, Violation{KindCheck, "launch logs", err.Error()})
	}
	// The launch logs are append-only over the stack's life: judge the
	// runs of this run (and any still open).
	var mine []Run
	for _, run := range runs {
		if !run.Start.Before(r.res.Started) || !run.Exited {
			mine = append(mine, run)
		}
	}
	out = append(out, CheckOverlaps(mine)...)
	launchedNow := map[string]bool{}
	for _, run := range mine {
		launchedNow[run.ID] = true
	}
	var views []AgentView
	live := map[string][]int{}
	for i, u := range r.env.LegacyAgents {
		v := ReadAgentView(r.mesos, fmt.Sprintf("agent-%d", i), u, r.env.AgentWorkDir(i))
		// Sandboxes are judged for the containers of this run only (older
		// ones may predate the bridge's clean-up).
		var sbs []string
		for _, id := range v.Sandboxes {
			if launchedNow[id] {
				sbs = append(sbs, id)
			}
		}
		v.Sandboxes = sbs
		views = append(views, v)
		for id, p := range v.Processes {
			live[id] = append(live[id], p...)
		}
	}
	out = append(out, CheckLiveRuns(mine, views)...)
	pods, err := r.kc.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return append(out, Violation{KindCheck, "pods", err.Error()})
	}
	out = append(out, CheckOrphans(pods.Items, views, nil)...)
	out = append(out, CheckRunningHaveContainers(pods.Items, views)...)
	out = append(out, CheckExitCodes(pods.Items, runs)...)
	jobs, err := r.kc.BatchV1().Jobs(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		out = append(out, Violation{KindCheck, "jobs", err.Error()})
	} else {
		nsPods, _ := r.kc.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		out = append(out, CheckJobs(jobs.Items, nsPods.Items)...)
	}
	out = append(out, CheckLegacyJobs(ctx, r.legacy, r.jobs, r.apps, live)...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// ---------------------------------------------------------------- report

// FormatReport renders a result as markdown: faults by kind, violations by
// kind, then every violation.
func FormatReport(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# vk-chaos %s\n\nseed %d, %s in all (replay: `make chaos SEED=%d DURATION=%s`)\n\n", res.Started.Format(time.RFC3339), res.Seed, res.Took.Round(time.Second), res.Seed, res.Duration)
	b.WriteString("| faults injected | count |\n|---|---:|\n")
	total := 0
	for _, k := range sortedKeys(res.Injected) {
		fmt.Fprintf(&b, "| %s | %d |\n", k, res.Injected[k])
		total += res.Injected[k]
	}
	fmt.Fprintf(&b, "| **total** | **%d** |\n\n", total)
	b.WriteString("| workload | done | failed calls |\n|---|---:|---:|\n")
	keys := map[string]int{}
	for k := range res.Workload {
		keys[k] = 1
	}
	for k := range res.Errors {
		keys[k] = 1
	}
	for _, k := range sortedKeys(keys) {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, res.Workload[k], res.Errors[k])
	}
	byKind := map[string]int{}
	for _, v := range res.Violations {
		byKind[v.Kind]++
	}
	b.WriteString("\n| violations | count |\n|---|---:|\n")
	for _, k := range sortedKeys(byKind) {
		fmt.Fprintf(&b, "| %s | %d |\n", k, byKind[k])
	}
	fmt.Fprintf(&b, "| **total** | **%d** |\n", len(res.Violations))
	if len(res.Failed) > 0 {
		b.WriteString("\n## Faults that could not be injected or undone\n\n")
		for _, f := range res.Failed {
			b.WriteString("- " + f + "\n")
		}
	}
	if len(res.Violations) > 0 {
		b.WriteString("\n## Violations\n\n")
		for _, v := range res.Violations {
			b.WriteString("- " + v.String() + "\n")
		}
	}
	b.WriteString("\n## Fault schedule\n\n```\n" + FormatSchedule(res.Schedule) + "```\n")
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---------------------------------------------------------------- stack

func script(ctx context.Context, root string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "stack.sh"), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/stack.sh %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
