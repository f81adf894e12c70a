package vknode

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStatusOnlyAnnotations(t *testing.T) {
	keys := map[string]bool{"state": true, "info": false}
	pod := func(ann map[string]string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
		if deleting {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		old, new map[string]string
		deleting bool
		want     bool
	}{
		{"state and info added", map[string]string{"u": "1"}, map[string]string{"u": "1", "state": "running", "info": "x"}, false, true},
		{"state changed", map[string]string{"state": "accepted", "info": "x"}, map[string]string{"state": "running", "info": "x"}, false, true},
		{"info changed", map[string]string{"info": "x"}, map[string]string{"info": "y"}, false, false},
		{"user annotation changed too", map[string]string{"u": "1"}, map[string]string{"u": "2", "state": "running"}, false, false},
		{"key removed", map[string]string{"u": "1", "state": "running"}, map[string]string{"state": "running"}, false, false},
		{"nothing changed", map[string]string{"state": "running"}, map[string]string{"state": "running"}, false, false},
		{"being deleted", nil, map[string]string{"state": "killed"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged, ok := statusOnlyAnnotations(pod(tc.old, tc.deleting), pod(tc.new, tc.deleting), keys)
			if ok != tc.want {
				t.Fatalf("got %v, want %v", ok, tc.want)
			}
			if ok && len(merged) != len(tc.new) {
				t.Fatalf("merged %v, want %v", merged, tc.new)
			}
			for k, v := range tc.new {
				if ok && merged[k] != v {
					t.Fatalf("merged %v, want %v", merged, tc.new)
				}
			}
		})
	}
}
