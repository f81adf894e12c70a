package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/translate"
)

func TestNodeRegistersReady(t *testing.T) {
	n, err := client.CoreV1().Nodes().Get(context.Background(), env.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", env.NodeName, err)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("node not Ready: %+v", n.Status.Conditions)
	}
	for k, v := range map[string]string{"type": "virtual-kubelet", "kubernetes.io/role": "agent", "kubernetes.io/os": "linux",
		"legacy.vk-titus.io/zone": "zone-0"} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, n.Labels[k], v, n.Labels)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "virtual-kubelet.io/provider" || n.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("taints: %+v", n.Spec.Taints)
	}
	// agent-0 offers cpus:8 mem:16384 (scripts/stack.sh).
	if got := n.Status.Capacity.Cpu().String(); got != "8" {
		t.Errorf("cpu capacity %s, want 8", got)
	}
	if got := n.Status.Capacity.Memory().Value(); got != 16384<<20 {
		t.Errorf("memory capacity %d, want %d", got, int64(16384<<20))
	}
	// Each node of the process takes the lowest free port from
	// --listen-port up, in the order the nodes are served.
	if p := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port); p < env.KubeletPort || p > env.KubeletPort+len(env.LegacyAgents) {
		t.Errorf("kubelet port %d, want one of %d..%d", p, env.KubeletPort, env.KubeletPort+len(env.LegacyAgents))
	}
}

// kubeletPort is the kubelet API port of env.NodeName, as its Node says.
func kubeletPort(t *testing.T) int {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), env.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", env.NodeName, err)
	}
	return int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
}

func TestPodRunsAsHostProcess(t *testing.T) {
	token := fmt.Sprintf("vkt-e2e-run-%d", time.Now().UnixNano())
	create(t, virtualPod("runs", "echo hello from legacy; sleep 600; : "+token))
	p := waitPod(t, "runs", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	if p.Spec.NodeName != env.NodeName {
		t.Fatalf("scheduled on %q", p.Spec.NodeName)
	}
	if len(processesWith(token)) == 0 {
		t.Fatalf("no host process with %s", token)
	}
	if p.Status.PodIP == "" || p.Status.HostIP == "" {
		t.Errorf("pod IPs: %q %q", p.Status.PodIP, p.Status.HostIP)
	}
	// The bridge writes the legacy spec back as the annotation, and it decodes.
	p = waitPod(t, "runs", 30*time.Second, "annotated", func(p *corev1.Pod) bool {
		return p.Annotations[translate.AnnotationContainerInfo] != ""
	})
	ci, err := translate.DecodeContainerInfo(p.Annotations[translate.AnnotationContainerInfo])
	if err != nil {
		t.Fatalf("annotation does not decode: %v", err)
	}
	if ci.GetMesos().GetImage().GetDocker().GetName() != "busybox" {
		t.Errorf("annotation image: %+v", ci)
	}
	waitLogs(t, "runs", "hello from legacy")
	kubectl(t, "delete", "pod", "-n", ns, "runs", "--wait=false")
	waitGone(t, "runs", 60*time.Second)
	waitNoProcess(t, token, 10*time.Second)
}

func TestEnvFromConfigMapSecretDownwardAPI(t *testing.T) {
	ctx := context.Background()
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data: map[string]string{"color": "blue", "file.txt": "from-configmap-volume"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"},
		Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := virtualPod("env", `echo "COLOR=$COLOR PASSWORD=$PASSWORD POD=$POD_NAME NS=$POD_NS"; cat "$MESOS_SANDBOX/etc/cfg/file.txt"; echo`)
	c := &pod.Spec.Containers[0]
	c.Env = []corev1.EnvVar{
		{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}
	pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}}
	create(t, pod)
	waitPod(t, "env", 60*time.Second, "Succeeded", phaseIs(corev1.PodSucceeded))
	logs := kubectl(t, "logs", "-n", ns, "env")
	for _, want := range []string{"COLOR=blue", "PASSWORD=s3cret", "POD=env", "NS=" + ns, "from-configmap-volume"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// Secrets never ride in the annotation.
	p, _ := client.CoreV1().Pods(ns).Get(ctx, "env", metav1.GetOptions{})
	if a := p.Annotations[translate.AnnotationContainerInfo]; a != "" {
		ci, err := translate.DecodeContainerInfo(a)
		if err != nil || strings.Contains(ci.String(), "s3cret") {
			t.Errorf("annotation leaks or is bad: %v %v", err, ci)
		}
	}
}

func TestExitCodes(t *testing.T) {
	create(t, virtualPod("exit0", "exit 0"))
	create(t, virtualPod("exit3", "echo failing; exit 3"))
	waitPod(t, "exit0", 60*time.Second, "Succeeded", phaseIs(corev1.PodSucceeded))
	p := waitPod(t, "exit3", 60*time.Second, "Failed", phaseIs(corev1.PodFailed))
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.ExitCode != 3 || term.Reason != "Error" {
		t.Errorf("exit3 terminated state: %+v", p.Status.ContainerStatuses[0].State)
	}
	if !strings.Contains(kubectl(t, "logs", "-n", ns, "exit3"), "failing") {
		t.Errorf("logs of a failed pod are gone")
	}
	// --since filters whole runs: this one ended before the last second.
	if !strings.Contains(kubectl(t, "logs", "-n", ns, "exit3", "--since=1h"), "failing") {
		t.Errorf("--since=1h lost the run's lines")
	}
	time.Sleep(2 * time.Second)
	if out := kubectl(t, "logs", "-n", ns, "exit3", "--since=1s"); strings.TrimSpace(out) != "" {
		t.Errorf("--since=1s shows a run that ended before: %q", out)
	}
	out, err := env.Kubectl(ctxFor(t, 30*time.Second), "logs", "-n", ns, "exit3", "--timestamps")
	if err == nil || !strings.Contains(out+err.Error(), "no per-line times") {
		t.Errorf("--timestamps: want a clear refusal, got %q %v", out, err)
	}
}

func TestRestartPolicyAlwaysRestarts(t *testing.T) {
	pod := virtualPod("crashloop", "echo run; sleep 1; exit 1")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	create(t, pod)
	p := waitPod(t, "crashloop", 90*time.Second, "restarted twice", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 2
	})
	if p.Status.ContainerStatuses[0].LastTerminationState.Terminated == nil {
		t.Errorf("no lastState after restarts: %+v", p.Status.ContainerStatuses[0])
	}
	waitEvent(t, "crashloop", "BackOff", 10*time.Second)
	if !strings.Contains(kubectl(t, "logs", "-n", ns, "crashloop", "--previous"), "run") {
		t.Errorf("--previous shows nothing")
	}
}

func TestDeleteSendsSIGTERM(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "term")
	token := fmt.Sprintf("vkt-e2e-term-%d", time.Now().UnixNano())
	create(t, virtualPod("graceful", fmt.Sprintf(`trap 'echo TERM > %s; exit 0' TERM; while true; do sleep 0.2; done; : %s`, marker, token)))
	waitPod(t, "graceful", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	kubectl(t, "delete", "pod", "-n", ns, "graceful", "--wait=false")
	waitGone(t, "graceful", 60*time.Second)
	b, err := os.ReadFile(marker)
	if err != nil || strings.TrimSpace(string(b)) != "TERM" {
		t.Fatalf("the process did not see SIGTERM: %v %q", err, b)
	}
	waitNoProcess(t, token, 10*time.Second)
}

func TestGracePeriodEscalatesToSIGKILL(t *testing.T) {
	token := fmt.Sprintf("vkt-e2e-stubborn-%d", time.Now().UnixNano())
	pod := virtualPod("stubborn", `trap '' TERM; while true; do sleep 0.2; done; : `+token)
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(2))
	create(t, pod)
	waitPod(t, "stubborn", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	kubectl(t, "delete", "pod", "-n", ns, "stubborn", "--wait=false")
	waitGone(t, "stubborn", 60*time.Second)
	waitNoProcess(t, token, 10*time.Second)
}

func TestMalformedAnnotationFailsPod(t *testing.T) {
	pod := virtualPod("malformed", "sleep 600")
	pod.Annotations = map[string]string{translate.AnnotationContainerInfo: "!!!not base64!!!"}
	create(t, pod)
	p := waitPod(t, "malformed", 60*time.Second, "Failed", phaseIs(corev1.PodFailed))
	if p.Status.Reason != "InvalidContainerInfo" || !strings.Contains(p.Status.Message, "base64") {
		t.Errorf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	waitEvent(t, "malformed", "Failed", 10*time.Second)
	// The bridge is still healthy: another pod runs.
	create(t, virtualPod("after-malformed", "exit 0"))
	waitPod(t, "after-malformed", 60*time.Second, "Succeeded", phaseIs(corev1.PodSucceeded))
}

func TestUnknownImageFailsWithClearReason(t *testing.T) {
	pod := virtualPod("noimage", "")
	pod.Spec.Containers[0].Command = nil
	pod.Spec.Containers[0].Image = "registry.example/not-in-catalog:1"
	create(t, pod)
	p := waitPod(t, "noimage", 60*time.Second, "Failed", phaseIs(corev1.PodFailed))
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || !strings.Contains(term.Message, "not-in-catalog") {
		t.Errorf("terminated: %+v", p.Status.ContainerStatuses[0].State)
	}
	waitEvent(t, "noimage", "Failed", 10*time.Second)
}

func TestDeploymentThreeReplicas(t *testing.T) {
	tmpl := virtualPod("", "sleep 600")
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec},
		},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := client.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err == nil && got.Status.ReadyReplicas == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment not 3/3 ready: %+v", got.Status)
		}
		time.Sleep(time.Second)
	}
	if err := client.AppsV1().Deployments(ns).Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestJobCompletes(t *testing.T) {
	tmpl := virtualPod("", "echo working; exit 0")
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "batch", Namespace: ns},
		Spec: batchv1.JobSpec{
			Completions: ptr(int32(2)), Parallelism: ptr(int32(2)), BackoffLimit: ptr(int32(1)),
			Template: corev1.PodTemplateSpec{Spec: tmpl.Spec},
		},
	}
	if _, err := client.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := client.BatchV1().Jobs(ns).Get(context.Background(), "batch", metav1.GetOptions{})
		if err == nil && got.Status.Succeeded == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not complete: %+v", got.Status)
		}
		time.Sleep(time.Second)
	}
}

// A bridge crash must neither launch a running container again nor leave
// behind the container of a pod deleted while it was down.
func TestRestartReadoptsWithoutRelaunch(t *testing.T) {
	keep := fmt.Sprintf("vkt-e2e-keep-%d", time.Now().UnixNano())
	orphan := fmt.Sprintf("vkt-e2e-orphan-%d", time.Now().UnixNano())
	graceful := fmt.Sprintf("vkt-e2e-graceful-%d", time.Now().UnixNano())
	create(t, virtualPod("keep", "sleep 600; : "+keep))
	create(t, virtualPod("deleted-while-down", "sleep 600; : "+graceful))
	create(t, virtualPod("orphan", "sleep 600; : "+orphan))
	create(t, virtualPod("finishes", "sleep 3; exit 4"))
	waitPod(t, "keep", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	waitPod(t, "orphan", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	waitPod(t, "finishes", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	waitPod(t, "deleted-while-down", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	before := processesWith(keep)
	if len(before) != 1 {
		t.Fatalf("keep: processes %v", before)
	}

	if err := env.Kill("vk-titus"); err != nil {
		t.Fatal(err)
	}
	// While the bridge is down: one pod is force-deleted, one deleted the
	// ordinary way (it waits for its kubelet), one finishes. The forced one
	// stays until the bridge has removed its container (its finalizer), so
	// kubectl is not to wait for it.
	kubectl(t, "delete", "pod", "-n", ns, "orphan", "--grace-period=0", "--force", "--wait=false")
	kubectl(t, "delete", "pod", "-n", ns, "deleted-while-down", "--wait=false")
	time.Sleep(4 * time.Second)
	if err := env.Start("vk-titus"); err != nil {
		t.Fatal(err)
	}

	p := waitPod(t, "finishes", 60*time.Second, "Failed after restart", phaseIs(corev1.PodFailed))
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 4 {
		t.Errorf("finishes: %+v", p.Status.ContainerStatuses[0].State)
	}
	waitNoProcess(t, orphan, 30*time.Second)
	waitGone(t, "orphan", 60*time.Second)
	waitGone(t, "deleted-while-down", 60*time.Second)
	waitNoProcess(t, graceful, 10*time.Second)
	after := processesWith(keep)
	if len(after) != 1 || after[0] != before[0] {
		t.Errorf("keep was relaunched: before %v after %v", before, after)
	}
	p = waitPod(t, "keep", 10*time.Second, "Running", phaseIs(corev1.PodRunning))
	if rc := p.Status.ContainerStatuses[0].RestartCount; rc != 0 {
		t.Errorf("keep restartCount %d", rc)
	}
	n := 0
	for _, id := range agentContainers(t) {
		if strings.Contains(id, string(p.UID)) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("keep has %d containers on the agent", n)
	}
	// The re-adopted pod is still fully managed: deletion ends it.
	kubectl(t, "delete", "pod", "-n", ns, "keep", "--wait=false")
	waitGone(t, "keep", 60*time.Second)
	waitNoProcess(t, keep, 10*time.Second)
}
