package agent

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
)

func TestParseMeminfo(t *testing.T) {
	total, free, err := parseMeminfo(strings.NewReader("MemTotal:       24683748 kB\nMemFree:        18675404 kB\nMemAvailable:   22871220 kB\n"))
	if err != nil || total != 24683748*1024 || free != 18675404*1024 {
		t.Fatalf("got %d %d %v", total, free, err)
	}
	for _, bad := range []string{
		"MemTotal: 1 kB\n",                  // MemFree missing
		"MemTotal: 1 kB\nMemFree: 1 MB\n",   // not kB
		"MemTotal: 1 kB\nMemFree: x kB\n",   // not a number
		"MemTotal: 1 kB\nMemFree: -1 kB\n",  // negative
		"MemTotal: 1\nMemFree: 1 kB\n",      // no unit
		"MemTotal 1 kB\nMemFree: 1 kB\n",    // no colon: MemTotal missing
		"",                                  // empty
		"MemTotal: 1 kB 2\nMemFree: 1 kB\n", // extra field
	} {
		if _, _, err := parseMeminfo(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseLoadavg(t *testing.T) {
	l1, l5, l15, err := parseLoadavg("7.64 3.64 2.11 12/298 12887\n")
	if err != nil || l1 != 7.64 || l5 != 3.64 || l15 != 2.11 {
		t.Fatalf("got %v %v %v %v", l1, l5, l15, err)
	}
	for _, bad := range []string{"", "1 2", "1 x 3 4/5 6"} {
		if _, _, _, err := parseLoadavg(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestGetMetricsReportsHostFigures: GET_METRICS answers the host's real
// figures under Mesos's system/* keys and the sandbox file system's under
// work_dir/*, in both codecs.
func TestGetMetricsReportsHostFigures(t *testing.T) {
	for _, codec := range []string{"protobuf", "json"} {
		t.Run(codec, func(t *testing.T) {
			c := codecs.ByMediaType[codecs.MediaTypeProtobuf]
			if codec == "json" {
				c = codecs.ByMediaType[codecs.MediaTypeJSON]
			}
			h := newHarness(t, &c)
			got := map[string]float64{}
			for _, m := range h.mustGet(calls.GetMetrics(nil)).GetGetMetrics().GetMetrics() {
				if m.Value == nil {
					t.Fatalf("%s has no value", m.Name)
				}
				got[m.Name] = *m.Value
			}
			for _, k := range []string{metricCPUsTotal, metricLoad1, metricLoad5, metricLoad15, metricMemTotalBytes,
				metricMemFreeBytes, metricFSAvailableBytes, metricFSTotalBytes, metricFSInodesFree, metricFSInodesTotal} {
				if _, ok := got[k]; !ok {
					t.Errorf("%s missing from %v", k, got)
				}
			}
			mi, err := os.Open("/proc/meminfo")
			if err != nil {
				t.Fatal(err)
			}
			defer mi.Close()
			total, _, err := parseMeminfo(mi)
			if err != nil {
				t.Fatal(err)
			}
			if got[metricMemTotalBytes] != float64(total) || got[metricMemFreeBytes] <= 0 || got[metricMemFreeBytes] > float64(total) {
				t.Errorf("memory: total %v free %v, /proc/meminfo MemTotal %d B", got[metricMemTotalBytes], got[metricMemFreeBytes], total)
			}
			var st syscall.Statfs_t
			if err := syscall.Statfs(h.a.sandboxRoot, &st); err != nil {
				t.Fatal(err)
			}
			size := float64(st.Blocks) * float64(st.Bsize)
			if got[metricFSTotalBytes] != size || got[metricFSInodesTotal] != float64(st.Files) {
				t.Errorf("file system: total %v B %v inodes, statfs %v B %d inodes", got[metricFSTotalBytes], got[metricFSInodesTotal], size, st.Files)
			}
			if a := got[metricFSAvailableBytes]; a <= 0 || a > size {
				t.Errorf("file system: %v B available of %v", a, size)
			}
			if f := got[metricFSInodesFree]; f > float64(st.Files) {
				t.Errorf("file system: %v inodes free of %d", f, st.Files)
			}
		})
	}
}
