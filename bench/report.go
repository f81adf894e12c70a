package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Row is one measured quantity: the per-round values of each side, their
// medians, the ratio vk-titus/baseline, and the target for it.
type Row struct {
	Scenario string    `json:"scenario"`
	Metric   string    `json:"metric"`
	Baseline []float64 `json:"baseline,omitempty"`
	VKTitus  []float64 `json:"vkTitus,omitempty"`
	// Medians over rounds, and vk-titus / baseline.
	BaselineMedian *float64 `json:"baselineMedian,omitempty"`
	VKTitusMedian  *float64 `json:"vkTitusMedian,omitempty"`
	Ratio          *float64 `json:"ratio,omitempty"`
	Target         string   `json:"target,omitempty"`
	Met            *bool    `json:"met,omitempty"`
}

// Report collects rows in the order they are first measured.
type Report struct {
	Started  time.Time                     `json:"started"`
	Finished time.Time                     `json:"finished"`
	Options  Options                       `json:"options"`
	Rows     []*Row                        `json:"rows"`
	Details  map[string]map[string]float64 `json:"details,omitempty"`
	// Charts draw what some rows sum up (Save writes each as an SVG); the
	// rows stay the record.
	Charts []*Chart `json:"charts,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

// NewReport starts a report for a run with options o.
func NewReport(o Options) *Report {
	return &Report{Started: time.Now(), Options: o, Details: map[string]map[string]float64{}}
}

func (r *Report) row(scenario, metric string) *Row {
	for _, row := range r.Rows {
		if row.Scenario == scenario && row.Metric == metric {
			return row
		}
	}
	row := &Row{Scenario: scenario, Metric: metric}
	r.Rows = append(r.Rows, row)
	return row
}

// Add records one round's value for side ("baseline" or "vk-titus").
func (r *Report) Add(scenario, metric, side string, v float64) {
	row := r.row(scenario, metric)
	if side == "baseline" {
		row.Baseline = append(row.Baseline, v)
	} else {
		row.VKTitus = append(row.VKTitus, v)
	}
}

// Detail keeps a breakdown for the JSON only.
func (r *Report) Detail(key string, v map[string]float64) { r.Details[key] = v }

// Plot adds c's series to the chart with c's ID, which it creates (with
// c's title and labels) on first use.
func (r *Report) Plot(c Chart) {
	for _, have := range r.Charts {
		if have.ID == c.ID {
			have.Series = append(have.Series, c.Series...)
			return
		}
	}
	r.Charts = append(r.Charts, &c)
}

// Error records a scenario that failed; its rows stay incomplete.
func (r *Report) Error(what string, err error) {
	r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err))
}

// target is the goal for a metric: vs the baseline (ratio) or an
// absolute bound on vk-titus's median.
type target struct {
	text  string
	ratio float64 // > 0: vk-titus ≤ ratio × baseline
	limit float64 // otherwise: vk-titus ≤ limit
}

func targetFor(scenario, metric string) (target, bool) {
	switch {
	case strings.HasPrefix(scenario, "burst") && (metric == "all Running (s)" || metric == "creation→Running p99 (ms)"):
		return target{text: "≤ 1.2× baseline", ratio: 1.2}, true
	case strings.HasPrefix(scenario, "scale") && metric == "node process RSS (MB)":
		return target{text: "≤ 300 MB", limit: 300}, true
	case strings.HasPrefix(scenario, "scale") && metric == "node process idle CPU (% of a core)":
		return target{text: "≤ 5 %", limit: 5}, true
	case strings.HasPrefix(scenario, "scale") && metric == "agent calls per pod beyond launch/wait/kill/remove":
		return target{text: "≤ 2", limit: 2}, true
	case strings.HasPrefix(scenario, "restart") && metric == "statuses current after restart (s)":
		return target{text: "≤ 20 s", limit: 20}, true
	case strings.HasPrefix(scenario, "restart") && (metric == "launches during recovery" || strings.HasPrefix(metric, "orphans")):
		return target{text: "= 0", limit: 0}, true
	case strings.HasPrefix(scenario, "nodes") && metric == "RSS per node beyond its pods (MB)":
		return target{text: "≤ 1 MB", limit: 1}, true
	case strings.HasPrefix(scenario, "nodes") && metric == "all nodes Ready (s)":
		return target{text: "≤ 30 s", limit: 30}, true
	case strings.HasPrefix(scenario, "nodes") && metric == "API requests per node per minute while idle":
		return target{text: "≤ 6", limit: 6}, true
	}
	return target{}, false
}

// Finish computes medians, ratios and whether targets are met.
func (r *Report) Finish() {
	r.Finished = time.Now()
	for _, row := range r.Rows {
		row.BaselineMedian, row.VKTitusMedian, row.Ratio, row.Met = nil, nil, nil, nil
		if len(row.Baseline) > 0 {
			m := Percentile(row.Baseline, 50)
			row.BaselineMedian = &m
		}
		if len(row.VKTitus) > 0 {
			m := Percentile(row.VKTitus, 50)
			row.VKTitusMedian = &m
		}
		if row.BaselineMedian != nil && row.VKTitusMedian != nil && *row.BaselineMedian != 0 {
			q := *row.VKTitusMedian / *row.BaselineMedian
			row.Ratio = &q
		}
		t, ok := targetFor(row.Scenario, row.Metric)
		if !ok {
			continue
		}
		row.Target = t.text
		switch {
		case row.VKTitusMedian == nil:
		case t.ratio > 0 && row.Ratio != nil:
			met := *row.Ratio <= t.ratio
			row.Met = &met
		case t.ratio == 0:
			// Every round must meet an absolute target, not just the median.
			met := slices.Max(row.VKTitus) <= t.limit
			row.Met = &met
		}
	}
}

// Markdown renders the table, links to the charts as Save names them in
// .local/bench/ (<id>.svg), and any errors.
func (r *Report) Markdown() string { return r.markdown("") }

// markdown is Markdown with chart files named <chartPrefix><id>.svg.
func (r *Report) markdown(chartPrefix string) string {
	var sb strings.Builder
	o := r.Options
	base := "virtual-kubelet nodeutil v1.13.0 (pod queues 10/s after a burst of 100)"
	if o.BaselineQueueQPS > 0 {
		base = fmt.Sprintf("vk-titus's vknode, pod queues %g/s (burst %g)", o.BaselineQueueQPS, 2*o.BaselineQueueQPS)
	}
	fmt.Fprintf(&sb, "\n## vk-bench %s — %d round(s); burst %d, scale %d, restart %d pods; %d nodes × %d pods\n\n"+
		"baseline: mock provider (every pod Running at once) on %s; client QPS 200, burst 400, 10 pod sync workers, as vk-titus.\n\n",
		r.Started.Format("2006-01-02 15:04"), o.Rounds, o.Burst, o.Scale, o.Restart, o.Nodes, o.NodePods, base)
	sb.WriteString("| scenario | metric | baseline | vk-titus | ratio | target | met |\n|---|---|---:|---:|---:|---|---|\n")
	for _, row := range r.Rows {
		met := ""
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "**NO**"}[*row.Met]
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Metric,
			num(row.BaselineMedian), num(row.VKTitusMedian), ratio(row.Ratio), row.Target, met)
	}
	sb.WriteString("\nValues are medians over rounds. Latencies are watch-observed: create call returned → first event showing\n" +
		"the pod Running (or a process's kill → first event showing it terminated). Pods: one `sleep 100000` container,\n" +
		"requests 1m/1Mi, restartPolicy Never, terminationGracePeriodSeconds 2; delete = graceful delete of every pod\n" +
		"until the API has none left and (vk-titus) the agent lists none and no process is left in its work directory.\n" +
		"nodes (vk-titus alone): one legacy-agent --count process registers its agents with the stack's masters and a\n" +
		"freshly restarted vk-titus serves a node for each; Ready is timed from that process's start. Per node beyond its\n" +
		"pods = (idle RSS with the nodes, no pods − idle RSS before them) / nodes. API requests: vk-titus's, counted by the\n" +
		"API server under a FlowSchema of the bench's own, per node it serves (the stack's agents' too) over an idle minute.\n")
	if len(r.Charts) > 0 {
		sb.WriteString("\n### Charts\n\n")
		for _, c := range r.Charts {
			fmt.Fprintf(&sb, "![%s](%s%s.svg)\n\n", c.Title, chartPrefix, c.ID)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&sb, "\nERROR: %s\n", e)
	}
	return sb.String()
}

func num(v *float64) string {
	switch {
	case v == nil:
		return "—"
	case *v == 0:
		return "0"
	case math.Abs(*v) >= 100:
		return fmt.Sprintf("%.0f", *v)
	case math.Abs(*v) >= 1:
		return fmt.Sprintf("%.2f", *v)
	default:
		return fmt.Sprintf("%.3f", *v)
	}
}

func ratio(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f×", *v)
}

// Save writes .local/bench/bench-<time>.json and .md, and latest.json/.md;
// each chart as <id>.svg (which latest.md shows) and bench-<time>-<id>.svg
// (which bench-<time>.md shows).
func (r *Report) Save(stackRoot string) error {
	dir := filepath.Join(stackRoot, "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	stamp := r.Started.Format("20060102-150405")
	type file struct {
		name string
		data []byte
	}
	files := []file{{"bench-" + stamp + ".json", b}, {"bench-" + stamp + ".md", []byte(r.markdown("bench-" + stamp + "-"))},
		{"latest.json", b}, {"latest.md", []byte(r.Markdown())}}
	for _, c := range r.Charts {
		var svg bytes.Buffer
		if err := c.WriteSVG(&svg); err != nil {
			return fmt.Errorf("chart %s: %w", c.ID, err)
		}
		files = append(files, file{c.ID + ".svg", svg.Bytes()}, file{"bench-" + stamp + "-" + c.ID + ".svg", svg.Bytes()})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	logf("report: %s", filepath.Join(dir, "bench-"+stamp+".json"))
	return nil
}

// Percentile is the nearest-rank percentile p (0-100) of vs; 0 for none.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
