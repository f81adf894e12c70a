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
	agentLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "vktitus", Name: "agent_call_duration_seconds",
		Help:    "Latency of calls to legacy agents (WAIT excluded: it lasts as long as the container), by call.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"call"})
)

// states counts containers by state-machine state at scrape time, from the
// records themselves, so the gauge cannot drift from the truth.
var states = &stateCollector{desc: prometheus.NewDesc("vktitus_containers",
	"Pod containers on the node, by state-machine state.", []string{"node", "state"}, nil)}

type stateCollector struct {
	desc      *prometheus.Desc
	mu        sync.Mutex
	providers []*Provider
}

func (s *stateCollector) add(p *Provider) {
	s.mu.Lock()
	s.providers = append(s.providers, p)
	s.mu.Unlock()
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	providers := append([]*Provider(nil), s.providers...)
	s.mu.Unlock()
	for _, p := range providers {
		counts := map[statemachine.State]int{}
		for _, rec := range p.records() {
			rec.mu.Lock()
			for _, c := range rec.ctrs {
				counts[c.state]++
			}
			rec.mu.Unlock()
		}
		for _, st := range statemachine.States() {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(counts[st]), p.opts.NodeName, string(st))
		}
	}
}

func init() {
	Registry.MustRegister(transitions, agentCalls, agentLatency, states,
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
