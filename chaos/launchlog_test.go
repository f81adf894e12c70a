package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const uid = "0b0e7f3c-3c5e-4c3e-9b1e-0123456789ab"

func writeLog(t *testing.T, lines ...string) string {
	dir := filepath.Join(t.TempDir(), "agent-0")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, LaunchLogName), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	return dir
}

func TestPodContainerKey(t *testing.T) {
	base := "vkt-" + uid + "-main"
	for id, want := range map[string]string{base: base, base + "-r3": base, "legacy-x-r1": "legacy-x-r1"} {
		if got := PodContainerKey(id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
	if RunIndex(base+"-r12") != 12 || RunIndex(base) != 0 {
		t.Error("RunIndex")
	}
}

func TestCheckLaunchLog(t *testing.T) {
	id := "vkt-" + uid + "-main"
	ok := writeLog(t,
		`{"t":"2025-01-01T00:00:00Z","event":"launch","id":"`+id+`","pid":100000001}`,
		`{"t":"2025-01-01T00:00:01Z","event":"exit","id":"`+id+`","pid":100000001,"code":1,"signal":0}`,
		`{"t":"2025-01-01T00:00:01Z","event":"launch","id":"`+id+`-r1","pid":100000002}`,
		`{"t":"2025-01-01T00:00:02Z","event":"exit","id":"`+id+`-r1","pid":100000002,"code":137,"signal":9}`,
		`{"t":"2025-01-01T00:00:0`, // torn
	)
	if v := CheckLaunchLog(ok); len(v) != 0 {
		t.Errorf("sequential runs: %v", v)
	}
	runs, _ := ReadLaunchLog(ok)
	if len(runs) != 2 || runs[1].ExitCode() != 137 || runs[0].ExitCode() != 1 {
		t.Errorf("runs %v", runs)
	}
	bad := writeLog(t,
		`{"t":"2025-01-01T00:00:00Z","event":"launch","id":"`+id+`","pid":100000001}`,
		`{"t":"2025-01-01T00:00:01Z","event":"launch","id":"`+id+`-r1","pid":100000002}`,
		`{"t":"2025-01-01T00:00:02Z","event":"exit","id":"`+id+`","pid":100000001,"code":1}`,
		`{"t":"2025-01-01T00:00:03Z","event":"exit","id":"`+id+`-r1","pid":100000002,"code":0}`,
	)
	if v := CheckLaunchLog(bad); len(v) != 1 || v[0].Kind != KindDuplicate {
		t.Errorf("overlapping runs: %v", v)
	}
	lost := writeLog(t, `{"t":"2025-01-01T00:00:00Z","event":"launch","id":"`+id+`","pid":100000001}`)
	if v := CheckLaunchLog(lost); len(v) != 1 || v[0].Kind != KindLostExit {
		t.Errorf("lost exit: %v", v)
	}
	if v := CheckLaunchLog(t.TempDir()); len(v) != 1 || v[0].Kind != KindCheck {
		t.Errorf("no log: %v", v)
	}
}

func TestScheduleReplayable(t *testing.T) {
	a, b := Schedule(42, 20*time.Minute, 3, 2), Schedule(42, 20*time.Minute, 3, 2)
	if len(a) < 10 || FormatSchedule(a) != FormatSchedule(b) {
		t.Fatalf("schedule %d faults, replay equal %v", len(a), FormatSchedule(a) == FormatSchedule(b))
	}
	for _, f := range a {
		if f.At+f.Down > 20*time.Minute {
			t.Errorf("fault past the end: %s", f)
		}
	}
}

func TestCheckExitCodesLostWithNode(t *testing.T) {
	run := Run{Agent: "agent-0", ID: "vkt-" + uid + "-main", Pid: 1, Exited: true, Code: 1}
	pod := func(podReason string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: uid},
			Status: corev1.PodStatus{Reason: podReason, ContainerStatuses: []corev1.ContainerStatus{{Name: "main",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}}}},
		}
	}
	if v := CheckExitCodes([]corev1.Pod{pod("NodeLost")}, []Run{run}); len(v) != 0 {
		t.Errorf("an unknown end in a pod lost with its node was judged: %v", v)
	}
	if v := CheckExitCodes([]corev1.Pod{pod("")}, []Run{run}); len(v) != 1 || v[0].Kind != KindExitCode {
		t.Errorf("an unknown end while the node stayed: %v", v)
	}
}
