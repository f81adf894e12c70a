package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

func TestStatsAndResourceMetrics(t *testing.T) {
	create(t, virtualPod("stats", "sleep 600"))
	waitPod(t, "stats", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	deadline := time.Now().Add(30 * time.Second)
	var found *statsv1alpha1.PodStats
	for found == nil && time.Now().Before(deadline) {
		raw := kubeletGet(t, "/stats/summary")
		var sum statsv1alpha1.Summary
		if err := json.Unmarshal([]byte(raw), &sum); err != nil {
			t.Fatalf("summary: %v: %s", err, raw)
		}
		for i, p := range sum.Pods {
			if p.PodRef.Name == "stats" && p.PodRef.Namespace == ns && p.Memory != nil && p.Memory.WorkingSetBytes != nil && *p.Memory.WorkingSetBytes > 0 {
				found = &sum.Pods[i]
			}
		}
		time.Sleep(time.Second)
	}
	if found == nil {
		t.Fatalf("stats summary never listed pod stats with memory")
	}
	if len(found.Containers) != 1 || found.Containers[0].Name != "main" {
		t.Errorf("containers: %+v", found.Containers)
	}
	res := kubeletGet(t, "/metrics/resource")
	if !strings.Contains(res, fmt.Sprintf(`container_memory_working_set_bytes{container="main",namespace="%s",pod="stats"}`, ns)) {
		t.Errorf("metrics/resource lacks the pod's container:\n%s", res)
	}
	kubectl(t, "delete", "pod", "-n", ns, "stats", "--wait=false")
}

// kubeletGet reads the node's kubelet API directly on loopback, with a
// client certificate (TestNodeProxyStatsSummaryAndPods reads it through the
// API server's nodes/proxy).
func kubeletGet(t *testing.T, path string) string {
	t.Helper()
	pki := env.Vars["PKI"]
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cli := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
	res, err := cli.Get(fmt.Sprintf("https://127.0.0.1:%d%s", kubeletPort(t), path))
	if err != nil {
		t.Fatalf("kubelet API %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("kubelet API %s: %d %s", path, res.StatusCode, b)
	}
	return string(b)
}

func scrape(t *testing.T) string {
	t.Helper()
	res, err := http.Get(env.VKMetrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, series+" "), "%g", &v)
			return v
		}
	}
	return -1
}

// The metrics move with the pods: the running gauge counts a running pod,
// and the transition counters count its start and its end. (Other tests'
// pods come and go meanwhile, so only monotonic counters are compared.)
func TestPrometheusMetricsMove(t *testing.T) {
	running := fmt.Sprintf(`vktitus_containers{node="%s",state="running"}`, env.NodeName)
	started := `vktitus_state_transitions_total{from="starting",to="running"}`
	killed := `vktitus_state_transitions_total{from="killing",to="killed"}`
	before := scrape(t)
	create(t, virtualPod("metrics", "sleep 600"))
	waitPod(t, "metrics", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	during := scrape(t)
	if metricValue(during, running) < 1 {
		t.Errorf("%s = %v with a pod running", running, metricValue(during, running))
	}
	if metricValue(during, started) < metricValue(before, started)+1 {
		t.Errorf("%s did not count the start: %v then %v", started, metricValue(before, started), metricValue(during, started))
	}
	for _, want := range []string{`vktitus_agent_calls_total{call="launch_container",outcome="ok"}`,
		"vktitus_agent_call_duration_seconds_bucket", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(during, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	kubectl(t, "delete", "pod", "-n", ns, "metrics", "--wait=true", "--timeout=60s")
	if after := scrape(t); metricValue(after, killed) < metricValue(during, killed)+1 {
		t.Errorf("%s did not count the deletion: %v then %v", killed, metricValue(during, killed), metricValue(after, killed))
	}
}

func TestEventsTellTheStory(t *testing.T) {
	create(t, virtualPod("story", "sleep 600"))
	waitPod(t, "story", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	kubectl(t, "delete", "pod", "-n", ns, "story", "--wait=true", "--timeout=60s")
	var reasons []string
	for _, e := range events(t, "story") {
		reasons = append(reasons, e.Reason)
	}
	order := []string{"Scheduled", "Created", "Started", "Killing"}
	i := 0
	for _, r := range reasons {
		if i < len(order) && r == order[i] {
			i++
		}
	}
	if i != len(order) {
		t.Errorf("events %v do not contain %v in order", reasons, order)
	}
}

// The kubelet API refuses anonymous callers (401) and callers without
// rights on the node (403), while the API server's logs path works.
func TestKubeletAPIIsSecured(t *testing.T) {
	create(t, virtualPod("secured", "echo secret-output; sleep 600"))
	waitPod(t, "secured", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	url := fmt.Sprintf("https://127.0.0.1:%d/containerLogs/%s/secured/main", kubeletPort(t), ns)
	cli := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := cli.Do(req)
		if err != nil {
			t.Fatalf("kubelet API: %v", err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", code)
	}
	ctx := context.Background()
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code := get(tok.Status.Token); code != http.StatusForbidden {
		t.Errorf("service account without rights: %d, want 403", code)
	}
	waitLogs(t, "secured", "secret-output")
	kubectl(t, "delete", "pod", "-n", ns, "secured", "--wait=false")
}
