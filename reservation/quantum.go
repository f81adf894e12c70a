package reservation

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/vk-titus/vk-titus/discovery"
)

// ParseQuantum reads a quantum in the Mesos resources form the flags use,
// "cpus:1;mem:1024" (mem and disk in MB). Only cpus, mem, disk and gpus
// are known; each amount must be a finite number ≥ 0, and a resource
// given twice is an error. Empty: no quantum (reservations are exact).
func ParseQuantum(s string) (discovery.Resources, error) {
	var q discovery.Resources
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, ":")
		name = strings.TrimSpace(name)
		if !ok {
			return q, fmt.Errorf("quantum %q: %q is not name:amount", s, item)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return q, fmt.Errorf("quantum %q: %s: the amount must be a number ≥ 0", s, name)
		}
		if seen[name] {
			return q, fmt.Errorf("quantum %q: %s is given twice", s, name)
		}
		seen[name] = true
		switch name {
		case "cpus":
			q.CPUs = v
		case "mem":
			q.MemMB = v
		case "disk":
			q.DiskMB = v
		case "gpus":
			q.GPUs = v
		default:
			return q, fmt.Errorf("quantum %q: unknown resource %q (cpus, mem, disk, gpus)", s, name)
		}
	}
	return q, nil
}
