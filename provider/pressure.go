package provider

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
)

// ReasonAgentMetricsUnavailable is the reason of a pressure condition that
// is Unknown: its thresholds are set but the agent's figures are not at
// hand (the agent does not answer, GET_METRICS failed, or the answer lacks
// a figure the thresholds need).
const ReasonAgentMetricsUnavailable = "AgentMetricsUnavailable"

// figures are the agent's GET_METRICS answer, or why there is none.
type figures struct {
	values map[string]float64
	err    error
}

// signalSource is where a signal's figure and its capacity (what a
// percentage is of) come from in the agent's metrics.
type signalSource struct{ value, capacity string }

var signalSources = map[Signal]signalSource{
	SignalMemoryAvailable:  {agentclient.MetricMemFreeBytes, agentclient.MetricMemTotalBytes},
	SignalNodeFsAvailable:  {agentclient.MetricFSAvailableBytes, agentclient.MetricFSTotalBytes},
	SignalNodeFsInodesFree: {agentclient.MetricFSInodesFree, agentclient.MetricFSInodesTotal},
}

// pressureCondition is one of the kubelet's pressure conditions: the
// signals that drive it and the kubelet's reasons. noSignals explains a
// condition no threshold can drive.
type pressureCondition struct {
	typ                  corev1.NodeConditionType
	signals              []Signal
	pressure, noPressure string
	noSignals            string
}

var pressureConditions = []pressureCondition{
	{typ: corev1.NodeMemoryPressure, signals: []Signal{SignalMemoryAvailable},
		pressure: "KubeletHasInsufficientMemory", noPressure: "KubeletHasSufficientMemory"},
	{typ: corev1.NodeDiskPressure, signals: []Signal{SignalNodeFsAvailable, SignalNodeFsInodesFree},
		pressure: "KubeletHasDiskPressure", noPressure: "KubeletHasNoDiskPressure"},
	{typ: corev1.NodePIDPressure, pressure: "KubeletHasInsufficientPID", noPressure: "KubeletHasSufficientPID",
		noSignals: "no pid.available threshold: a Mesos agent reports no process figures"},
}

// pressureConditionsFor are the pressure conditions, without times, from
// the thresholds and the agent's figures. As the kubelet's: True when a
// signal of the condition is below its threshold, False otherwise, and
// False when none of its signals has a threshold. Unknown when thresholds
// are set but the figures they need are not at hand and no other signal
// shows pressure. The messages name the signal, the metric and the
// threshold but not the figure itself, which changes at every reading:
// the node's status is written only when a condition changes.
func pressureConditionsFor(th Thresholds, f figures) []corev1.NodeCondition {
	out := make([]corev1.NodeCondition, 0, len(pressureConditions))
	for _, pc := range pressureConditions {
		var under, fine, unknown []string
		for _, sig := range pc.signals {
			t, ok := th.For(sig)
			if !ok {
				continue
			}
			if f.err != nil {
				unknown = append(unknown, f.err.Error())
				continue
			}
			src := signalSources[sig]
			what := fmt.Sprintf("%s (%s)", sig, src.value)
			limit := t.String()
			if t.Quantity == nil {
				limit += " of " + src.capacity
			}
			switch below, err := t.below(f.values); {
			case err != nil:
				unknown = append(unknown, err.Error())
			case below:
				under = append(under, what+" is below the eviction threshold "+limit)
			default:
				fine = append(fine, what+" is not below the eviction threshold "+limit)
			}
		}
		c := corev1.NodeCondition{Type: pc.typ, Status: corev1.ConditionFalse, Reason: pc.noPressure}
		switch {
		case len(under) > 0:
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, pc.pressure, strings.Join(under, "; ")
		case len(unknown) > 0:
			c.Status, c.Reason, c.Message = corev1.ConditionUnknown, ReasonAgentMetricsUnavailable, strings.Join(slices.Compact(unknown), "; ")
		case len(fine) > 0:
			c.Message = strings.Join(fine, "; ")
		case pc.noSignals != "":
			c.Message = pc.noSignals
		default:
			names := make([]string, len(pc.signals))
			for i, s := range pc.signals {
				names[i] = string(s)
			}
			c.Message = "no eviction threshold for " + strings.Join(names, " or ")
		}
		out = append(out, c)
	}
	return out
}

// below reports whether the signal's figure is below the threshold; an
// error when the figure, or the capacity a percentage needs, is missing.
func (t Threshold) below(values map[string]float64) (bool, error) {
	src := signalSources[t.Signal]
	v, ok := values[src.value]
	if !ok {
		return false, fmt.Errorf("the agent reports no %s (GET_METRICS), which %s needs", src.value, t.Signal)
	}
	if t.Quantity != nil {
		return v < t.Quantity.AsApproximateFloat64(), nil
	}
	capacity, ok := values[src.capacity]
	if !ok || capacity <= 0 {
		return false, fmt.Errorf("the agent reports no %s (GET_METRICS), which the %s threshold %s needs", src.capacity, t.Signal, t)
	}
	return v < capacity*t.Percent/100, nil
}

// logFields are the figures the pressure conditions read, for the log
// line of a transition.
func (f figures) logFields() logrus.Fields {
	fields := logrus.Fields{}
	for _, src := range signalSources {
		for _, k := range []string{src.value, src.capacity} {
			if v, ok := f.values[k]; ok {
				fields[k] = int64(v) // bytes and inodes
			}
		}
	}
	if f.err != nil {
		fields[logrus.ErrorKey] = f.err
	}
	return fields
}
