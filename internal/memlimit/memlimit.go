// Package memlimit sets the Go runtime's soft memory limit from the memory
// limit of the container the process runs in, as GOMEMLIMIT would: the
// garbage collector then works harder as the heap nears the limit instead
// of letting the process be OOM-killed with garbage still in it.
//
// The limit is the cgroup's (v2 memory.max, else v1
// memory.limit_in_bytes) times Fraction; the rest is room for what the Go
// runtime does not count (thread stacks, cgo, fragmentation). An explicit
// GOMEMLIMIT always wins, and no finite cgroup limit leaves the runtime as
// it is.
package memlimit

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the container's limit given to the Go runtime.
const Fraction = 0.9

// cgroupFiles are read in order: cgroup v2, then v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// v1Unlimited: cgroup v1 reports no limit as a huge page-aligned number.
const v1Unlimited = 1 << 62

// FromCgroup sets the soft memory limit from the cgroup's and says what it
// did (for the log), or why it did nothing. It never fails the process: a
// limit it cannot read is reported in the message.
func FromCgroup() string {
	return set(os.Getenv("GOMEMLIMIT"), cgroupFiles, debug.SetMemoryLimit)
}

func set(env string, files []string, setLimit func(int64) int64) string {
	if env != "" {
		return "GOMEMLIMIT=" + env + " is set: kept"
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		limit, ok, err := parse(string(b))
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v: no memory limit set", f, err)
		case !ok:
			return f + ": no limit: no memory limit set"
		}
		soft := int64(float64(limit) * Fraction)
		setLimit(soft)
		return fmt.Sprintf("memory limit %d bytes (%.0f%% of %s = %d)", soft, Fraction*100, f, limit)
	}
	return "no cgroup memory limit found: no memory limit set"
}

// parse reads a cgroup memory limit: ok false for none ("max", or v1's
// unlimited value).
func parse(s string) (limit int64, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("unreadable limit %q", s)
	}
	if v >= v1Unlimited {
		return 0, false, nil
	}
	return int64(v), true, nil
}
