package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// tailWindow bounds how much of a log a --tail request reads from the agent.
const tailWindow = 4 << 20

// GetContainerLogs reads the container's sandbox stdout and stderr through
// READ_FILE. The pod is looked up in the API cache, so logs of a finished pod
// stay readable after a bridge restart, as long as its sandbox exists.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	if opts.Timestamps {
		// Saying so beats inventing times: a Mesos sandbox's stdout/stderr are
		// plain files, with no time per line to show.
		return nil, errdefs.InvalidInput("--timestamps: the legacy agent's sandbox logs carry no per-line times")
	}
	pod, err := p.opts.Pods.Pods(namespace).Get(podName)
	if err != nil {
		return nil, errdefs.NotFoundf("pod %s/%s: %v", namespace, podName, err)
	}
	restarts, found := int32(0), false
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		found = found || c.Name == containerName
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if s.Name == containerName {
			restarts = s.RestartCount
		}
	}
	if !found {
		return nil, errdefs.NotFoundf("container %s is not in pod %s/%s", containerName, namespace, podName)
	}
	if rec := p.record(namespace, podName); rec != nil && rec.uid == pod.UID {
		rec.mu.Lock()
		for _, c := range rec.ctrs {
			if c.name == containerName {
				restarts = c.restarts
			}
		}
		rec.mu.Unlock()
	}
	if opts.Previous {
		if restarts == 0 {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", containerName, podName)
		}
		restarts--
	}
	id := runID(pod.UID, containerName, restarts)
	if endedBefore(pod, containerName, opts) {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if !opts.Follow || opts.Previous {
		b, err := p.readLogs(ctx, id, opts)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	pr, pw := io.Pipe()
	go p.follow(ctx, namespace, podName, containerName, id, opts, pw)
	return pr, nil
}

// endedBefore: the run asked for ended before --since/--since-time, so none
// of its lines can be newer. Lines carry no times, so a run that was still
// writing then is shown whole: --since filters by run, not by line.
func endedBefore(pod *corev1.Pod, container string, opts api.ContainerLogOpts) bool {
	since := opts.SinceTime
	if opts.SinceSeconds > 0 {
		since = time.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	if since.IsZero() {
		return false
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if s.Name != container {
			continue
		}
		t := s.State.Terminated
		if opts.Previous {
			t = s.LastTerminationState.Terminated
		}
		return t != nil && !t.FinishedAt.IsZero() && t.FinishedAt.Time.Before(since)
	}
	return false
}

func (p *Provider) readLogs(ctx context.Context, id string, opts api.ContainerLogOpts) ([]byte, error) {
	var out []byte
	for _, f := range []string{"stdout", "stderr"} {
		b, err := p.readWhole(ctx, id, f, opts.Tail > 0)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if opts.Tail > 0 {
		out = lastLines(out, opts.Tail)
	}
	if opts.LimitBytes > 0 && len(out) > opts.LimitBytes {
		out = out[:opts.LimitBytes]
	}
	return out, nil
}

func (p *Provider) readWhole(ctx context.Context, id, file string, tailOnly bool) ([]byte, error) {
	path := agentclient.SandboxPath(id, file)
	_, size, err := p.agent.ReadFile(ctx, path, 0, 1)
	if err != nil {
		if errors.Is(err, agentclient.ErrNotFound) {
			return nil, errdefs.NotFoundf("logs of %s: %v", id, err)
		}
		return nil, fmt.Errorf("logs of %s: %w", id, err)
	}
	var off uint64
	if tailOnly && size > tailWindow {
		off = size - tailWindow
	}
	return p.readFrom(ctx, path, off, size)
}

// readFrom reads path from off up to end; an agent answers READ_FILE in
// pages (Mesos: 16 pages of 4 KiB), so it takes as many calls as needed.
func (p *Provider) readFrom(ctx context.Context, path string, off, end uint64) ([]byte, error) {
	var out []byte
	for off < end {
		data, _, err := p.agent.ReadFile(ctx, path, off, end-off)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if len(data) == 0 {
			break
		}
		out = append(out, data...)
		off += uint64(len(data))
	}
	return out, nil
}

func lastLines(b []byte, n int) []byte {
	trimmed := bytes.TrimSuffix(b, []byte("\n"))
	idx := len(trimmed)
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(trimmed[:idx], '\n')
		if j < 0 {
			return b
		}
		idx = j
	}
	return b[idx+1:]
}

// follow streams new log bytes until the container stops running. It polls
// the two files once a second, for the life of one `kubectl logs -f` only.
func (p *Provider) follow(ctx context.Context, namespace, podName, container, id string, opts api.ContainerLogOpts, w *io.PipeWriter) {
	initial, err := p.readLogs(ctx, id, api.ContainerLogOpts{Tail: opts.Tail})
	if err != nil {
		w.CloseWithError(err)
		return
	}
	written := 0
	emit := func(b []byte) bool {
		if opts.LimitBytes > 0 && written+len(b) > opts.LimitBytes {
			b = b[:opts.LimitBytes-written]
		}
		n, err := w.Write(b)
		written += n
		return err == nil && (opts.LimitBytes == 0 || written < opts.LimitBytes)
	}
	if !emit(initial) {
		w.Close()
		return
	}
	offsets := map[string]uint64{}
	for _, f := range []string{"stdout", "stderr"} {
		_, size, err := p.agent.ReadFile(ctx, agentclient.SandboxPath(id, f), 0, 1)
		if err == nil {
			offsets[f] = size
		}
	}
	for {
		running := p.running(namespace, podName, container, id)
		for _, f := range []string{"stdout", "stderr"} {
			path := agentclient.SandboxPath(id, f)
			_, size, err := p.agent.ReadFile(ctx, path, 0, 1)
			if err != nil || size <= offsets[f] {
				continue
			}
			data, err := p.readFrom(ctx, path, offsets[f], size)
			if err != nil {
				continue
			}
			offsets[f] += uint64(len(data))
			if len(data) > 0 && !emit(data) {
				w.Close()
				return
			}
		}
		if !running {
			w.Close()
			return
		}
		select {
		case <-ctx.Done():
			w.CloseWithError(ctx.Err())
			return
		case <-time.After(time.Second):
		}
	}
}

// running reports whether the container's run id is still the live one.
func (p *Provider) running(namespace, podName, container, id string) bool {
	rec := p.record(namespace, podName)
	if rec == nil {
		return false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.ctrs {
		if c.name == container {
			return c.runID(rec.uid) == id && !sm.InfoOf(c.state).Terminal && c.state != sm.BackOff
		}
	}
	return false
}

// PortForward is not possible: containers share the agent's host network.
func (p *Provider) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	return errdefs.InvalidInputf("port-forward to %s/%s: not supported; pods use the agent's host network at %s", namespace, pod, p.hostIP)
}
