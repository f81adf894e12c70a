package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/translate"
)

// securityNamespace makes a namespace under the given PodSecurity level,
// deleted when the test ends.
func securityNamespace(t *testing.T, level string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s", ns, level)
	_, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"pod-security.kubernetes.io/enforce": level}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := client.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("no default service account in %s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitPodIn(t *testing.T, namespace, name string, d time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(d)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		if p, err := client.CoreV1().Pods(namespace).Get(context.Background(), name, metav1.GetOptions{}); err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s: not %s within %s; last status %+v", namespace, name, what, d, last)
	return nil
}

// The annotation is under policy: under baseline PodSecurity, a plain pod
// whose container-info asks for the host's /etc fails InvalidContainerInfo
// and never starts a process; the same host path asked for by the spec, in
// a privileged namespace, runs.
func TestAnnotationCannotEscapePodSecurity(t *testing.T) {
	ctx := context.Background()
	token := fmt.Sprintf("vkt-hostpath-%d", time.Now().UnixNano())
	ro := mesos.RO
	ci := &mesos.ContainerInfo{
		Type: mesos.ContainerInfo_MESOS.Enum(),
		Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(),
			Docker: &mesos.Image_Docker{Name: "busybox"}}},
		Volumes: []mesos.Volume{{Mode: &ro, ContainerPath: "hostetc",
			Source: &mesos.Volume_Source{Type: mesos.Volume_Source_HOST_PATH,
				HostPath: &mesos.Volume_Source_HostPath{Path: "/etc"}}}},
	}
	ann, err := translate.EncodeContainerInfo(ci)
	if err != nil {
		t.Fatal(err)
	}
	baseline := securityNamespace(t, "baseline")
	pod := virtualPod("escape", "cat hostetc/hostname; sleep 600; : "+token)
	pod.Namespace = baseline
	pod.Annotations = map[string]string{translate.AnnotationContainerInfo: ann}
	if _, err := client.CoreV1().Pods(baseline).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("baseline admits the plain pod: %v", err)
	}
	p := waitPodIn(t, baseline, "escape", time.Minute, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "InvalidContainerInfo" || !strings.Contains(p.Status.Message, "HOST_PATH") {
		t.Errorf("reason %q message %q: want InvalidContainerInfo naming HOST_PATH", p.Status.Reason, p.Status.Message)
	}
	if pids := processesWith(token); len(pids) > 0 {
		t.Errorf("the refused pod runs processes %v", pids)
	}

	privileged := securityNamespace(t, "privileged")
	allowed := virtualPod("hostpath", `cat "$MESOS_SANDBOX/hostetc/hostname"`)
	allowed.Namespace = privileged
	allowed.Spec.Volumes = []corev1.Volume{{Name: "etc", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}}}
	allowed.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "etc", MountPath: "/hostetc", ReadOnly: true}}
	if _, err := client.CoreV1().Pods(privileged).Create(ctx, allowed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodIn(t, privileged, "hostpath", time.Minute, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	// A hostPath pod is what baseline refuses at admission: the spec is
	// what PodSecurity sees.
	refused := allowed.DeepCopy()
	refused.Namespace = baseline
	if _, err := client.CoreV1().Pods(baseline).Create(ctx, refused, metav1.CreateOptions{}); err == nil {
		t.Errorf("baseline admitted a hostPath pod")
	}
}
