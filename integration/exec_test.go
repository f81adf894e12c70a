package integration

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// kubectl exec through the API server and the node's kubelet API: output,
// the sandbox's environment, stdin, and the exit code.
func TestKubectlExec(t *testing.T) {
	pod := virtualPod("execme", "sleep 600")
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hello-from-env"}}
	create(t, pod)
	waitPod(t, "execme", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	out := kubectl(t, "exec", "-n", ns, "execme", "--", "sh", "-c", `echo "$GREETING in $MESOS_SANDBOX"`)
	if !strings.Contains(out, "hello-from-env in ") || !strings.Contains(out, "sandboxes") {
		t.Errorf("exec output: %q", out)
	}
	_, err := env.Kubectl(ctxFor(t, 30*time.Second), "exec", "-n", ns, "execme", "--", "sh", "-c", "exit 7")
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("exit code not passed back: %v", err)
	}
	cmd := []string{"--kubeconfig", env.Kubeconfig, "exec", "-i", "-n", ns, "execme", "--", "cat"}
	var stdout bytes.Buffer
	if err := runWithStdin(t, env.KubectlBin, cmd, "piped through\n", &stdout); err != nil || stdout.String() != "piped through\n" {
		t.Errorf("exec -i: %v %q", err, stdout.String())
	}
	kubectl(t, "delete", "pod", "-n", ns, "execme", "--wait=false")
}

// A terminal session (what `kubectl exec -it` asks for), driven with
// client-go's remotecommand as kubectl does: the command sees a pty.
func TestExecWithTTY(t *testing.T) {
	create(t, virtualPod("ttyme", "sleep 600"))
	waitPod(t, "ttyme", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	cfg, err := env.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	req := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("ttyme").SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: []string{"sh", "-c", "tty; stty size; exit 3"},
			Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(""), Stdout: &out, Tty: true,
		TerminalSizeQueue: &oneSize{rows: 33, cols: 101}})
	var exitErr utilexec.CodeExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 3 {
		t.Errorf("exit: %v", err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "33 101") {
		t.Errorf("tty session output: %q", out.String())
	}
	kubectl(t, "delete", "pod", "-n", ns, "ttyme", "--wait=false")
}

// oneSize reports one terminal size, then none (nil ends the queue); a
// queue that always answers would flood the stream with resizes.
type oneSize struct {
	rows, cols uint16
	sent       bool
}

func (f *oneSize) Next() *remotecommand.TerminalSize {
	if f.sent {
		return nil
	}
	f.sent = true
	return &remotecommand.TerminalSize{Width: f.cols, Height: f.rows}
}

// An exec readiness probe runs in the container.
func TestExecProbe(t *testing.T) {
	pod := virtualPod("execprobe", "sleep 4; touch ready; sleep 600")
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "ready"}}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	create(t, pod)
	p := waitPod(t, "execprobe", 60*time.Second, "Running", phaseIs(corev1.PodRunning))
	if podReady(p) {
		t.Errorf("ready before the probe could pass")
	}
	waitPod(t, "execprobe", 30*time.Second, "Ready", podReady)
	kubectl(t, "delete", "pod", "-n", ns, "execprobe", "--wait=false")
}
