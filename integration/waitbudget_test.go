package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The WAIT budget shrunk to 5 (--max-waits, for this start of the bridge
// only), and 20 pods on one agent: at least 15 runs are followed by the
// GET_CONTAINERS sweep instead of a long poll, and every exit still reaches
// its pod, with its own code.
func TestExitsBeyondWaitBudget(t *testing.T) {
	needFleet(t)
	const budget, n = 5, 20
	if err := env.Stop("vk-titus"); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the pods go while the budgeted
	// bridge still runs, then the bridge is started as `up` recorded it.
	t.Cleanup(func() {
		if err := env.Stop("vk-titus"); err != nil {
			t.Errorf("stopping the budgeted bridge: %v", err)
		}
		if err := env.Start("vk-titus"); err != nil {
			t.Errorf("restoring vk-titus: %v", err)
		}
		waitNodeQuiet(t, env.NodeName, 3*time.Minute)
	})
	cleanupGroup(t, "budget")
	if err := env.StartWithArgs("vk-titus", "--max-waits", fmt.Sprint(budget)); err != nil {
		t.Fatal(err)
	}

	// The runs end together once the test says so, so that all are followed
	// at once first.
	gate := filepath.Join(t.TempDir(), "go")
	for i := 0; i < n; i++ {
		create(t, faultPod(fmt.Sprintf("budget-%02d", i), "budget",
			fmt.Sprintf("while [ ! -e %s ]; do sleep 0.1; done; exit %d", gate, 10+i)))
	}
	for i := 0; i < n; i++ {
		waitPod(t, fmt.Sprintf("budget-%02d", i), 2*time.Minute, "Running", phaseIs(corev1.PodRunning))
	}
	series := fmt.Sprintf(`vktitus_exits_followed{by="sweep",node=%q}`, env.NodeName)
	if swept := metricValue(scrape(t), series); swept < n-budget {
		t.Fatalf("%s = %v with %d pods running and a budget of %d: the sweep does not follow the overflow", series, swept, n, budget)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("budget-%02d", i)
		p := waitPod(t, name, 2*time.Minute, "Failed", phaseIs(corev1.PodFailed))
		term := p.Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != int32(10+i) {
			t.Errorf("%s: terminated %+v, want exit code %d", name, term, 10+i)
		}
	}
}
