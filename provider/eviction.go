package provider

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Signal is an eviction signal, named as the kubelet names it.
type Signal string

// The signals the node's pressure conditions can follow: those the agent
// reports figures for (pressure.go says which).
const (
	SignalMemoryAvailable  Signal = "memory.available"
	SignalNodeFsAvailable  Signal = "nodefs.available"
	SignalNodeFsInodesFree Signal = "nodefs.inodesFree"
)

// signalOrder is the supported signals in the order they are written.
var signalOrder = []Signal{SignalMemoryAvailable, SignalNodeFsAvailable, SignalNodeFsInodesFree}

// unsupportedSignals are the kubelet's other signals, with why they are
// refused: nothing the agent reports measures them.
var unsupportedSignals = map[Signal]string{
	"pid.available":               "a Mesos agent reports no process figures",
	"imagefs.available":           "a Mesos agent reports no image file system figures",
	"imagefs.inodesFree":          "a Mesos agent reports no image file system figures",
	"containerfs.available":       "a Mesos agent reports no container file system figures",
	"containerfs.inodesFree":      "a Mesos agent reports no container file system figures",
	"allocatableMemory.available": "a Mesos agent reports no figure of what all pods use together",
}

// DefaultEvictionHard is the kubelet's default --eviction-hard, less its
// imagefs threshold (unsupported: see unsupportedSignals).
const DefaultEvictionHard = "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%"

// Threshold is one hard eviction threshold: the signal's figure below
// Quantity, or below Percent of the signal's capacity, is pressure.
type Threshold struct {
	Signal   Signal
	Quantity *resource.Quantity // nil: Percent applies
	Percent  float64            // of the capacity, in (0, 100)
}

// String is the threshold's value as the flag takes it: "100Mi", "10%".
func (t Threshold) String() string {
	if t.Quantity != nil {
		return t.Quantity.String()
	}
	return strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
}

// Thresholds are the hard eviction thresholds, at most one per signal; the
// zero value has none. As a flag value (--eviction-hard, pflag.Value) it
// reads the kubelet's syntax: "signal<value" pairs separated by commas,
// the value a quantity ("100Mi") or a percentage of the capacity ("10%").
// The first Set replaces the defaults and a repeated flag adds to it, as
// the kubelet's flag does; a signal given twice is an error. Every signal
// the flag does not name has no threshold, as with the kubelet.
type Thresholds struct {
	bySignal map[Signal]Threshold
	// named are the signals the flag named, "0%" and "100%" included
	// (which set no threshold, as the kubelet reads them).
	named map[Signal]bool
	// set: the flag was given; a further Set adds to what it gave.
	set bool
}

// ParseThresholds reads --eviction-hard's syntax; "" is no threshold.
func ParseThresholds(s string) (Thresholds, error) {
	var t Thresholds
	err := t.Set(s)
	return t, err
}

// DefaultThresholds are DefaultEvictionHard's, as the flag's default: the
// first Set replaces them.
func DefaultThresholds() Thresholds {
	t, err := ParseThresholds(DefaultEvictionHard)
	if err != nil {
		panic(fmt.Sprintf("DefaultEvictionHard: %v", err)) // a constant: a bug, caught by the tests
	}
	t.set = false
	return t
}

// Set adds the thresholds of s (pflag.Value); on the first call it
// replaces what t held. On error t is unchanged.
func (t *Thresholds) Set(s string) error {
	next := Thresholds{bySignal: map[Signal]Threshold{}, named: map[Signal]bool{}, set: true}
	if t.set {
		for k, v := range t.bySignal {
			next.bySignal[k] = v
		}
		for k := range t.named {
			next.named[k] = true
		}
	}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue // "" and a trailing comma, as the kubelet reads them
		}
		name, value, ok := strings.Cut(pair, "<")
		if !ok {
			return fmt.Errorf("%q: want signal<value, e.g. memory.available<100Mi (the only operator is <)", pair)
		}
		sig := Signal(strings.TrimSpace(name))
		th, err := parseThreshold(sig, strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%q: %w", pair, err)
		}
		if next.named[sig] {
			return fmt.Errorf("%q: %s given twice", pair, sig)
		}
		next.named[sig] = true
		if th != nil {
			next.bySignal[sig] = *th
		}
	}
	*t = next
	return nil
}

// parseThreshold reads one signal's value; nil for "0%" and "100%", which
// set no threshold (as the kubelet reads them).
func parseThreshold(sig Signal, value string) (*Threshold, error) {
	if why, ok := unsupportedSignals[sig]; ok {
		return nil, fmt.Errorf("eviction signal %s is not supported: %s", sig, why)
	}
	if !slices.Contains(signalOrder, sig) {
		names := make([]string, len(signalOrder))
		for i, s := range signalOrder {
			names[i] = string(s)
		}
		return nil, fmt.Errorf("unknown eviction signal %q (supported: %s)", sig, strings.Join(names, ", "))
	}
	if pct, ok := strings.CutSuffix(value, "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || math.IsNaN(p) || p < 0 || p > 100 {
			return nil, fmt.Errorf("%s: %q is not a percentage from 0%% to 100%%", sig, value)
		}
		if p == 0 || p == 100 {
			return nil, nil
		}
		return &Threshold{Signal: sig, Percent: p}, nil
	}
	q, err := resource.ParseQuantity(value)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is neither a quantity (100Mi) nor a percentage (10%%): %w", sig, value, err)
	}
	if q.Sign() <= 0 {
		return nil, fmt.Errorf("%s: threshold %s must be positive", sig, value)
	}
	return &Threshold{Signal: sig, Quantity: &q}, nil
}

// For is the threshold of sig, if one is set.
func (t Thresholds) For(sig Signal) (Threshold, bool) {
	th, ok := t.bySignal[sig]
	return th, ok
}

// Empty reports whether no threshold is set.
func (t Thresholds) Empty() bool { return len(t.bySignal) == 0 }

// String writes the thresholds in the flag's syntax, in a fixed order.
func (t *Thresholds) String() string {
	var parts []string
	for _, sig := range signalOrder {
		if th, ok := t.bySignal[sig]; ok {
			parts = append(parts, string(sig)+"<"+th.String())
		}
	}
	return strings.Join(parts, ",")
}

// Type names the flag's value type in --help, as the kubelet's does.
func (t *Thresholds) Type() string { return "mapStringString" }
