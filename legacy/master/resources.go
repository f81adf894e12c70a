package master

import (
	"fmt"
	"math"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
)

// Resources are scalar resources by Mesos name: "cpus", "mem" (MB), "disk"
// (MB), "gpus". Placement only ever compares scalars; ranges and sets
// (ports) are reported in GET_AGENTS' total_resources but not allocated.
type Resources map[string]float64

// scalarsOf sums the scalar resources of rs across roles and reservations.
func scalarsOf(rs []mesos.Resource) Resources {
	out := Resources{}
	for _, r := range rs {
		if r.Scalar != nil {
			out[r.Name] += r.Scalar.Value
		}
	}
	return out
}

// Clone copies r.
func (r Resources) Clone() Resources {
	out := make(Resources, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// Add adds o into r.
func (r Resources) Add(o Resources) {
	for k, v := range o {
		r[k] += v
	}
}

// Minus returns r − o (never below zero).
func (r Resources) Minus(o Resources) Resources {
	out := r.Clone()
	for k, v := range o {
		out[k] = math.Max(0, out[k]-v)
	}
	return out
}

// epsilon absorbs float error in sums of fractional cpus (0.1+0.2 > 0.3);
// Mesos itself uses fixed-point with three decimals.
const epsilon = 1e-6

// Fits reports whether want fits into r.
func (r Resources) Fits(want Resources) bool {
	for k, v := range want {
		if v > 0 && r[k]+epsilon < v {
			return false
		}
	}
	return true
}

// Mesos renders r as mesos-go scalar resources in a stable order.
func (r Resources) Mesos() []mesos.Resource {
	names := make([]string, 0, len(r))
	for k, v := range r {
		if v > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := make([]mesos.Resource, 0, len(names))
	for _, n := range names {
		out = append(out, resources.Build().Name(resources.Name(n)).Scalar(r[n]).Resource)
	}
	return out
}

// String is for messages: "cpus:0.5;mem:64".
func (r Resources) String() string {
	names := make([]string, 0, len(r))
	for k := range r {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, "%s:%g", n, math.Round(r[n]*1000)/1000)
	}
	return b.String()
}

// attributeValue renders an attribute the way constraints compare it.
func attributeValue(a mesos.Attribute) string {
	switch {
	case a.Text != nil:
		return a.Text.Value
	case a.Scalar != nil:
		return fmt.Sprint(a.Scalar.Value)
	case a.Ranges != nil:
		parts := make([]string, 0, len(a.Ranges.Range))
		for _, rg := range a.Ranges.Range {
			parts = append(parts, fmt.Sprintf("%d-%d", rg.Begin, rg.End))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case a.Set != nil:
		return "{" + strings.Join(a.Set.Item, ",") + "}"
	}
	return ""
}
