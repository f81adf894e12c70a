package integration

import (
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// A readiness probe that starts failing flips Ready (and ContainersReady)
// to False, and back once it passes again; the container keeps running.
func TestReadinessProbeDrivesReady(t *testing.T) {
	port := freePort(t)
	// The container serves its sandbox over HTTP; /ready exists, then is
	// gone for a while, then is back.
	script := fmt.Sprintf(`touch ready; (sleep 6; rm ready; sleep 8; touch ready) & exec python3 -m http.server %d --bind 127.0.0.1`, port)
	create(t, httpServerPod("readiness", script, port, "/ready"))
	waitPod(t, "readiness", 60*time.Second, "Ready", podReady)
	p := waitPod(t, "readiness", 30*time.Second, "not Ready", func(p *corev1.Pod) bool { return !podReady(p) })
	if p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("not ready but should still run: %+v", p.Status)
	}
	waitEvent(t, "readiness", "Unhealthy", 10*time.Second)
	waitPod(t, "readiness", 30*time.Second, "Ready again", podReady)
	kubectl(t, "delete", "pod", "-n", ns, "readiness", "--wait=false")
}

// A failing liveness probe restarts the container with back-off.
func TestLivenessProbeRestarts(t *testing.T) {
	port := freePort(t) // nothing listens there
	pod := virtualPod("liveness", "sleep 600")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}},
		InitialDelaySeconds: 1, PeriodSeconds: 1, FailureThreshold: 2,
	}
	create(t, pod)
	waitPod(t, "liveness", 60*time.Second, "restarted", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	waitEvent(t, "liveness", "Unhealthy", 10*time.Second)
	waitEvent(t, "liveness", "Killing", 10*time.Second)
	kubectl(t, "delete", "pod", "-n", ns, "liveness", "--wait=false")
}
