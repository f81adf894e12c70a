package agent

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"
)

// GET_METRICS keys. The system/* keys are libprocess's system gauges,
// which every Mesos agent reports under these names: the CPU count, the
// load averages, and the kernel's total and free RAM (sysinfo(2)'s
// totalram and freeram, /proc/meminfo's MemTotal and MemFree: page cache
// counts as used, as in Mesos).
//
// The work_dir/* keys are this agent's own, not Mesos's: a Mesos agent
// reports no figures of the file system its sandboxes live on (its
// slave/disk_* gauges are the disk resource in MB, total and allocated,
// not the volume's free space). They are the statfs(2) figures of the
// sandbox directory: bytes available to unprivileged users (f_bavail), the
// size, and free and total inodes.
const (
	metricCPUsTotal        = "system/cpus_total"
	metricLoad1            = "system/load_1min"
	metricLoad5            = "system/load_5min"
	metricLoad15           = "system/load_15min"
	metricMemTotalBytes    = "system/mem_total_bytes"
	metricMemFreeBytes     = "system/mem_free_bytes"
	metricFSAvailableBytes = "work_dir/fs_available_bytes"
	metricFSTotalBytes     = "work_dir/fs_total_bytes"
	metricFSInodesFree     = "work_dir/fs_inodes_free"
	metricFSInodesTotal    = "work_dir/fs_inodes_total"
)

// metrics answers GET_METRICS from the host's figures, read afresh on each
// call. A figure that cannot be read is left out, as Mesos leaves out a
// gauge that fails; the call's timeout is not needed (every figure is read
// at once) and is ignored. The list is sorted by name.
func (a *Agent) metrics() []mesos.Metric {
	vals := map[string]float64{metricCPUsTotal: float64(runtime.NumCPU())}
	failed := func(what string, err error) {
		a.log.WithError(err).WithField("call", "GET_METRICS").Warnf("cannot read %s: left out of the answer", what)
	}
	if l1, l5, l15, err := loadAverages(); err != nil {
		failed("the load averages", err)
	} else {
		vals[metricLoad1], vals[metricLoad5], vals[metricLoad15] = l1, l5, l15
	}
	if total, free, err := hostMemory(); err != nil {
		failed("the host's memory", err)
	} else {
		vals[metricMemTotalBytes], vals[metricMemFreeBytes] = float64(total), float64(free)
	}
	if fs, err := fsFigures(a.sandboxRoot); err != nil {
		failed("the sandbox file system", err)
	} else {
		vals[metricFSAvailableBytes], vals[metricFSTotalBytes] = float64(fs.availableBytes), float64(fs.totalBytes)
		vals[metricFSInodesFree], vals[metricFSInodesTotal] = float64(fs.inodesFree), float64(fs.inodesTotal)
	}
	out := make([]mesos.Metric, 0, len(vals))
	for name, v := range vals {
		out = append(out, mesos.Metric{Name: name, Value: &v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	a.log.WithFields(logrus.Fields{"call": "GET_METRICS", "metrics": len(out)}).Debug("host figures read")
	return out
}

// fsStat is what statfs(2) tells of a file system.
type fsStat struct {
	availableBytes, totalBytes, inodesFree, inodesTotal uint64
}

// parseMeminfo reads MemTotal and MemFree, in bytes, from /proc/meminfo's
// format ("MemTotal:  24683748 kB").
func parseMeminfo(r io.Reader) (total, free uint64, err error) {
	want := map[string]*uint64{"MemTotal": &total, "MemFree": &free}
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		dst := want[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("meminfo: %s: want \"<n> kB\", got %q", key, strings.TrimSpace(rest))
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("meminfo: %s: %w", key, err)
		}
		*dst = v * 1024
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("meminfo: %w", err)
	}
	if found != len(want) {
		return 0, 0, fmt.Errorf("meminfo: MemTotal or MemFree missing")
	}
	return total, free, nil
}

// parseLoadavg reads the three load averages from /proc/loadavg's format
// ("7.64 3.64 2.11 12/298 12887").
func parseLoadavg(s string) (l1, l5, l15 float64, err error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, 0, fmt.Errorf("loadavg: want three averages, got %q", s)
	}
	var v [3]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("loadavg: %w", err)
		}
	}
	return v[0], v[1], v[2], nil
}
