package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// portForward starts `kubectl port-forward pod/NAME LOCAL:REMOTE` and waits
// until kubectl listens. Its stdout and stderr are returned for the test to
// read; the process is stopped at the test's end.
func portForward(t *testing.T, pod string, local, remote int) (stdout, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, env.KubectlBin, "--kubeconfig", env.Kubeconfig, "port-forward", "-n", ns,
		"--address", "127.0.0.1", "pod/"+pod, fmt.Sprintf("%d:%d", local, remote))
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	want := fmt.Sprintf("Forwarding from 127.0.0.1:%d -> %d", local, remote)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), want) {
		select {
		case <-exited:
			t.Fatalf("kubectl port-forward exited before listening:\nstdout: %s\nstderr: %s", stdout, stderr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl port-forward not listening after 30s:\nstdout: %s\nstderr: %s", stdout, stderr)
		}
	}
	return stdout, stderr
}

// kubectl port-forward, through the API server and the node's kubelet API,
// to a port of a container that the agent runs on its host network: an HTTP
// server in the pod answers two requests at once, each on its own
// connection (its own stream); a port nothing listens on gives kubectl an
// error that says so.
func TestKubectlPortForward(t *testing.T) {
	port := freePort(t)
	script := fmt.Sprintf(`echo served-through-the-forward > page.txt; exec python3 -m http.server %d --bind 127.0.0.1`, port)
	create(t, httpServerPod("forwardme", script, port, "/page.txt"))
	t.Cleanup(func() {
		kubectl(t, "delete", "pod", "-n", ns, "forwardme", "--wait=false")
		waitGone(t, "forwardme", 60*time.Second)
	})
	waitPod(t, "forwardme", 60*time.Second, "Ready", podReady)

	local := freePort(t)
	_, stderr := portForward(t, "forwardme", local, port)
	// Two requests at once, each on a connection of its own.
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/page.txt", local))
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "served-through-the-forward" {
				errs[i] = fmt.Errorf("%d %q", res.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d through the forward: %v\nkubectl stderr: %s", i, err, stderr)
		}
	}

	// A port nothing listens on: the connection through kubectl ends, and
	// kubectl prints why, naming the pod, the port and the agent's host.
	closed := freePort(t)
	local2 := freePort(t)
	_, stderr2 := portForward(t, "forwardme", local2, closed)
	if res, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", local2)); err == nil {
		res.Body.Close()
		t.Errorf("a request to closed port %d through the forward got an answer: %s", closed, res.Status)
	}
	deadline := time.Now().Add(15 * time.Second)
	wants := []string{fmt.Sprintf("port %d", closed), "forwardme", fmt.Sprintf("127.0.0.1:%d", closed), "connection refused"}
	for {
		missing := ""
		for _, w := range wants {
			if !strings.Contains(stderr2.String(), w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl's stderr does not say %q about closed port %d:\n%s", missing, closed, stderr2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("kubectl on the closed port: %s", strings.TrimSpace(stderr2.String()))
}
