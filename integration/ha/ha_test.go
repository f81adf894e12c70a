// Package ha runs against a stack of several bridge replicas sharing the
// agents (make test-e2e brings one up for it: REPLICAS=3, AGENTS=6): each
// node has exactly one owner, shares differ by at most one, a replica
// killed or stopped hands its nodes over without a relaunch, and the
// replicas never write over each other. Durations are printed, never
// asserted (make bench measures them).
package ha

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/integration/stack"
	"github.com/vk-titus/vk-titus/ownership"
)

var (
	env      *stack.Env
	client   *kubernetes.Clientset
	ns       string
	replicas []string // component names: vk-titus-0, ...
)

func TestMain(m *testing.M) {
	var err error
	if env, err = stack.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "ha:", err)
		os.Exit(1)
	}
	n, _ := strconv.Atoi(env.Vars["REPLICAS"])
	if n < 3 || len(env.LegacyAgents) < 6 {
		fmt.Fprintf(os.Stderr, "ha: the stack runs %d replicas and %d agents; these tests need REPLICAS=3 AGENTS=6 (make test-e2e brings that up)\n", n, len(env.LegacyAgents))
		os.Exit(1)
	}
	for i := range n {
		replicas = append(replicas, fmt.Sprintf("vk-titus-%d", i))
	}
	if client, err = env.Client(); err != nil {
		fmt.Fprintln(os.Stderr, "ha:", err)
		os.Exit(1)
	}
	ns = fmt.Sprintf("ha-%d", time.Now().Unix())
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "ha: namespace:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	os.Exit(code)
}

// owners maps each virtual node to the replica its annotation names, once
// every node is Ready and owned by a running replica.
func owners(t *testing.T, d time.Duration, live map[string]bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "type=virtual-kubelet"})
		if err == nil {
			out := map[string]string{}
			ok := len(nodes.Items) >= len(env.LegacyAgents)
			for _, n := range nodes.Items {
				owner := n.Annotations[ownership.AnnotationOwner]
				out[n.Name] = owner
				ok = ok && live[owner] && ready(&n)
			}
			if ok {
				return out
			}
			last = fmt.Sprint(out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("nodes not all Ready and owned by %v within %s; last %s", live, d, last)
	return nil
}

// ready: the node says Ready and its kubelet lease was renewed lately (the
// serving replica renews it every 10 s; the Ready condition's own heartbeat
// is rewritten only when the status changes or once a minute).
func ready(n *corev1.Node) bool {
	ok := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ok = c.Status == corev1.ConditionTrue
		}
	}
	if !ok {
		return false
	}
	l, err := client.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), n.Name, metav1.GetOptions{})
	return err == nil && l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < 30*time.Second
}

func liveSet(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func except(name string) []string {
	var out []string
	for _, r := range replicas {
		if r != name {
			out = append(out, r)
		}
	}
	return out
}

// balanced: every replica given holds a share, and shares differ by at most one.
func balanced(t *testing.T, own map[string]string, reps []string) {
	t.Helper()
	if lo, hi := spread(own, reps); hi-lo > 1 {
		t.Errorf("shares of %v differ by more than one: %v", reps, own)
	}
}

// waitBalanced waits for the replicas to hold even shares (a replica that
// joined gets its share one node at a time).
func waitBalanced(t *testing.T, reps []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		own := owners(t, d, liveSet(reps...))
		lo, hi := spread(own, reps)
		if hi-lo <= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("shares of %v still uneven after %s: %v", reps, d, own)
			return
		}
		time.Sleep(time.Second)
	}
}

// spread is the smallest and largest share of the replicas.
func spread(own map[string]string, reps []string) (lo, hi int) {
	count := map[string]int{}
	for _, r := range reps {
		count[r] = 0
	}
	for _, o := range own {
		count[o]++
	}
	lo = len(own)
	for _, c := range count {
		lo, hi = min(lo, c), max(hi, c)
	}
	return lo, hi
}

// leaseHolders checks that each node's ownership lease names the replica
// its annotation does.
func leaseHolders(t *testing.T, own map[string]string) {
	t.Helper()
	for node, owner := range own {
		l, err := client.CoordinationV1().Leases("vk-titus-system").Get(context.Background(), ownership.NodeLeaseName(node), metav1.GetOptions{})
		if err != nil {
			t.Errorf("lease of %s: %v", node, err)
			continue
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != owner {
			t.Errorf("node %s: annotation says %s, lease holder %v", node, owner, l.Spec.HolderIdentity)
		}
	}
}

// conflicts sums vktitus_write_conflicts_total over the running replicas.
func conflicts(t *testing.T, reps []string) float64 {
	t.Helper()
	var sum float64
	for _, r := range reps {
		i := strings.TrimPrefix(r, "vk-titus-")
		res, err := http.Get(env.Vars["VK_METRICS_"+i] + "/metrics")
		if err != nil {
			t.Errorf("metrics of %s: %v", r, err)
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "vktitus_write_conflicts_total") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
	}
	return sum
}

// podOn runs a long sleep on node, marked with a token its process carries.
func podOn(t *testing.T, name, node string) (*corev1.Pod, string) {
	t.Helper()
	token := fmt.Sprintf("vkt-ha-%s-%d", name, time.Now().UnixNano())
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: node, RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: new(int64),
			Tolerations: []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sh", "-c", "sleep 600; : " + token},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}},
		},
	}
	out, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return out, token
}

func waitRunning(t *testing.T, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pod %s not Running within %s", name, d)
}

// pids lists the processes whose command line carries token.
func pids(token string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), token) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// One pod per node, then the given fault: every pod keeps its process, the
// nodes come back Ready under the replicas left, a new pod runs on each
// node, and no write conflicted.
func handover(t *testing.T, name string, fault func(string) error) {
	all := liveSet(replicas...)
	waitBalanced(t, replicas, 3*time.Minute)
	own := owners(t, 3*time.Minute, all)
	leaseHolders(t, own)
	before := conflicts(t, replicas)
	nodes := make([]string, 0, len(own))
	for n := range own {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	tokens := map[string]string{}
	procs := map[string][]int{}
	for i, n := range nodes {
		p, tok := podOn(t, fmt.Sprintf("%s-%d", name, i), n)
		tokens[p.Name] = tok
	}
	for pod := range tokens {
		waitRunning(t, pod, 2*time.Minute)
		procs[pod] = pids(tokens[pod])
	}
	// The victim is the replica holding most nodes.
	count := map[string]int{}
	victim := replicas[0]
	for _, o := range own {
		count[o]++
		if count[o] > count[victim] {
			victim = o
		}
	}
	t.Cleanup(func() {
		if err := env.Start(victim); err != nil {
			t.Errorf("restarting %s: %v", victim, err)
		}
		// Back to three: the newcomer gets its share again.
		waitBalanced(t, replicas, 3*time.Minute)
		for pod := range tokens {
			_ = client.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{})
		}
	})
	start := time.Now()
	if err := fault(victim); err != nil {
		t.Fatal(err)
	}
	rest := except(victim)
	after := owners(t, 3*time.Minute, liveSet(rest...))
	t.Logf("%s: %d nodes of %s owned again and Ready %s after the fault", name, count[victim], victim, time.Since(start).Round(100*time.Millisecond))
	balanced(t, after, rest)
	leaseHolders(t, after)
	for pod, was := range procs {
		if now := pids(tokens[pod]); fmt.Sprint(now) != fmt.Sprint(was) {
			t.Errorf("pod %s: processes %v before, %v after the handover", pod, was, now)
		}
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pod %s not running as before: %v %+v", pod, err, p.Status)
		}
	}
	for i, n := range nodes {
		if own[n] != victim {
			continue
		}
		fresh, _ := podOn(t, fmt.Sprintf("%s-new-%d", name, i), n)
		tokens[fresh.Name] = ""
		waitRunning(t, fresh.Name, 2*time.Minute)
	}
	t.Logf("%s: a new pod ran on every node handed over %s after the fault", name, time.Since(start).Round(100*time.Millisecond))
	if c := conflicts(t, rest); c > before {
		t.Errorf("write conflicts rose from %v to %v during the handover", before, c)
	}
}

func TestReplicaKilled(t *testing.T) { handover(t, "killed", env.Kill) }

func TestReplicaStopped(t *testing.T) { handover(t, "stopped", env.Stop) }

// fleet status shows every replica and node.
func TestFleetStatus(t *testing.T) {
	owners(t, 3*time.Minute, liveSet(replicas...))
	b, err := exec.Command(env.Root+"/bin/vk-titus", "fleet", "status", "--kubeconfig", env.Kubeconfig, "--namespace", "vk-titus-system").CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("fleet status: %v\n%s", err, out)
	}
	for _, r := range replicas {
		if !strings.Contains(out, r) {
			t.Errorf("fleet status lacks %s:\n%s", r, out)
		}
	}
}

// A replica cut off from the API server (its kubeconfig points at a proxy
// the test then blocks) fences its nodes: it gives them up (owned 0, a
// "lost" handover) while the others take them over, and no pod is
// relaunched.
func TestReplicaPartitioned(t *testing.T) {
	waitBalanced(t, replicas, 3*time.Minute)
	victim := replicas[len(replicas)-1]
	p := newProxy(t, strings.TrimPrefix(env.Vars["APISERVER"], "https://"))
	kc := proxiedKubeconfig(t, p.addr())
	if err := env.Stop(victim); err != nil {
		t.Fatal(err)
	}
	if err := env.StartWithArgs(victim, "--kubeconfig", kc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.block(false)
		_ = env.Stop(victim)
		if err := env.Start(victim); err != nil {
			t.Errorf("restarting %s: %v", victim, err)
		}
		waitBalanced(t, replicas, 3*time.Minute)
	})
	waitBalanced(t, replicas, 3*time.Minute)
	own := owners(t, time.Minute, liveSet(replicas...))
	var held []string
	for n, o := range own {
		if o == victim {
			held = append(held, n)
		}
	}
	if len(held) == 0 {
		t.Fatalf("%s holds no node to lose: %v", victim, own)
	}
	tokens := map[string]string{}
	procs := map[string][]int{}
	for i, n := range held {
		pod, tok := podOn(t, fmt.Sprintf("part-%d", i), n)
		tokens[pod.Name] = tok
	}
	for pod, tok := range tokens {
		waitRunning(t, pod, 2*time.Minute)
		procs[pod] = pids(tok)
	}
	start := time.Now()
	p.block(true)
	rest := except(victim)
	after := owners(t, 3*time.Minute, liveSet(rest...))
	t.Logf("partition: %d nodes of %s owned by others and Ready %s after the cut", len(held), victim, time.Since(start).Round(100*time.Millisecond))
	balanced(t, after, rest)
	if got := metric(t, victim, "vktitus_owned_nodes"); got != 0 {
		t.Errorf("%s still owns %v nodes while cut off", victim, got)
	}
	if got := metric(t, victim, `vktitus_handovers_total{kind="lost"}`); got < float64(len(held)) {
		t.Errorf("%s reports %v lost nodes, want at least %d", victim, got, len(held))
	}
	for pod, was := range procs {
		if now := pids(tokens[pod]); fmt.Sprint(now) != fmt.Sprint(was) {
			t.Errorf("pod %s: processes %v before, %v after the partition", pod, was, now)
		}
	}
	for pod := range tokens {
		_ = client.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{})
	}
}

// metric reads one sample of a replica's metrics (0 when absent).
func metric(t *testing.T, replica, name string) float64 {
	t.Helper()
	res, err := http.Get(env.Vars["VK_METRICS_"+strings.TrimPrefix(replica, "vk-titus-")] + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", replica, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
			return v
		}
	}
	return 0
}

// proxy forwards TCP to the API server until blocked: then it drops every
// connection and refuses new ones, as a network partition would.
type proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.blocked {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *proxy) block(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = b
	if b {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// proxiedKubeconfig is the bridge's kubeconfig with the server replaced by
// the proxy's address (the API server's certificate names 127.0.0.1).
func proxiedKubeconfig(t *testing.T, addr string) string {
	t.Helper()
	b, err := os.ReadFile(env.StackRoot + "/vk-titus.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(string(b), strings.TrimRight(env.Vars["APISERVER"], "/"), "https://"+addr)
	path := t.TempDir() + "/vk-titus.kubeconfig"
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each replica's nodes answer the API server's nodes/proxy: every replica's
// kubelet ports are reached at the stack's namespace address.
func TestEveryReplicaProxyable(t *testing.T) {
	waitBalanced(t, replicas, 3*time.Minute)
	own := owners(t, 3*time.Minute, liveSet(replicas...))
	if lo, _ := spread(own, replicas); lo == 0 {
		t.Fatalf("a replica holds no node: %v", own)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for node, owner := range own {
		out, err := env.Kubectl(ctx, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/pods")
		if err != nil {
			t.Errorf("node %s (replica %s): %v", node, owner, err)
		} else if !strings.Contains(out, `"kind":"PodList"`) {
			t.Errorf("node %s (replica %s) /pods: %.200s", node, owner, out)
		}
	}
}
