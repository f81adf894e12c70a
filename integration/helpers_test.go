package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/integration/stack"
)

// The suite runs against the stack `make up` started (make test-e2e does
// both); nothing here starts its own control plane.
var (
	env    *stack.Env
	client *kubernetes.Clientset
	ns     string
)

func TestMain(m *testing.M) {
	var err error
	env, err = stack.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	client, err = env.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	ns = fmt.Sprintf("e2e-%d", time.Now().Unix())
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "integration: namespace:", err)
		os.Exit(1)
	}
	// ServiceAccount admission refuses pods until the namespace's default
	// ServiceAccount exists.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "integration: no default service account in", ns)
			os.Exit(1)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code := m.Run()
	_ = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	os.Exit(code)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// virtualPod is a pod the scheduler may place on the virtual node: it
// tolerates the provider taint and selects the node.
func virtualPod(name string, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr(int64(5)),
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": env.NodeName, "type": "virtual-kubelet"},
			Tolerations:                   []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "main", Image: "busybox", Command: []string{"sh", "-c", script},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// httpServerPod runs script, which ends serving HTTP on port with python3
// (the catalog's python image), Ready while path answers (probed every
// second).
func httpServerPod(name, script string, port int, path string) *corev1.Pod {
	pod := virtualPod(name, script)
	pod.Spec.Containers[0].Image = "python"
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(port))}},
		PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1,
	}
	return pod
}

func create(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	return out
}

// waitPod polls the API until cond holds (the test observes from outside,
// as a user would); it fails with the pod's last status otherwise.
func waitPod(t *testing.T, name string, d time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(d)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		} else if !apierrors.IsNotFound(err) {
			t.Logf("get pod %s: %v", name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("pod %s: not %s within %s; last seen:\n%s", name, what, d, b)
	return nil
}

func phaseIs(ph corev1.PodPhase) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Status.Phase == ph }
}

func waitGone(t *testing.T, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pod %s still exists after %s", name, d)
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(ctxFor(t, 60*time.Second), args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// processesWith lists host pids whose command line contains token: the
// reference agent runs containers as plain host processes.
func processesWith(token string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(token)) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(d), "%d", &pid)
		if pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitNoProcess(t *testing.T, token string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if len(processesWith(token)) == 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("processes with %q still running after %s: %v", token, d, processesWith(token))
}

// agentCall posts a JSON operator-API call to the legacy agent, as an
// operator's curl would, with the stack's credential.
func agentCall(t *testing.T, body string) map[string]any {
	t.Helper()
	res, err := env.MesosClient(30*time.Second).Post(env.LegacyAgent+"/api/v1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("agent call: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("agent call %s: %d %s", body, res.StatusCode, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("agent answer: %v: %s", err, b)
	}
	return out
}

// agentContainers lists the live container ids on the agent.
func agentContainers(t *testing.T) []string {
	out := agentCall(t, `{"type":"GET_CONTAINERS","get_containers":{"show_standalone":true}}`)
	gc, _ := out["get_containers"].(map[string]any)
	list, _ := gc["containers"].([]any)
	var ids []string
	for _, c := range list {
		m, _ := c.(map[string]any)
		cid, _ := m["container_id"].(map[string]any)
		if v, ok := cid["value"].(string); ok {
			ids = append(ids, v)
		}
	}
	return ids
}

func events(t *testing.T, pod string) []corev1.Event {
	t.Helper()
	list, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	return list.Items
}

func waitEvent(t *testing.T, pod, reason string, d time.Duration) corev1.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, e := range events(t, pod) {
			if e.Reason == reason {
				return e
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("no %s event on pod %s within %s: %+v", reason, pod, d, events(t, pod))
	return corev1.Event{}
}

// waitLogs waits until `kubectl logs` (through the API server and the
// node's kubelet API) shows want.
func waitLogs(t *testing.T, pod, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := kubectl(t, "logs", "-n", ns, pod)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl logs %s never showed %q; last:\n%s", pod, want, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func runWithStdin(t *testing.T, bin string, args []string, stdin string, stdout *bytes.Buffer) error {
	t.Helper()
	cmd := exec.CommandContext(ctxFor(t, 30*time.Second), bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, stderr.String())
	}
	return nil
}
