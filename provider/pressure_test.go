package provider

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
)

// healthyFigures: 8 GiB free of 16, 50 of 100 GB available, 900k of 1M
// inodes free.
func healthyFigures() map[string]float64 {
	return map[string]float64{
		agentclient.MetricMemFreeBytes: 8 << 30, agentclient.MetricMemTotalBytes: 16 << 30,
		agentclient.MetricFSAvailableBytes: 50e9, agentclient.MetricFSTotalBytes: 100e9,
		agentclient.MetricFSInodesFree: 900e3, agentclient.MetricFSInodesTotal: 1e6,
	}
}

func with(m map[string]float64, kv ...any) map[string]float64 {
	for i := 0; i < len(kv); i += 2 {
		if v, ok := kv[i+1].(float64); ok {
			m[kv[i].(string)] = v
		} else {
			delete(m, kv[i].(string))
		}
	}
	return m
}

func TestPressureConditionsFor(t *testing.T) {
	type want struct {
		status  corev1.ConditionStatus
		reason  string
		message []string // substrings
	}
	memFine := want{corev1.ConditionFalse, "KubeletHasSufficientMemory",
		[]string{"memory.available (system/mem_free_bytes) is not below the eviction threshold 100Mi"}}
	diskFine := want{corev1.ConditionFalse, "KubeletHasNoDiskPressure", []string{
		"nodefs.available (work_dir/fs_available_bytes) is not below the eviction threshold 10% of work_dir/fs_total_bytes",
		"nodefs.inodesFree (work_dir/fs_inodes_free) is not below the eviction threshold 5% of work_dir/fs_inodes_total"}}
	pidFine := want{corev1.ConditionFalse, "KubeletHasSufficientPID", []string{"no pid.available threshold: a Mesos agent reports no process figures"}}
	unknown := func(msg ...string) want { return want{corev1.ConditionUnknown, ReasonAgentMetricsUnavailable, msg} }
	def := DefaultThresholds()
	for _, c := range []struct {
		name           string
		th             Thresholds
		figs           figures
		mem, disk, pid want
	}{
		{"healthy", def, figures{values: healthyFigures()}, memFine, diskFine, pidFine},
		{"memory below 100Mi", def, figures{values: with(healthyFigures(), agentclient.MetricMemFreeBytes, float64(99<<20))},
			want{corev1.ConditionTrue, "KubeletHasInsufficientMemory", []string{"memory.available (system/mem_free_bytes) is below the eviction threshold 100Mi"}},
			diskFine, pidFine},
		{"memory at the threshold is no pressure", def, figures{values: with(healthyFigures(), agentclient.MetricMemFreeBytes, float64(100<<20))},
			memFine, diskFine, pidFine},
		{"nodefs below 10%", def, figures{values: with(healthyFigures(), agentclient.MetricFSAvailableBytes, 9.9e9)}, memFine,
			want{corev1.ConditionTrue, "KubeletHasDiskPressure", []string{"nodefs.available (work_dir/fs_available_bytes) is below the eviction threshold 10% of work_dir/fs_total_bytes"}},
			pidFine},
		{"inodes below 5%", def, figures{values: with(healthyFigures(), agentclient.MetricFSInodesFree, 49e3)}, memFine,
			want{corev1.ConditionTrue, "KubeletHasDiskPressure", []string{"nodefs.inodesFree (work_dir/fs_inodes_free) is below the eviction threshold 5%"}},
			pidFine},
		{"quantity thresholds", mustThresholds(t, "memory.available<10Gi,nodefs.inodesFree<1M"), figures{values: healthyFigures()},
			want{corev1.ConditionTrue, "KubeletHasInsufficientMemory", []string{"below the eviction threshold 10Gi"}},
			want{corev1.ConditionTrue, "KubeletHasDiskPressure", []string{"nodefs.inodesFree (work_dir/fs_inodes_free) is below the eviction threshold 1M"}},
			pidFine},
		{"GET_METRICS failed", def, figures{err: errors.New("GET_METRICS: rejected by agent: not implemented")},
			unknown("GET_METRICS: rejected by agent: not implemented"), unknown("GET_METRICS: rejected by agent: not implemented"), pidFine},
		// A real Mesos agent: system/* only.
		{"no file system figures", def, figures{values: with(healthyFigures(), agentclient.MetricFSAvailableBytes, nil,
			agentclient.MetricFSTotalBytes, nil, agentclient.MetricFSInodesFree, nil, agentclient.MetricFSInodesTotal, nil)},
			memFine, unknown("the agent reports no work_dir/fs_available_bytes (GET_METRICS), which nodefs.available needs",
				"the agent reports no work_dir/fs_inodes_free"), pidFine},
		{"no capacity for a percentage", def, figures{values: with(healthyFigures(), agentclient.MetricFSTotalBytes, nil)},
			memFine, unknown("the agent reports no work_dir/fs_total_bytes (GET_METRICS), which the nodefs.available threshold 10% needs"), pidFine},
		{"one signal under pressure, the other unknown", def, figures{values: with(healthyFigures(),
			agentclient.MetricFSAvailableBytes, nil, agentclient.MetricFSInodesFree, 10.0)},
			memFine, want{corev1.ConditionTrue, "KubeletHasDiskPressure", []string{"nodefs.inodesFree"}}, pidFine},
		{"no thresholds", Thresholds{}, figures{err: errors.New("not asked")},
			want{corev1.ConditionFalse, "KubeletHasSufficientMemory", []string{"no eviction threshold for memory.available"}},
			want{corev1.ConditionFalse, "KubeletHasNoDiskPressure", []string{"no eviction threshold for nodefs.available or nodefs.inodesFree"}},
			pidFine},
		{"memory only", mustThresholds(t, "memory.available<1Gi"), figures{values: map[string]float64{agentclient.MetricMemFreeBytes: 2 << 30}},
			want{corev1.ConditionFalse, "KubeletHasSufficientMemory", []string{"not below the eviction threshold 1Gi"}},
			want{corev1.ConditionFalse, "KubeletHasNoDiskPressure", []string{"no eviction threshold for nodefs.available or nodefs.inodesFree"}},
			pidFine},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := pressureConditionsFor(c.th, c.figs)
			if len(got) != 3 {
				t.Fatalf("%d conditions: %+v", len(got), got)
			}
			for i, w := range []struct {
				typ corev1.NodeConditionType
				want
			}{{corev1.NodeMemoryPressure, c.mem}, {corev1.NodeDiskPressure, c.disk}, {corev1.NodePIDPressure, c.pid}} {
				g := got[i]
				if g.Type != w.typ || g.Status != w.status || g.Reason != w.reason {
					t.Errorf("%s: got %s %s %q, want %s %s", w.typ, g.Status, g.Reason, g.Message, w.status, w.reason)
				}
				for _, m := range w.message {
					if !strings.Contains(g.Message, m) {
						t.Errorf("%s: message %q lacks %q", w.typ, g.Message, m)
					}
				}
			}
		})
	}
}

func mustThresholds(t *testing.T, s string) Thresholds {
	t.Helper()
	th, err := ParseThresholds(s)
	if err != nil {
		t.Fatal(err)
	}
	return th
}
