package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// logf prints progress to stderr with a timestamp.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s vk-bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// ProcSample is one reading of a process's resident memory and CPU time.
type ProcSample struct {
	At     time.Time
	RSSKB  int64
	CPUSec float64 // utime + stime
}

// clockTicks is USER_HZ, 100 on every Linux the bench runs on.
const clockTicks = 100

// ReadProc reads VmRSS from /proc/<pid>/status and utime+stime from
// /proc/<pid>/stat.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				s.RSSKB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces: fields count from after ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest) // f[0] is field 3 (state); utime is field 14
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUSec = float64(ut+st) / clockTicks
	return s, nil
}

// IdleStats samples pid every second for d: the largest RSS seen and the
// CPU used over the window as a percentage of one core.
func IdleStats(ctx context.Context, pid int, d time.Duration) (maxRSSMB, cpuPct float64, err error) {
	first, err := ReadProc(pid)
	if err != nil {
		return 0, 0, err
	}
	last, maxRSS := first, first.RSSKB
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-t.C:
		}
		if last, err = ReadProc(pid); err != nil {
			return 0, 0, err
		}
		maxRSS = max(maxRSS, last.RSSKB)
	}
	window := last.At.Sub(first.At).Seconds()
	return float64(maxRSS) / 1024, 100 * (last.CPUSec - first.CPUSec) / window, nil
}

// CPUSnapshot reads the CPU time used so far by every stack component with
// a pid file in .local/pids, plus extra processes; names map to seconds.
func CPUSnapshot(stackRoot string, extra map[string]int) map[string]float64 {
	out := map[string]float64{}
	files, _ := filepath.Glob(filepath.Join(stackRoot, "pids", "*.pid"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if pid, err := ReadPidFile(stackRoot, name); err == nil {
			if s, err := ReadProc(pid); err == nil {
				out[name] = s.CPUSec
			}
		}
	}
	for name, pid := range extra {
		if s, err := ReadProc(pid); err == nil {
			out[name] = s.CPUSec
		}
	}
	return out
}

// waitQuiet waits until pid used at most pct % of a core over 5 s, and
// returns how long that took (limit when it never was).
func waitQuiet(ctx context.Context, pid int, pct float64, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	prev, err := ReadProc(pid)
	if err != nil {
		return 0, err
	}
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Second):
		}
		cur, err := ReadProc(pid)
		if err != nil {
			return 0, err
		}
		used := 100 * (cur.CPUSec - prev.CPUSec) / cur.At.Sub(prev.At).Seconds()
		if used <= pct {
			return time.Since(start), nil
		}
		logf("  node process (pid %d) still busy: %.0f%% of a core", pid, used)
		prev = cur
	}
	logf("  pid %d not quiet (≤ %.0f%% of a core) within %s; measuring anyway", pid, pct, limit)
	return time.Since(start), nil
}

// ReadPidFile reads .local/pids/<name>.pid.
func ReadPidFile(stackRoot, name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(stackRoot, "pids", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ProcsUnder counts processes whose working directory is below dir: the
// reference agent starts every container in its sandbox under its work
// directory, so this is every container process still alive (whatever the
// agent itself believes). The agent's container supervisor works in dir
// itself and is not counted: it outlives the containers.
func ProcsUnder(dir string) int {
	dir = filepath.Clean(dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err == nil && strings.HasPrefix(cwd, dir+"/") {
			n++
		}
	}
	return n
}

// Metrics are Prometheus text-format samples keyed by name, each with its
// labels.
type Metrics map[string][]Sample

// Sample is one time series value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Scrape reads url (a /metrics endpoint) with a short timeout.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return parseMetrics(res.Body)
}

// parseMetrics reads the text exposition format: enough for counters and
// gauges with plain label values.
func parseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var name, labels, value string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, labels, value = line[:i], line[i+1:j], strings.TrimSpace(line[j+1:])
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, value = f[0], f[1]
		}
		if f := strings.Fields(value); len(f) > 0 {
			value = f[0]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		s := Sample{Labels: map[string]string{}, Value: v}
		for _, kv := range strings.Split(labels, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if ok {
				s.Labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
		m[name] = append(m[name], s)
	}
	return m, sc.Err()
}

// Sum adds the samples of name whose labels include every pair of match.
func (m Metrics) Sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range m[name] {
		ok := true
		for k, v := range match {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.Value
		}
	}
	return total
}

// HistogramQuantile is the q-quantile (0..1) of what histogram name
// observed between before and after (two scrapes of one process), as the
// upper bound of the bucket it falls in, and how many observations there
// were; NaN without observations.
func HistogramQuantile(before, after Metrics, name string, q float64) (float64, float64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for _, s := range after[name+"_bucket"] {
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, s.Value - before.Sum(name+"_bucket", map[string]string{"le": s.Labels["le"]})})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return math.NaN(), 0
	}
	total := bs[len(bs)-1].n // the +Inf bucket counts every observation
	for _, b := range bs {
		if b.n >= q*total {
			return b.le, total
		}
	}
	return math.Inf(1), total
}

// AgentCalls is vktitus_agent_calls_total summed over outcomes, by call.
func (m Metrics) AgentCalls() map[string]float64 {
	out := map[string]float64{}
	for _, s := range m["vktitus_agent_calls_total"] {
		out[s.Labels["call"]] += s.Value
	}
	return out
}

// RaiseOpenFileLimit lifts the soft open-file limit to the hard one.
func RaiseOpenFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
