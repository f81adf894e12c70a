package provider

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
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
)

func init() {
	Registry.MustRegister(transitions, agentCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
