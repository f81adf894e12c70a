package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The kustomize base applies cleanly against the real API server (server
// dry run: every object validated and admitted, nothing created).
func TestManifestsApply(t *testing.T) {
	kubectl(t, "apply", "-f", filepath.Join(env.Root, "manifests/base/namespace.yaml"))
	out := kubectl(t, "apply", "--dry-run=server", "-k", filepath.Join(env.Root, "manifests/base"))
	for _, want := range []string{"clusterrole.rbac.authorization.k8s.io/vk-titus", "deployment.apps/vk-titus", "configmap/vk-titus-provider",
		"deployment.apps/vk-titus-gateway", "service/vk-titus-gateway", "role.rbac.authorization.k8s.io/vk-titus-gateway"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %s:\n%s", want, out)
		}
	}
}

// The ServiceAccount the manifests run vk-titus as can do what the bridge
// needs and nothing it should not. (The local stack runs vk-titus with the
// same ClusterRole, so every other end-to-end test exercises it too.)
func TestRBACLeastPrivilege(t *testing.T) {
	as := "--as=system:serviceaccount:vk-titus-system:vk-titus"
	can := func(args ...string) bool {
		out, _ := env.Kubectl(ctxFor(t, 30*time.Second), append([]string{"auth", "can-i", as}, args...)...)
		return strings.TrimSpace(out) == "yes"
	}
	for _, a := range [][]string{
		{"create", "nodes"}, {"patch", "nodes", "--subresource=status"}, {"delete", "nodes"}, {"watch", "pods"},
		{"update", "pods", "--subresource=status"}, {"delete", "pods"}, {"get", "secrets"}, {"list", "configmaps"},
		{"create", "events"}, {"create", "tokenreviews.authentication.k8s.io"},
		{"create", "subjectaccessreviews.authorization.k8s.io"},
		{"update", "leases.coordination.k8s.io", "-n", "kube-node-lease"},
	} {
		if !can(a...) {
			t.Errorf("vk-titus cannot %v", a)
		}
	}
	for _, a := range [][]string{
		{"create", "pods"}, {"update", "secrets"}, {"delete", "configmaps"}, {"create", "clusterroles"},
		{"update", "leases.coordination.k8s.io", "-n", "default"}, {"create", "deployments.apps"},
		{"impersonate", "users"},
	} {
		if can(a...) {
			t.Errorf("vk-titus may %v, which it must not", a)
		}
	}
}

// The gateway manages Jobs, Deployments and their pods in vk-titus-jobs,
// and nothing elsewhere. (The stack applies this Role, so the gateway tests
// run under it.)
func TestGatewayRBACLeastPrivilege(t *testing.T) {
	as := "--as=system:serviceaccount:vk-titus-system:vk-titus-gateway"
	can := func(args ...string) bool {
		out, _ := env.Kubectl(ctxFor(t, 30*time.Second), append([]string{"auth", "can-i", as}, args...)...)
		return strings.TrimSpace(out) == "yes"
	}
	for _, a := range [][]string{
		{"create", "jobs.batch"}, {"update", "jobs.batch"}, {"watch", "jobs.batch"},
		{"create", "deployments.apps"}, {"update", "deployments.apps"}, {"list", "deployments.apps"},
		{"watch", "pods"}, {"patch", "pods"}, {"delete", "pods"},
	} {
		if !can(append(a, "-n", "vk-titus-jobs")...) {
			t.Errorf("the gateway cannot %v in vk-titus-jobs", a)
		}
	}
	for _, a := range [][]string{
		{"create", "pods", "-n", "vk-titus-jobs"}, {"get", "secrets", "-n", "vk-titus-jobs"},
		{"create", "jobs.batch", "-n", "default"}, {"delete", "pods", "-n", "default"},
		{"update", "pods", "--subresource=status", "-n", "vk-titus-jobs"}, {"delete", "nodes"},
	} {
		if can(a...) {
			t.Errorf("the gateway may %v, which it must not", a)
		}
	}
}
