package integration

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestNodePressureFromAgentFigures: the reference agent reports the host's
// real figures (GET_METRICS: /proc/meminfo under Mesos's system/* keys,
// statfs of its sandbox directory under work_dir/*), and the node's
// pressure conditions follow them against the kubelet's default
// thresholds, which the stack's vk-titus runs with. Restarted with a
// threshold above the real free space (--eviction-hard), vk-titus reports
// DiskPressure.
func TestNodePressureFromAgentFigures(t *testing.T) {
	figs := agentMetrics(t)
	memTotal := hostMemTotal(t)
	if figs["system/mem_total_bytes"] != float64(memTotal) {
		t.Errorf("system/mem_total_bytes %v, /proc/meminfo MemTotal %d B", figs["system/mem_total_bytes"], memTotal)
	}
	if f := figs["system/mem_free_bytes"]; f <= 0 || f > float64(memTotal) {
		t.Errorf("system/mem_free_bytes %v of %d", f, memTotal)
	}
	var st syscall.Statfs_t
	sandboxes := filepath.Join(env.AgentWorkDir(0), "sandboxes")
	if err := syscall.Statfs(sandboxes, &st); err != nil {
		t.Fatal(err)
	}
	total, avail := float64(st.Blocks)*float64(st.Bsize), float64(st.Bavail)*float64(st.Bsize)
	if figs["work_dir/fs_total_bytes"] != total || figs["work_dir/fs_inodes_total"] != float64(st.Files) {
		t.Errorf("work_dir/fs_total_bytes %v, fs_inodes_total %v; statfs(%s) %v B, %d inodes",
			figs["work_dir/fs_total_bytes"], figs["work_dir/fs_inodes_total"], sandboxes, total, st.Files)
	}
	// Others write on the same disk meanwhile: the same figure within 5%.
	if a := figs["work_dir/fs_available_bytes"]; math.Abs(a-avail) > total/20 {
		t.Errorf("work_dir/fs_available_bytes %v, statfs says %v of %v", a, avail, total)
	}

	// The default thresholds: memory.available<100Mi, nodefs.available<10%,
	// nodefs.inodesFree<5%.
	memStatus, memReason := corev1.ConditionFalse, "KubeletHasSufficientMemory"
	if figs["system/mem_free_bytes"] < 100<<20 {
		memStatus, memReason = corev1.ConditionTrue, "KubeletHasInsufficientMemory"
	}
	diskStatus, diskReason := corev1.ConditionFalse, "KubeletHasNoDiskPressure"
	if figs["work_dir/fs_available_bytes"] < total/10 || figs["work_dir/fs_inodes_free"] < float64(st.Files)/20 {
		diskStatus, diskReason = corev1.ConditionTrue, "KubeletHasDiskPressure"
	}
	waitPressure(t, corev1.NodeMemoryPressure, memStatus, memReason, "memory.available (system/mem_free_bytes)", "eviction threshold 100Mi")
	waitPressure(t, corev1.NodeDiskPressure, diskStatus, diskReason, "nodefs.available (work_dir/fs_available_bytes)",
		"eviction threshold 10% of work_dir/fs_total_bytes", "nodefs.inodesFree (work_dir/fs_inodes_free)")
	waitPressure(t, corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "a Mesos agent reports no process figures")
	waitPressure(t, corev1.NodeReady, corev1.ConditionTrue, "KubeletReady")

	// Every byte of the file system as the threshold: whatever is free is
	// below it. The flag replaces the defaults, so memory has none.
	t.Cleanup(func() {
		if err := env.Kill("vk-titus"); err != nil {
			t.Errorf("restoring vk-titus: %v", err)
		}
		if err := env.Start("vk-titus"); err != nil {
			t.Errorf("restoring vk-titus: %v", err)
		}
		waitPressure(t, corev1.NodeDiskPressure, diskStatus, diskReason)
	})
	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	if err := env.StartWithArgs("vk-titus", fmt.Sprintf("--eviction-hard=nodefs.available<%d", int64(total))); err != nil {
		t.Fatal(err)
	}
	waitPressure(t, corev1.NodeDiskPressure, corev1.ConditionTrue, "KubeletHasDiskPressure",
		"nodefs.available (work_dir/fs_available_bytes) is below the eviction threshold")
	waitPressure(t, corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "no eviction threshold for memory.available")
	waitPressure(t, corev1.NodeReady, corev1.ConditionTrue, "KubeletReady")
}

// waitPressure waits (generously) until env.NodeName's condition typ has
// the status and reason, its message holding every one of msg.
func waitPressure(t *testing.T, typ corev1.NodeConditionType, status corev1.ConditionStatus, reason string, msg ...string) {
	t.Helper()
	var last corev1.NodeCondition
	waitNode(t, env.NodeName, 2*time.Minute, fmt.Sprintf("%s=%s (%s) %q", typ, status, reason, msg), func(n *corev1.Node, err error) bool {
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type != typ {
				continue
			}
			if c.Status != last.Status || c.Reason != last.Reason || c.Message != last.Message {
				t.Logf("%s: %s %s %q", typ, c.Status, c.Reason, c.Message)
				last = c
			}
			if c.Status != status || c.Reason != reason {
				return false
			}
			for _, m := range msg {
				if !strings.Contains(c.Message, m) {
					return false
				}
			}
			return true
		}
		return false
	})
}

// agentMetrics is agent-0's GET_METRICS answer, by key.
func agentMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	out := agentCall(t, `{"type":"GET_METRICS","get_metrics":{}}`)
	gm, _ := out["get_metrics"].(map[string]any)
	list, _ := gm["metrics"].([]any)
	figs := map[string]float64{}
	for _, m := range list {
		mm, _ := m.(map[string]any)
		name, _ := mm["name"].(string)
		if v, ok := mm["value"].(float64); ok {
			figs[name] = v
		}
	}
	for _, k := range []string{"system/mem_total_bytes", "system/mem_free_bytes", "work_dir/fs_available_bytes",
		"work_dir/fs_total_bytes", "work_dir/fs_inodes_free", "work_dir/fs_inodes_total"} {
		if _, ok := figs[k]; !ok {
			t.Fatalf("GET_METRICS lacks %s: %v", k, out)
		}
	}
	return figs
}

// hostMemTotal is /proc/meminfo's MemTotal in bytes.
func hostMemTotal(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb uint64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	t.Fatal("/proc/meminfo has no MemTotal")
	return 0
}
