package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// nodesAgentID names the nodes scenario's agents, <nodesAgentID>-<i>, and
// so their nodes (vk-titus names a discovered agent's node after its id),
// their work directory and their log.
const nodesAgentID = "vk-bench-node"

// nodesHeartbeat is how often the scenario's agents re-register with the
// master: well within the stack's AGENT_TIMEOUT (15 s), and N agents at the
// stack's 2 s would load the master more than the bridge.
const nodesHeartbeat = "5s"

// nodes measures many nodes in one vk-titus process: b.o.Nodes agents of
// one legacy-agent process (--count) register with the stack's masters,
// vk-titus discovers them and serves a node each, and each node then runs
// b.o.NodePods pods. vk-titus is restarted first, so that memory left from
// earlier scenarios does not blur the per-node figure. It reports how long
// until every node was Ready, the RSS each node costs beyond its pods
// (idle RSS with the nodes and no pods, less idle RSS before them, per
// node), vk-titus's API requests per node and minute while idle, and how
// many node ownerships it lost meanwhile (a lost node is stopped and built
// anew, which the idle figures then include).
func (b *Bench) nodes(ctx context.Context, round int) (err error) {
	if b.env.Vars["MASTERS"] == "0" {
		return errors.New("nodes needs the stack's masters (MASTERS > 0): vk-titus discovers the agents through them")
	}
	if r := b.env.Vars["REPLICAS"]; r != "" && r != "1" {
		return fmt.Errorf("nodes needs one vk-titus process (REPLICAS=1), the stack runs %s", r)
	}
	sc := fmt.Sprintf("nodes %d × %d pods", b.o.Nodes, b.o.NodePods)
	set := fmt.Sprintf("nodes-r%d", round)
	served := float64(b.o.Nodes + len(b.env.LegacyAgents)) // the stack's agents' nodes too
	window := max(b.o.Idle, time.Minute)                   // leases renew every few seconds, statuses less often

	logf("  restarting vk-titus")
	if err := script(ctx, b.env.Root, "stop", "vk-titus"); err != nil {
		return err
	}
	if err := script(ctx, b.env.Root, "start", "vk-titus"); err != nil {
		return err
	}
	pid, err := ReadPidFile(b.env.StackRoot, "vk-titus")
	if err != nil {
		return err
	}
	if err := b.countVKTitusRequests(ctx); err != nil {
		return err
	}
	own0, err := Scrape(ctx, b.env.VKMetrics+"/metrics")
	if err != nil {
		return err
	}
	before, err := b.idleWindow(ctx, pid, window)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "node process RSS before the scenario's nodes (MB)", "vk-titus", before.rssMB)
	b.rep.Add(sc, "API requests/min while idle before the scenario's nodes (whole process)", "vk-titus", before.reqPerMin)

	nodes, err := newNodeWatch(ctx, b)
	if err != nil {
		return err
	}
	defer nodes.stop()
	t0 := time.Now()
	agents, err := b.startNodeAgents()
	if err != nil {
		return err
	}
	defer func() {
		// Cleanup must run even when ctx was cancelled (^C).
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		err = errors.Join(err, b.endNodes(cctx, agents, nodes, set))
	}()
	if err := nodes.waitReady(ctx, agents, t0.Add(-time.Second)); err != nil {
		return err
	}
	ready := time.Since(t0)
	b.rep.Add(sc, "all nodes Ready (s)", "vk-titus", ready.Seconds())
	logf("  %d nodes Ready %.1fs after their agents started", b.o.Nodes, ready.Seconds())

	empty, err := b.idleWindow(ctx, pid, window)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "node process RSS, nodes without pods (MB)", "vk-titus", empty.rssMB)
	b.rep.Add(sc, "RSS per node beyond its pods (MB)", "vk-titus", (empty.rssMB-before.rssMB)/float64(b.o.Nodes))
	b.rep.Add(sc, "node process idle CPU, nodes without pods (% of a core)", "vk-titus", empty.cpuPct)
	b.rep.Add(sc, "API requests per node per minute while idle, no pods", "vk-titus", empty.reqPerMin/served)

	t1 := time.Now()
	names, err := b.createPodsOn(ctx, set, b.o.Nodes*b.o.NodePods, func(i int) string {
		return nodeAgentName(i / b.o.NodePods)
	}, true)
	if err != nil {
		return err
	}
	if err := b.waitRunning(ctx, set, names); err != nil {
		return err
	}
	b.rep.Add(sc, "all pods Running (s)", "vk-titus", time.Since(t1).Seconds())
	b.settle(ctx, names, 5*time.Second, time.Minute)
	full, err := b.idleWindow(ctx, pid, window)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "node process RSS with every pod Running (MB)", "vk-titus", full.rssMB)
	b.rep.Add(sc, "RSS per pod (KB)", "vk-titus", 1024*(full.rssMB-empty.rssMB)/float64(len(names)))
	b.rep.Add(sc, "node process idle CPU with every pod Running (% of a core)", "vk-titus", full.cpuPct)
	b.rep.Add(sc, "API requests per node per minute while idle", "vk-titus", full.reqPerMin/served)
	// A node whose ownership lease was not renewed in time stops and is
	// built anew: the figures above are only steady-state ones without that.
	own1, err := Scrape(ctx, b.env.VKMetrics+"/metrics")
	if err != nil {
		return err
	}
	lost := map[string]string{"kind": "lost"}
	b.rep.Add(sc, "node ownerships lost, restart → last idle window", "vk-titus",
		own1.Sum("vktitus_handovers_total", lost)-own0.Sum("vktitus_handovers_total", lost))
	b.rep.Add(sc, "write conflicts, restart → last idle window", "vk-titus",
		own1.Sum("vktitus_write_conflicts_total", nil)-own0.Sum("vktitus_write_conflicts_total", nil))
	logf("  RSS %.0f MB before, %.0f MB with %d nodes, %.0f MB with their pods; API requests/min per node idle %.1f (no pods) %.1f (pods)",
		before.rssMB, empty.rssMB, b.o.Nodes, full.rssMB, empty.reqPerMin/served, full.reqPerMin/served)

	del, err := b.deletePods(ctx, names, agents.containersEnded)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "delete: all gone, processes ended (s)", "vk-titus", del.Seconds())
	return nil
}

// idle is what one quiet window of the node process showed.
type idle struct {
	rssMB, cpuPct float64
	reqPerMin     float64 // vk-titus's API requests
}

// idleWindow waits until pid is quiet (2 min at most: with many nodes their
// health checks alone may keep it above the threshold) and reads its RSS,
// CPU and API requests over d.
func (b *Bench) idleWindow(ctx context.Context, pid int, d time.Duration) (idle, error) {
	if _, err := waitQuiet(ctx, pid, 10, 2*time.Minute); err != nil {
		return idle{}, err
	}
	r0, err := b.vkTitusRequests(ctx)
	if err != nil {
		return idle{}, err
	}
	t0 := time.Now()
	logf("  idle window %s (pid %d)", d, pid)
	rss, cpu, err := IdleStats(ctx, pid, d)
	if err != nil {
		return idle{}, err
	}
	r1, err := b.vkTitusRequests(ctx)
	if err != nil {
		return idle{}, err
	}
	return idle{rssMB: rss, cpuPct: cpu, reqPerMin: (r1 - r0) / time.Since(t0).Minutes()}, nil
}

func nodeAgentName(i int) string { return nodesAgentID + "-" + strconv.Itoa(i) }

// nodeAgents is the scenario's legacy-agent process and the agents it serves.
type nodeAgents struct {
	*child
	dir   string   // work directory: agent i's under dir/agent-<i>
	names []string // the agents' ids, which are their nodes' names
}

// startNodeAgents starts one legacy-agent process serving b.o.Nodes agents
// on ports b.o.NodesPortBase+i, registered with the stack's masters and
// authenticated as the stack's agents are. Its work directory is under
// .local/agents, which `scripts/stack.sh down` sweeps; --recover cleanup
// kills what an interrupted run left there.
func (b *Bench) startNodeAgents() (*nodeAgents, error) {
	a := &nodeAgents{dir: filepath.Join(b.env.StackRoot, "agents", nodesAgentID)}
	for i := range b.o.Nodes {
		a.names = append(a.names, nodeAgentName(i))
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, err
	}
	argv := []string{filepath.Join(b.env.Root, "bin", "legacy-agent"),
		"--count", strconv.Itoa(b.o.Nodes), "--listen", "127.0.0.1:" + strconv.Itoa(b.o.NodesPortBase),
		"--work-dir", a.dir, "--agent-id", nodesAgentID, "--hostname", "127.0.0.1",
		"--resources", "cpus:8;mem:16384;disk:20480", "--recover", "cleanup",
		"--master", b.env.Vars["LEGACY_MASTER_ZK"], "--heartbeat-interval", nodesHeartbeat}
	if b.env.MesosAuth {
		auth := filepath.Join(b.env.StackRoot, "mesos-auth")
		argv = append(argv, "--authenticate_http_readwrite", "--authenticate_http_readonly",
			"--http_credentials", filepath.Join(auth, "http_credentials.json"), "--credential", filepath.Join(auth, "agent.cred"))
	}
	c, err := b.startChild(nodesAgentID+"s", argv...)
	if err != nil {
		return nil, err
	}
	a.child = c
	return a, nil
}

// containersEnded tells whether no container process of the agents is left.
func (a *nodeAgents) containersEnded(context.Context) bool { return ProcsUnder(a.dir) == 0 }

// endNodes deletes the pods of set still there (while the agents run, to
// end their containers), stops the agents, and waits until vk-titus has
// removed their nodes: the masters drop a silent agent after the stack's
// AGENT_TIMEOUT, and vk-titus then deletes its node.
func (b *Bench) endNodes(ctx context.Context, a *nodeAgents, w *nodeWatch, set string) error {
	var errs []error
	list, err := b.client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: SetLabel + "=" + set})
	if err != nil {
		errs = append(errs, err)
	} else if len(list.Items) > 0 {
		names := make([]string, len(list.Items))
		for i, p := range list.Items {
			names[i] = p.Name
		}
		if _, err := b.deletePods(ctx, names, a.containersEnded); err != nil {
			errs = append(errs, err)
		}
	}
	a.stop(syscall.SIGTERM)
	if n := ProcsUnder(a.dir); n > 0 {
		errs = append(errs, fmt.Errorf("%d container process(es) still run under %s", n, a.dir))
	}
	left := 0
	err = poll(ctx, 3*time.Minute, "the scenario's nodes removed", func() (bool, error) {
		left = w.count(a.names, func(*corev1.Node) bool { return true })
		return left == 0, nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: %d of %d left", err, left, len(a.names)))
	}
	return errors.Join(errs...)
}

// nodeWatch follows the Nodes through an informer, each cut down to its
// name and Ready condition.
type nodeWatch struct {
	lister listersv1.NodeLister
	stop   context.CancelFunc
}

func newNodeWatch(ctx context.Context, b *Bench) (*nodeWatch, error) {
	wctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(b.client, 0, informers.WithTransform(slimNode))
	inf := f.Core().V1().Nodes()
	informer := inf.Informer()
	f.Start(wctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		cancel()
		return nil, errors.New("node informer did not sync")
	}
	return &nodeWatch{lister: inf.Lister(), stop: cancel}, nil
}

func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{c}
		}
	}
	return out, nil
}

// count is how many of the named nodes exist and satisfy f.
func (w *nodeWatch) count(names []string, f func(*corev1.Node) bool) int {
	k := 0
	for _, name := range names {
		if n, err := w.lister.Get(name); err == nil && f(n) {
			k++
		}
	}
	return k
}

// waitReady waits until every node of the agents is Ready with a heartbeat
// after since, failing if their process exits.
func (w *nodeWatch) waitReady(ctx context.Context, a *nodeAgents, since time.Time) error {
	ready, lastLog := 0, time.Now()
	err := poll(ctx, 5*time.Minute, "nodes Ready", func() (bool, error) {
		if a.exited() {
			return false, fmt.Errorf("%s exited; see %s", nodesAgentID+"s", a.log)
		}
		ready = w.count(a.names, func(n *corev1.Node) bool { return readySince(n, since) })
		if time.Since(lastLog) >= 5*time.Second {
			logf("  nodes Ready: %d/%d", ready, len(a.names))
			lastLog = time.Now()
		}
		return ready == len(a.names), nil
	})
	if err != nil {
		return fmt.Errorf("%w: %d of %d Ready", err, ready, len(a.names))
	}
	return nil
}
