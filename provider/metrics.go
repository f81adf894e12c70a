package provider

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/statemachine"
)

// Registry holds the bridge's metrics; --metrics-addr serves it.
var Registry = prometheus.NewRegistry()

var (
	transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "vktitus", Name: "state_transitions_total",
		Help: "Container state-machine transitions, by from and to state.",
	}, []string{"from", "to"})
	agentCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "vktitus", Name: "agent_calls_total",
		Help: "Calls to legacy agents, by call and outcome.",
	}, []string{"call", "outcome"})
	admitToLaunch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "vktitus", Name: "pod_admit_to_launch_seconds",
		Help:    "From a pod's admission by the bridge (virtual-kubelet's CreatePod, once the binding reached it) to its first LAUNCH_CONTAINER sent: the bridge's own latency (translation, reservation, queueing).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	agentLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "vktitus", Name: "agent_call_duration_seconds",
		Help:    "Latency of calls to legacy agents (WAIT excluded: it lasts as long as the container), by call.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"call"})
)

// states counts containers by state-machine state at scrape time, from the
// records themselves, so the gauge cannot drift from the truth.
var states = &stateCollector{
	desc: prometheus.NewDesc("vktitus_containers",
		"Pod containers on the node, by state-machine state.", []string{"node", "state"}, nil),
	followedDesc: prometheus.NewDesc("vktitus_exits_followed",
		"Container runs whose exit the node follows, by how: a WAIT_CONTAINER long poll (wait), or, beyond the WAIT budget (--max-waits), the GET_CONTAINERS sweep (sweep).",
		[]string{"node", "by"}, nil),
}

// stateCollector reports every registered provider's containers by state.
// Providers come and go with agents: a provider is dropped by unregister
// when its Start ctx ends, and a node name reported by two providers (a
// returning agent's new provider while the old one has not stopped yet) is
// reported once, for the newest: two series with the same labels make the
// registry fail the whole scrape (HTTP 500).
//
// Lock rule: mu guards sources only; it is not held while counting (which
// takes the providers' and records' locks).
type stateCollector struct {
	desc, followedDesc *prometheus.Desc
	mu                 sync.Mutex
	sources            []stateSource // oldest first
}

// stateSource is one provider as the collector sees it; count is its
// provider's containerStates and followed its waiter's following (seams for
// tests; followed may be nil).
type stateSource struct {
	key      *Provider
	node     string
	count    func() map[statemachine.State]int
	followed func() (longPolls, swept int)
}

func (s *stateCollector) add(p *Provider) {
	s.addSource(stateSource{key: p, node: p.opts.NodeName, count: p.containerStates, followed: p.waits.following})
}

func (s *stateCollector) addSource(src stateSource) {
	s.mu.Lock()
	s.sources = append(s.sources, src)
	s.mu.Unlock()
}

// remove drops every source of p.
func (s *stateCollector) remove(p *Provider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.sources[:0]
	for _, src := range s.sources {
		if src.key != p {
			kept = append(kept, src)
		}
	}
	clear(s.sources[len(kept):]) // let the dropped providers be collected
	s.sources = kept
}

// unregister stops reporting p's containers; the provider calls it when its
// Start ctx ends (without it the collector would hold every provider the
// process ever had, and report agents long gone).
func unregister(p *Provider) { states.remove(p) }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.desc
	ch <- s.followedDesc
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	newest := make(map[string]stateSource, len(s.sources))
	var nodes []string
	for _, src := range s.sources { // oldest first: a later one replaces it
		if _, seen := newest[src.node]; !seen {
			nodes = append(nodes, src.node)
		}
		newest[src.node] = src
	}
	s.mu.Unlock()
	for _, node := range nodes {
		src := newest[node]
		counts := src.count()
		for _, st := range statemachine.States() {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(counts[st]), node, string(st))
		}
		if src.followed != nil {
			long, swept := src.followed()
			ch <- prometheus.MustNewConstMetric(s.followedDesc, prometheus.GaugeValue, float64(long), node, "wait")
			ch <- prometheus.MustNewConstMetric(s.followedDesc, prometheus.GaugeValue, float64(swept), node, "sweep")
		}
	}
}

// containerStates counts p's pod containers by state.
func (p *Provider) containerStates() map[statemachine.State]int {
	counts := map[statemachine.State]int{}
	for _, rec := range p.records() {
		rec.mu.Lock()
		for _, c := range rec.ctrs {
			counts[c.state]++
		}
		rec.mu.Unlock()
	}
	return counts
}

func init() {
	Registry.MustRegister(transitions, agentCalls, agentLatency, admitToLaunch, states,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// ObserveAgentCall is the agent client's Options.Observe: calls by type and
// outcome, and their latency.
func ObserveAgentCall(call string, took time.Duration, err error) {
	call = strings.ToLower(call)
	agentCalls.WithLabelValues(call, outcome(err)).Inc()
	// WAITs and exec input streams last as long as what they follow.
	if !strings.HasPrefix(call, "wait_") && call != "attach_container_input" {
		agentLatency.WithLabelValues(call).Observe(took.Seconds())
	}
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, agentclient.ErrNotFound):
		return "not_found"
	case errors.Is(err, agentclient.ErrRejected):
		return "rejected"
	default:
		return "unavailable"
	}
}
