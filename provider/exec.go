package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// runningID is the agent container id of a container's live run, or a
// kubectl-facing error saying why there is none.
func (p *Provider) runningID(namespace, podName, container string) (string, error) {
	rec := p.record(namespace, podName)
	if rec == nil {
		return "", errdefs.NotFoundf("pod %s/%s is not running on this node", namespace, podName)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.ctrs {
		if c.name != container {
			continue
		}
		if c.state != sm.Running {
			return "", errdefs.InvalidInputf("container %s is not running (%s)", container, c.state)
		}
		return c.runID(rec.uid), nil
	}
	return "", errdefs.NotFoundf("container %s is not in pod %s/%s", container, namespace, podName)
}

// execIO adapts virtual-kubelet's stream to the agent client's: resize
// events are forwarded until the call returns.
func execIO(ctx context.Context, attach api.AttachIO) agentclient.ExecIO {
	io := agentclient.ExecIO{Stdin: attach.Stdin(), TTY: attach.TTY()}
	if w := attach.Stdout(); w != nil {
		io.Stdout = w
	}
	if w := attach.Stderr(); w != nil {
		io.Stderr = w
	}
	if src := attach.Resize(); src != nil {
		dst := make(chan agentclient.TermSize, 1)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case s := <-src:
					select {
					case dst <- agentclient.TermSize{Width: s.Width, Height: s.Height}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
		io.Resize = dst
	}
	return io
}

func agentError(what string, err error) error {
	switch {
	case errors.Is(err, agentclient.ErrNotFound):
		return errdefs.NotFoundf("%s: %v", what, err)
	case errors.Is(err, agentclient.ErrRejected), errors.Is(err, agentclient.ErrUnsupported):
		return errdefs.InvalidInputf("%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// RunInContainer is `kubectl exec`: a nested session in the container's
// sandbox and environment, through LAUNCH_NESTED_CONTAINER_SESSION. A
// non-zero exit code reaches kubectl as such.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	id, err := p.runningID(namespace, podName, containerName)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	code, err := p.agent.Exec(ctx, id, cmd, execIO(ctx, attach))
	if err != nil {
		return agentError(fmt.Sprintf("exec in %s/%s/%s", namespace, podName, containerName), err)
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// AttachToContainer is `kubectl attach`: the container's output as it comes.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, podName, containerName string, attach api.AttachIO) error {
	id, err := p.runningID(namespace, podName, containerName)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	io := execIO(ctx, attach)
	io.Stdin = nil // standalone containers have no stdin to attach to
	if err := p.agent.Attach(ctx, id, io); err != nil && ctx.Err() == nil {
		return agentError(fmt.Sprintf("attach to %s/%s/%s", namespace, podName, containerName), err)
	}
	return nil
}

// execProbe runs an exec probe as the kubelet does: exit 0 is success.
func (p *Provider) execProbe(ctx context.Context, namespace, podName, container string, cmd []string) error {
	id, err := p.runningID(namespace, podName, container)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	code, err := p.agent.Exec(ctx, id, cmd, agentclient.ExecIO{Stdout: &out, Stderr: &out})
	if err != nil {
		return fmt.Errorf("exec probe %q: %w", strings.Join(cmd, " "), err)
	}
	if code != 0 {
		return fmt.Errorf("exec probe %q exited %d: %s", strings.Join(cmd, " "), code, strings.TrimSpace(out.String()))
	}
	return nil
}
