package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/translate"
)

func uidOf(containerID string) types.UID {
	uid, _, _ := translate.ParseContainerID(containerID)
	return uid
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// burst creates b.o.Burst pods at once, bound to the node (preset) or
// through kube-scheduler, and times them until Running and until deleted.
func (b *Bench) burst(ctx context.Context, round int, im impl, preset bool) error {
	mode, how := "sched", "through kube-scheduler"
	if preset {
		mode, how = "preset", "nodeName preset"
	}
	sc := fmt.Sprintf("burst %d pods, %s", b.o.Burst, how)
	set := fmt.Sprintf("burst-%s-%s-r%d", mode, short(im), round)
	cpu0 := b.cpuSnapshot()
	var own0 Metrics
	if im.name == "vk-titus" {
		own0, _ = Scrape(ctx, b.env.VKMetrics+"/metrics")
	}
	t0 := time.Now()
	names, err := b.createPods(ctx, set, b.o.Burst, im.node, preset)
	if err != nil {
		return err
	}
	logf("  %s: %d pods created in %.1fs", set, len(names), time.Since(t0).Seconds())
	if err := b.waitRunning(ctx, set, names); err != nil {
		return err
	}
	cpu1 := b.cpuSnapshot()
	var lat []float64
	var last time.Time
	writes := 0
	pods := b.tracker.Get(names)
	for _, p := range pods {
		writes += p.EventsToRunning - 1
		lat = append(lat, max(0, ms(p.Running.Sub(p.Created))))
		if p.Running.After(last) {
			last = p.Running
		}
	}
	b.rep.Add(sc, "all Running (s)", im.name, last.Sub(t0).Seconds())
	b.rep.Add(sc, "creation→Running p50 (ms)", im.name, Percentile(lat, 50))
	b.rep.Add(sc, "creation→Running p99 (ms)", im.name, Percentile(lat, 99))
	b.rep.Add(sc, "pod writes seen until Running, per pod", im.name, float64(writes)/float64(len(names)))
	if own0 != nil {
		// The bridge's own latency, from the pod's admission to its first
		// LAUNCH sent (bucket upper bounds: an estimate, not a sample).
		if own1, err := Scrape(ctx, b.env.VKMetrics+"/metrics"); err == nil {
			for _, q := range []float64{50, 99} {
				if v, n := HistogramQuantile(own0, own1, "vktitus_pod_admit_to_launch_seconds", q/100); n > 0 {
					b.rep.Add(sc, fmt.Sprintf("admitted→LAUNCH sent p%.0f (ms, bucket bound)", q), im.name, v*1000)
				}
			}
		}
	}
	logf("  %s: all Running in %.1fs, p50 %.0f ms, p99 %.0f ms", set, last.Sub(t0).Seconds(), Percentile(lat, 50), Percentile(lat, 99))
	b.rep.Plot(Chart{ID: "burst-" + mode + "-timeline", Title: sc + ": pods Running over time",
		XLabel: "seconds since the first create call", YLabel: "pods Running",
		Series: []Series{seriesOf(im, round, runningTimeline(pods, t0))}})
	b.rep.Plot(Chart{ID: "burst-" + mode + "-latency-cdf", Title: sc + ": creation→Running latency",
		XLabel: "creation→Running (ms)", YLabel: "fraction of pods",
		Series: []Series{seriesOf(im, round, cdf(lat))}})
	b.addCPU(sc, "create→all Running", im, cpu0, cpu1)
	del, err := b.deleteSet(ctx, im, names)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "delete: all gone, processes ended (s)", im.name, del.Seconds())
	b.addCPU(sc, "delete→all gone", im, cpu1, b.cpuSnapshot())
	logf("  %s: deleted in %.1fs", set, del.Seconds())
	return nil
}

// scale runs b.o.Scale pods on one node and reads the node process's idle
// RSS and CPU; for vk-titus also the agent calls per pod lifecycle and how
// long a process's death takes to reach the API.
func (b *Bench) scale(ctx context.Context, round int, im impl) error {
	sc := fmt.Sprintf("scale %d pods", b.o.Scale)
	set := fmt.Sprintf("scale-%s-r%d", short(im), round)
	var before Metrics
	if im.name == "vk-titus" {
		var err error
		if before, err = Scrape(ctx, b.env.VKMetrics+"/metrics"); err != nil {
			return err
		}
	}
	pid, err := b.pid(im)
	if err != nil {
		return err
	}
	// RSS against pods Running, from the first create to the idle window's end.
	names := make([]string, b.o.Scale)
	for i := range names {
		names[i] = podName(set, i)
	}
	rss := sampleRSS(pid, func() int {
		return b.tracker.Count(names, func(p PodTimes) bool { return !p.Running.IsZero() })
	})
	defer rss.Stop()
	t0 := time.Now()
	if _, err := b.createPods(ctx, set, b.o.Scale, im.node, true); err != nil {
		return err
	}
	if err := b.waitRunning(ctx, set, names); err != nil {
		return err
	}
	b.rep.Add(sc, "all Running (s)", im.name, time.Since(t0).Seconds())
	b.settle(ctx, names, 5*time.Second, time.Minute)
	// The node process may still work through its queues after the last
	// status is out; idle begins when it has gone quiet.
	quiet, err := waitQuiet(ctx, pid, 10, 10*time.Minute)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "all Running → node process quiet (s)", im.name, quiet.Seconds())
	idle0, _ := Scrape(ctx, b.env.VKMetrics+"/metrics")
	logf("  idle window %s (pid %d)", b.o.Idle, pid)
	maxRSS, cpu, err := IdleStats(ctx, pid, b.o.Idle)
	if err != nil {
		return err
	}
	idle1, _ := Scrape(ctx, b.env.VKMetrics+"/metrics")
	b.rep.Add(sc, "node process RSS (MB)", im.name, maxRSS)
	b.rep.Add(sc, "node process idle CPU (% of a core)", im.name, cpu)
	logf("  %s: RSS %.0f MB, idle CPU %.2f%%", set, maxRSS, cpu)
	b.rep.Plot(Chart{ID: "scale-rss", Title: sc + ": node process RSS against pods Running",
		XLabel: "pods Running", YLabel: "RSS (MB)", Series: []Series{seriesOf(im, round, rss.Stop())}})
	if im.name == "vk-titus" {
		rate := (sum(idle1.AgentCalls()) - sum(idle0.AgentCalls())) / b.o.Idle.Seconds()
		b.rep.Add(sc, "agent calls/s while idle", im.name, rate)
		// The Go runtime's view, to tell heap from the rest of the RSS.
		for _, g := range []struct {
			metric, name string
			scale        float64
		}{
			{"go_memstats_heap_inuse_bytes", "vk-titus Go heap in use (MB)", 1 << 20},
			{"go_memstats_sys_bytes", "vk-titus Go runtime sys (MB)", 1 << 20},
			{"go_goroutines", "vk-titus goroutines", 1},
			{"go_threads", "vk-titus OS threads", 1},
			{"process_open_fds", "vk-titus open fds", 1},
		} {
			if v, ok := idle1[g.metric]; ok && len(v) > 0 {
				b.rep.Add(sc, g.name, im.name, v[0].Value/g.scale)
			}
		}
		if agentPid, err := ReadPidFile(b.env.StackRoot, "agent-0"); err == nil {
			if s, err := ReadProc(agentPid); err == nil {
				b.rep.Add(sc, "agent RSS (MB, for reference)", im.name, float64(s.RSSKB)/1024)
			}
		}
		lat, err := b.killAndTime(ctx, names)
		if err != nil {
			return err
		}
		b.rep.Add(sc, "process death→API p50 (ms)", im.name, Percentile(lat, 50))
		b.rep.Add(sc, "process death→API max (ms)", im.name, slices.Max(lat))
		logf("  %s: status change reached the API in %v ms", set, lat)
	}
	del, err := b.deleteSet(ctx, im, names)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "delete: all gone, processes ended (s)", im.name, del.Seconds())
	if im.name == "vk-titus" {
		after, err := Scrape(ctx, b.env.VKMetrics+"/metrics")
		if err != nil {
			return err
		}
		calls := map[string]float64{}
		for call, v := range after.AgentCalls() {
			calls[call] = (v - before.AgentCalls()[call]) / float64(len(names))
		}
		extra := 0.0
		for call, v := range calls {
			switch call {
			case "launch_container", "wait_container", "kill_container", "remove_container":
			default:
				extra += v
			}
		}
		b.rep.Add(sc, "agent calls per pod lifecycle", im.name, sum(calls))
		b.rep.Add(sc, "agent calls per pod beyond launch/wait/kill/remove", im.name, extra)
		b.rep.Detail(fmt.Sprintf("%s r%d agent calls per pod", sc, round), calls)
		logf("  %s: agent calls per pod %v", set, calls)
	}
	return nil
}

// killAndTime kills b.o.Kills random pods' processes through the agent's
// KILL_CONTAINER (SIGKILL), one at a time, and times each until the API
// shows the container terminated.
func (b *Bench) killAndTime(ctx context.Context, names []string) ([]float64, error) {
	var lat []float64
	for _, i := range rand.Perm(len(names))[:min(b.o.Kills, len(names))] {
		name := names[i]
		p := b.tracker.Get([]string{name})[0]
		t := time.Now()
		if err := b.agent.Kill(ctx, translate.ContainerID(p.UID, ctrName), syscall.SIGKILL); err != nil {
			return nil, fmt.Errorf("kill %s: %w", name, err)
		}
		err := b.tracker.WaitFor(ctx, time.Minute, "terminated "+name, func() (bool, string) {
			return !b.tracker.Get([]string{name})[0].Terminated.IsZero(), "waiting"
		})
		if err != nil {
			return nil, err
		}
		lat = append(lat, ms(b.tracker.Get([]string{name})[0].Terminated.Sub(t)))
	}
	return lat, nil
}

// restart kills the node process (SIGKILL) with b.o.Restart pods running,
// starts it again, and times until every pod's status is current. For
// vk-titus, b.o.OutageKills processes die during the outage: current means
// those show terminated on the API, every other pod is Running on the API
// and in vk-titus's records (vktitus_containers{state="running"}). For the
// baseline, which keeps nothing, current means every pod was re-reported.
func (b *Bench) restart(ctx context.Context, round int, im impl) error {
	sc := fmt.Sprintf("restart with %d pods", b.o.Restart)
	set := fmt.Sprintf("restart-%s-r%d", short(im), round)
	names, err := b.createPods(ctx, set, b.o.Restart, im.node, true)
	if err != nil {
		return err
	}
	if err := b.waitRunning(ctx, set, names); err != nil {
		return err
	}
	b.settle(ctx, names, 5*time.Second, time.Minute)

	if im.name == "baseline" {
		b.stopBaseline(syscall.SIGKILL)
		t0 := time.Now()
		if err := b.startBaseline(ctx); err != nil {
			return err
		}
		err := b.tracker.WaitFor(ctx, syncTimeout(len(names)), "re-reported", func() (bool, string) {
			n := b.tracker.Count(names, func(p PodTimes) bool { return p.LastUpdate.After(t0) })
			return n == len(names), fmt.Sprintf("%d/%d re-reported", n, len(names))
		})
		if err != nil {
			return err
		}
		var last time.Time
		for _, p := range b.tracker.Get(names) {
			if p.LastUpdate.After(last) {
				last = p.LastUpdate
			}
		}
		b.rep.Add(sc, "statuses current after restart (s)", im.name, last.Sub(t0).Seconds())
		logf("  %s: every pod re-reported %.1fs after the restart", set, last.Sub(t0).Seconds())
	} else if err := b.restartVKTitus(ctx, sc, names); err != nil {
		return err
	}
	del, err := b.deleteSet(ctx, im, names)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "delete: all gone, processes ended (s)", im.name, del.Seconds())
	return nil
}

func (b *Bench) restartVKTitus(ctx context.Context, sc string, names []string) error {
	if err := script(ctx, b.env.Root, "kill", "vk-titus"); err != nil {
		return err
	}
	// Processes that die while the bridge is down.
	killed := map[string]bool{}
	for _, i := range rand.Perm(len(names))[:min(b.o.OutageKills, len(names))] {
		p := b.tracker.Get([]string{names[i]})[0]
		if err := b.agent.Kill(ctx, translate.ContainerID(p.UID, ctrName), syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %s during the outage: %w", names[i], err)
		}
		killed[names[i]] = true
	}
	time.Sleep(time.Second) // the agent reaps them
	t0 := time.Now()
	started := make(chan error, 1)
	go func() { started <- script(ctx, b.env.Root, "start", "vk-titus") }()

	want := float64(len(names) - len(killed))
	var lastScrape time.Time
	var running float64
	err := b.tracker.WaitFor(ctx, syncTimeout(len(names)), "statuses current", func() (bool, string) {
		if time.Since(lastScrape) > 500*time.Millisecond {
			lastScrape = time.Now()
			if m, err := Scrape(ctx, b.env.VKMetrics+"/metrics"); err == nil {
				running = m.Sum("vktitus_containers", map[string]string{"state": "running"})
			}
		}
		term, other := 0, 0
		for i, p := range b.tracker.Get(names) {
			switch {
			case killed[names[i]] && !p.Terminated.IsZero():
				term++
			case !killed[names[i]] && (p.Phase != corev1.PodRunning || !p.Terminated.IsZero()):
				other++
			}
		}
		return term == len(killed) && other == 0 && running == want,
			fmt.Sprintf("killed shown terminated %d/%d, vk-titus running %.0f/%.0f, others not Running %d",
				term, len(killed), running, want, other)
	})
	if err != nil {
		return err
	}
	took := time.Since(t0)
	if err := <-started; err != nil {
		return err
	}
	b.rep.Add(sc, "statuses current after restart (s)", "vk-titus", took.Seconds())
	logf("  statuses current %.1fs after the restart", took.Seconds())

	// The orphan sweep runs once the node is Ready; give it a moment.
	time.Sleep(3 * time.Second)
	m, err := Scrape(ctx, b.env.VKMetrics+"/metrics")
	if err != nil {
		return err
	}
	b.rep.Add(sc, "launches during recovery", "vk-titus", m.AgentCalls()["launch_container"])
	orphans, missing, err := b.orphans(ctx, names, killed)
	if err != nil {
		return err
	}
	b.rep.Add(sc, "orphans (agent containers without a pod)", "vk-titus", float64(orphans))
	b.rep.Add(sc, "pods Running without a container", "vk-titus", float64(missing))
	logf("  launches %v, orphans %d, missing %d", m.AgentCalls()["launch_container"], orphans, missing)
	return nil
}

// orphans compares the agent's live containers with the pods the API binds
// to vk-titus's node.
func (b *Bench) orphans(ctx context.Context, names []string, killed map[string]bool) (orphans, missing int, err error) {
	live, err := b.agent.Containers(ctx)
	if err != nil {
		return 0, 0, err
	}
	pods, err := b.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + b.env.NodeName})
	if err != nil {
		return 0, 0, err
	}
	known, liveUID := map[types.UID]bool{}, map[types.UID]bool{}
	for _, p := range pods.Items {
		known[p.UID] = true
	}
	for _, c := range live {
		liveUID[uidOf(c.ID)] = true
		if !known[uidOf(c.ID)] {
			orphans++
		}
	}
	for i, p := range b.tracker.Get(names) {
		if !killed[names[i]] && !liveUID[p.UID] {
			missing++
		}
	}
	return orphans, missing, nil
}

// micro runs the translate and statemachine Go benchmarks.
func (b *Bench) micro(ctx context.Context) error {
	logf("== micro: go test -bench (count %d)", b.o.Rounds)
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	cmd := exec.CommandContext(ctx, gobin, "test", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(b.o.Rounds), "./translate/", "./statemachine/")
	cmd.Dir = b.env.Root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out.String())
	}
	pkg := ""
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "pkg:" {
			pkg = f[1][strings.LastIndexByte(f[1], '/')+1:]
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || (f[i+1] != "ns/op" && f[i+1] != "allocs/op") {
				continue
			}
			b.rep.Add("micro (go test -bench)", fmt.Sprintf("%s.%s %s", pkg, name, f[i+1]), "vk-titus", v)
		}
	}
	return nil
}

func short(im impl) string {
	if im.name == "baseline" {
		return "base"
	}
	return "vkt"
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}
