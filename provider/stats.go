package provider

import (
	"context"
	"fmt"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// sample is one container's counters as the agent measured them.
type sample struct {
	ns, pod, container string
	start              metav1.Time
	cpuSeconds         float64
	rssBytes           uint64
	at                 time.Time
}

// usage remembers the previous CPU reading of each container, so that a
// summary can give usageNanoCores (a rate) from the agent's cumulative
// counters, as the kubelet does from cAdvisor's.
type usage struct {
	mu   sync.Mutex
	prev map[string]sample
}

// samples reads the agent's container statistics (one GET_CONTAINERS for
// the whole node) and matches them to pods by container id.
func (p *Provider) samples(ctx context.Context) ([]sample, error) {
	list, err := p.agent.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("container statistics: %w", err)
	}
	owners := map[string]sample{}
	for _, rec := range p.records() {
		rec.mu.Lock()
		for _, c := range rec.ctrs {
			owners[c.runID(rec.uid)] = sample{ns: rec.pod.Namespace, pod: rec.pod.Name, container: c.name, start: c.startedAt}
		}
		rec.mu.Unlock()
	}
	out := make([]sample, 0, len(list))
	for _, c := range list {
		s, ok := owners[c.ID]
		if !ok {
			continue
		}
		s.cpuSeconds, s.rssBytes = c.CPUSeconds, c.MemRSSBytes
		s.at = time.Now()
		if c.Timestamp > 0 {
			s.at = time.Unix(0, int64(c.Timestamp*1e9))
		}
		out = append(out, s)
	}
	return out, nil
}

// rate returns nano-cores used since the previous reading of the container.
func (u *usage) rate(id string, s sample) *uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.prev == nil {
		u.prev = map[string]sample{}
	}
	prev, ok := u.prev[id]
	u.prev[id] = s
	dt := s.at.Sub(prev.at).Seconds()
	if !ok || dt <= 0 || s.cpuSeconds < prev.cpuSeconds {
		return nil
	}
	v := uint64((s.cpuSeconds - prev.cpuSeconds) / dt * 1e9)
	return &v
}

// GetStatsSummary serves /stats/summary from the agent's measurements of
// the pods' processes.
func (p *Provider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	samples, err := p.samples(ctx)
	if err != nil {
		return nil, err
	}
	now := metav1.Now()
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.opts.NodeName, StartTime: p.started,
		CPU: &statsv1alpha1.CPUStats{Time: now}, Memory: &statsv1alpha1.MemoryStats{Time: now}}}
	var nodeCPU float64
	var nodeMem, nodeRate uint64
	pods := map[string]*statsv1alpha1.PodStats{}
	for _, s := range samples {
		key := s.ns + "/" + s.pod
		ps, ok := pods[key]
		if !ok {
			ps = &statsv1alpha1.PodStats{
				PodRef: statsv1alpha1.PodReference{Name: s.pod, Namespace: s.ns},
				CPU:    &statsv1alpha1.CPUStats{Time: now}, Memory: &statsv1alpha1.MemoryStats{Time: now}}
			if rec := p.record(s.ns, s.pod); rec != nil {
				ps.PodRef.UID = string(rec.uid)
				ps.StartTime = rec.started
			}
			pods[key] = ps
		}
		cpuNs := uint64(s.cpuSeconds * 1e9)
		mem := s.rssBytes
		cs := statsv1alpha1.ContainerStats{Name: s.container, StartTime: s.start,
			CPU:    &statsv1alpha1.CPUStats{Time: metav1.NewTime(s.at), UsageCoreNanoSeconds: &cpuNs},
			Memory: &statsv1alpha1.MemoryStats{Time: metav1.NewTime(s.at), UsageBytes: &mem, WorkingSetBytes: &mem, RSSBytes: &mem}}
		if r := p.usage.rate(key+"/"+s.container, s); r != nil {
			cs.CPU.UsageNanoCores = r
			ps.CPU.UsageNanoCores = addPtr(ps.CPU.UsageNanoCores, *r)
			nodeRate += *r
		}
		ps.Containers = append(ps.Containers, cs)
		ps.CPU.UsageCoreNanoSeconds = addPtr(ps.CPU.UsageCoreNanoSeconds, cpuNs)
		ps.Memory.UsageBytes = addPtr(ps.Memory.UsageBytes, mem)
		ps.Memory.WorkingSetBytes = addPtr(ps.Memory.WorkingSetBytes, mem)
		nodeCPU += s.cpuSeconds
		nodeMem += mem
	}
	nodeNs := uint64(nodeCPU * 1e9)
	sum.Node.CPU.UsageCoreNanoSeconds, sum.Node.CPU.UsageNanoCores = &nodeNs, &nodeRate
	sum.Node.Memory.UsageBytes, sum.Node.Memory.WorkingSetBytes = &nodeMem, &nodeMem
	for _, ps := range pods {
		sum.Pods = append(sum.Pods, *ps)
	}
	return sum, nil
}

func addPtr(p *uint64, v uint64) *uint64 {
	if p == nil {
		return &v
	}
	*p += v
	return p
}

// GetMetricsResource serves /metrics/resource with the kubelet's metric
// names, so metrics-server reads a virtual node like any other.
func (p *Provider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	samples, err := p.samples(ctx)
	if err != nil {
		return nil, err
	}
	gauge, counter := dto.MetricType_GAUGE, dto.MetricType_COUNTER
	fam := func(name, help string, t dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Help: &help, Type: &t}
	}
	nodeCPU := fam("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node's containers in core-seconds", counter)
	nodeMem := fam("node_memory_working_set_bytes", "Current working set of the node's containers in bytes", gauge)
	ctrCPU := fam("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", counter)
	ctrMem := fam("container_memory_working_set_bytes", "Current working set of the container in bytes", gauge)
	podCPU := fam("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", counter)
	podMem := fam("pod_memory_working_set_bytes", "Current working set of the pod in bytes", gauge)
	label := func(kv ...string) []*dto.LabelPair {
		out := make([]*dto.LabelPair, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, &dto.LabelPair{Name: &kv[i], Value: &kv[i+1]})
		}
		return out
	}
	ms := func(t time.Time) *int64 { v := t.UnixMilli(); return &v }
	var totalCPU, totalMem float64
	type podSum struct{ cpu, mem float64 }
	pods := map[[2]string]*podSum{}
	for _, s := range samples {
		cpu, mem := s.cpuSeconds, float64(s.rssBytes)
		l := label("container", s.container, "namespace", s.ns, "pod", s.pod)
		ctrCPU.Metric = append(ctrCPU.Metric, &dto.Metric{Label: l, Counter: &dto.Counter{Value: &cpu}, TimestampMs: ms(s.at)})
		ctrMem.Metric = append(ctrMem.Metric, &dto.Metric{Label: l, Gauge: &dto.Gauge{Value: &mem}, TimestampMs: ms(s.at)})
		k := [2]string{s.ns, s.pod}
		if pods[k] == nil {
			pods[k] = &podSum{}
		}
		pods[k].cpu += cpu
		pods[k].mem += mem
		totalCPU += cpu
		totalMem += mem
	}
	now := time.Now()
	for k, v := range pods {
		l := label("namespace", k[0], "pod", k[1])
		podCPU.Metric = append(podCPU.Metric, &dto.Metric{Label: l, Counter: &dto.Counter{Value: &v.cpu}, TimestampMs: ms(now)})
		podMem.Metric = append(podMem.Metric, &dto.Metric{Label: l, Gauge: &dto.Gauge{Value: &v.mem}, TimestampMs: ms(now)})
	}
	nodeCPU.Metric = []*dto.Metric{{Counter: &dto.Counter{Value: &totalCPU}, TimestampMs: ms(now)}}
	nodeMem.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: &totalMem}, TimestampMs: ms(now)}}
	// A node without pods has no pod or container series: the text encoder
	// refuses a family without metrics (the whole scrape would fail), and the
	// kubelet leaves such a family out too.
	out := []*dto.MetricFamily{nodeCPU, nodeMem}
	for _, f := range []*dto.MetricFamily{podCPU, podMem, ctrCPU, ctrMem} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}
