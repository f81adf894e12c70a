package stack

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
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

// writeEnv writes an env file of the given lines, the keys fromVars
// requires included, and points Load at it.
func writeEnv(t *testing.T, lines ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "env")
	base := []string{"REPO_ROOT=/r", "KUBECONFIG=/r/.local/admin.kubeconfig", "KUBECTL=/cache/kubectl", "NODE_NAME=agent-0"}
	if err := os.WriteFile(path, []byte(strings.Join(append(base, lines...), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VK_TITUS_STACK_ENV", path)
}

func TestLoadMesosCredential(t *testing.T) {
	cred := filepath.Join(t.TempDir(), "vk-titus.cred")
	if err := os.WriteFile(cred, []byte(`{"principal": "vk-titus", "secret": "s3cret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	writeEnv(t, "MESOS_AUTH=1", "MESOS_CREDENTIALS="+cred)
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if !e.MesosAuth || e.MesosCredential == nil || e.MesosCredential.Principal != "vk-titus" {
		t.Fatalf("MesosAuth %v, MesosCredential %v", e.MesosAuth, e.MesosCredential)
	}

	var gotUser, gotPass string
	var gotOK bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, gotOK = r.BasicAuth()
	}))
	defer srv.Close()
	res, err := e.MesosClient(10*time.Second).Post(srv.URL+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_AGENT"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !gotOK || gotUser != "vk-titus" || gotPass != "s3cret" {
		t.Fatalf("MesosClient sent Basic %v %q:%q, want vk-titus's credential", gotOK, gotUser, gotPass)
	}

	writeEnv(t, "MESOS_AUTH=0")
	if e, err = Load(); err != nil || e.MesosAuth || e.MesosCredential != nil {
		t.Fatalf("without auth: %+v, %v", e, err)
	}
	if _, err := e.MesosClient(10 * time.Second).Get(srv.URL); err != nil || gotOK {
		t.Fatalf("without a credential the client sent Basic %v (err %v)", gotOK, err)
	}

	writeEnv(t, "MESOS_AUTH=1", "MESOS_CREDENTIALS="+filepath.Join(t.TempDir(), "missing"))
	if _, err := Load(); !errors.Is(err, mesosauth.ErrBadCredentials) {
		t.Fatalf("missing credential file: err = %v, want ErrBadCredentials", err)
	}
	writeEnv(t, "MESOS_AUTH=1")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "MESOS_CREDENTIALS") {
		t.Fatalf("MESOS_AUTH=1 without MESOS_CREDENTIALS: err = %v", err)
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
