package provider

import (
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSinceFiltersWholeRuns(t *testing.T) {
	ended := func(ago time.Duration) *corev1.ContainerStateTerminated {
		return &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(time.Now().Add(-ago))}
	}
	pod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name:                 "main",
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(time.Hour)},
	}}}}
	for name, c := range map[string]struct {
		opts api.ContainerLogOpts
		want bool
	}{
		"no since":                   {api.ContainerLogOpts{}, false},
		"running run is shown whole": {api.ContainerLogOpts{SinceSeconds: 1}, false},
		"previous ended before":      {api.ContainerLogOpts{Previous: true, SinceSeconds: 60}, true},
		"previous ended within":      {api.ContainerLogOpts{Previous: true, SinceTime: time.Now().Add(-2 * time.Hour)}, false},
		"unknown container":          {api.ContainerLogOpts{SinceSeconds: 1}, false},
	} {
		container := "main"
		if name == "unknown container" {
			container = "other"
		}
		if got := endedBefore(pod, container, c.opts); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}
