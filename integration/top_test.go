package integration

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// kubectl top reads metrics.k8s.io, which metrics-server (started by the
// stack) serves from each node's /metrics/resource.
func TestKubectlTopPodAndNode(t *testing.T) {
	// A little CPU all along, so that the pod's and the node's cumulative
	// CPU time is never zero (metrics-server drops a point without it).
	create(t, virtualPod("top", `while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.5; done`))
	waitPod(t, "top", 60*time.Second, "Running", phaseIs(corev1.PodRunning))

	// NAME CPU(cores) MEMORY(bytes), e.g. "top 3m 1Mi".
	podRow := regexp.MustCompile(`^top\s+(\d+)m\s+(\d+)Mi$`)
	m := waitTop(t, podRow, "pod", "top", "-n", ns)
	if mem, _ := strconv.Atoi(m[2]); mem <= 0 {
		t.Errorf("kubectl top pod: memory %sMi, want more than 0", m[2])
	}

	// NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%).
	nodeRow := regexp.MustCompile(`^` + regexp.QuoteMeta(env.NodeName) + `\s+(\d+)m\s+\d+%\s+(\d+)Mi\s+\d+%$`)
	m = waitTop(t, nodeRow, "node", env.NodeName)
	if mem, _ := strconv.Atoi(m[2]); mem <= 0 {
		t.Errorf("kubectl top node: memory %sMi, want more than 0", m[2])
	}
	kubectl(t, "delete", "pod", "-n", ns, "top", "--wait=false")
}

// waitTop runs `kubectl top ARGS --no-headers` until its one line matches
// row, and returns the match. metrics-server has a pod's or node's figures
// only after two scrapes (10 s apart on the stack) that saw it.
func waitTop(t *testing.T, row *regexp.Regexp, args ...string) []string {
	t.Helper()
	args = append(append([]string{"top"}, args...), "--no-headers")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := env.Kubectl(ctxFor(t, 30*time.Second), args...)
		if err == nil {
			if m := row.FindStringSubmatch(strings.TrimSpace(out)); m != nil {
				t.Logf("kubectl %s: %s", strings.Join(args, " "), m[0])
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl %v: no row matching %s within 2m; last: %v %q", args, row, err, out)
		}
		time.Sleep(2 * time.Second)
	}
}
