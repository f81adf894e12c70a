package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func BenchmarkEncodeContainerInfo(b *testing.B) {
	ci := userContainerInfo()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeContainerInfo(ci); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeContainerInfo(b *testing.B) {
	s, err := EncodeContainerInfo(userContainerInfo())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeContainerInfo(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPodLaunches translates the test pod (3 containers, 7 volumes),
// without and with the annotation.
func BenchmarkPodLaunches(b *testing.B) {
	r := newResolver()
	derived := testPod()
	_, ann, err := PodLaunches(derived, r)
	if err != nil {
		b.Fatal(err)
	}
	annotated := testPod()
	annotated.Annotations[AnnotationContainerInfo] = ann
	for _, bc := range []struct {
		name string
		pod  *corev1.Pod
	}{{"derived", derived}, {"annotated", annotated}} {
		pod := bc.pod
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := PodLaunches(pod, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
