package stack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLoadParsesEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env")
	content := strings.Join([]string{
		"# comment",
		"STACK_ROOT=/r/.local",
		"REPO_ROOT=/r",
		"KUBECONFIG=/r/.local/admin.kubeconfig",
		"KUBECTL=/cache/kubectl",
		"AGENTS=2",
		"LEGACY_AGENT=http://127.0.0.1:25051",
		"LEGACY_AGENT_0=http://127.0.0.1:25051",
		"LEGACY_AGENT_1=http://127.0.0.1:25052",
		"NODE_NAME=vk-titus-0",
		"ZOOKEEPER=127.0.0.1:22181",
		"KUBELET_PORT=10250",
		"VK_METRICS=http://127.0.0.1:10255",
		"",
	}, "\n")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VK_TITUS_STACK_ENV", path)
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.Root != "/r" || e.StackRoot != "/r/.local" || e.KubeletPort != 10250 || e.NodeName != "vk-titus-0" ||
		e.LegacyAgent != "http://127.0.0.1:25051" || len(e.LegacyAgents) != 2 || e.LegacyAgents[1] != "http://127.0.0.1:25052" ||
		e.Zookeeper != "127.0.0.1:22181" || e.VKMetrics != "http://127.0.0.1:10255" || e.KubectlBin != "/cache/kubectl" {
		t.Fatalf("unexpected env: %+v", e)
	}
	if got := e.LogPath("vk-titus"); got != "/r/.local/logs/vk-titus.log" {
		t.Fatalf("LogPath = %q", got)
	}

	t.Setenv("VK_TITUS_STACK_ENV", filepath.Join(dir, "missing"))
	if _, err := Load(); !errors.Is(err, ErrNotUp) {
		t.Fatalf("Load of a missing env: err = %v, want ErrNotUp", err)
	}
}

// TestLiveStack checks the running stack without disturbing it (other test
// packages use it at the same time); make test-e2e brings the stack up first.
func TestLiveStack(t *testing.T) {
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := e.Kubectl(ctx, "get", "--raw", "/readyz")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("kubectl get --raw /readyz = %q, %v", out, err)
	}
	if _, err := e.Kubectl(ctx, "get", "no-such-kind"); err == nil || !strings.Contains(err.Error(), "no-such-kind") {
		t.Fatalf("kubectl error should carry stderr, got %v", err)
	}
	c, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("default ServiceAccount: %v", err)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "zookeeper"} {
		if pid, err := e.Pid(name); err != nil || pid <= 0 {
			t.Fatalf("Pid(%s) = %d, %v", name, pid, err)
		}
	}
	if e.Vars["VK_TITUS"] != "0" {
		if _, err := c.CoreV1().Nodes().Get(ctx, e.NodeName, metav1.GetOptions{}); err != nil {
			t.Fatalf("node %s: %v", e.NodeName, err)
		}
	}
}
