package provider

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"

	sm "github.com/vk-titus/vk-titus/statemachine"
)

// `kubectl port-forward`.
//
// virtual-kubelet's kubelet API serves /portForward/{namespace}/{pod}: the
// API server upgrades kubectl's request to a SPDY (or WebSocket) connection,
// kubectl opens a data and an error stream per forwarded connection, and
// virtual-kubelet calls PortForward with the data stream, once per
// connection, each call on its own goroutine. What PortForward returns is
// written to the error stream, which kubectl prints ("error forwarding port
// ..."); the data stream is closed when it returns.
//
// The kubelet forwards to the port inside the pod's network namespace. The
// legacy agent runs containers on its host's network (as the reference
// agent does: plain host processes), so the pod's network namespace is the
// agent's host, at the address the pod status shows as its host and pod IP:
// the provider dials that address and the port, and copies bytes both ways.
// As with the kubelet, any port may be forwarded, declared in the pod's
// spec or not; the pod must be on this node with a container running (the
// kubelet's "sandbox is running").
//
// Each call holds one TCP connection, two copy goroutines and two copy
// buffers, and nothing outlives it but, on a hard close, a copy blocked on
// the stream's connection (virtual-kubelet's), which ends with it: no state
// is shared between calls, so streams run side by side without bound
// beyond the API server's and kubectl's own.

const (
	// portForwardDialTimeout bounds the connection to the container's
	// port: an open port on a reachable host answers at once, a closed one
	// refuses at once, so this is for a host that drops packets. kubectl
	// shows the error then rather than a connection that never says why.
	portForwardDialTimeout = 5 * time.Second
	// portForwardDrain is how long the other direction may go on once one
	// has ended (the local client closed its side, or the container's
	// server closed its side) before both are closed. containerd's
	// port-forward waits as long (socat's -t, which the kubelet once used,
	// half as long).
	portForwardDrain = time.Second
)

// PortForward copies one forwarded connection between virtual-kubelet's
// stream and the container's port on the agent's host. It returns once both
// directions have ended, or one has and the other did not follow within
// portForwardDrain, or ctx (or the provider's) ended; the stream and the
// connection are closed by then. Its error names the pod, the port and the
// agent's address.
func (p *Provider) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	if port < 1 || port > 65535 {
		return errdefs.InvalidInputf("port-forward to pod %s/%s: port %d is not in 1-65535", namespace, pod, port)
	}
	if err := p.forwardable(namespace, pod); err != nil {
		return err
	}
	// The request's context (virtual-kubelet passes one that never ends)
	// and the provider's: a node being stopped ends its forwards.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	addr := net.JoinHostPort(p.hostIP, strconv.Itoa(int(port)))
	d := net.Dialer{Timeout: portForwardDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s port %d: cannot connect to %s on the agent's host: %w",
			namespace, pod, port, addr, err)
	}
	if err := splice(ctx, conn, stream, portForwardDrain); err != nil {
		return fmt.Errorf("port-forward to pod %s/%s port %d (%s on the agent's host): %w", namespace, pod, port, addr, err)
	}
	return nil
}

// forwardable says why a pod cannot be forwarded to, if it cannot: it is not
// on this node, or none of its containers is running.
func (p *Provider) forwardable(namespace, pod string) error {
	rec := p.record(namespace, pod)
	if rec == nil {
		return errdefs.NotFoundf("port-forward: pod %s/%s is not on this node", namespace, pod)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var states []string
	for _, c := range rec.ctrs {
		// A container the agent has not answered for (Disconnected,
		// Reconciling) is shown as it last was: running, if it was, and
		// then its port may well answer.
		st := c.state
		if sm.InfoOf(st).View == sm.ViewLast && !sm.InfoOf(st).Terminal {
			st = c.shown
		}
		if sm.InfoOf(st).View == sm.ViewRunning {
			return nil
		}
		states = append(states, fmt.Sprintf("%s %s", c.name, c.state))
	}
	return errdefs.InvalidInputf("port-forward: pod %s/%s has no running container (%s)", namespace, pod, strings.Join(states, ", "))
}

// splice copies conn to stream and stream to conn. When one direction ends
// its end is passed on as a half-close (the stream's Close is one, as a
// SPDY stream's is; conn's CloseWrite), and the other gets drain to end too.
// Then conn is closed, and the stream too (reset, when it can be, so that a
// copy still reading it returns). The copies' errors are not the forward's:
// either side going away is how a connection ends. Only ctx ending is.
func splice(ctx context.Context, conn net.Conn, stream io.ReadWriteCloser, drain time.Duration) error {
	done := make(chan struct{}, 2)
	go func() { // the container's answers to kubectl
		_, _ = io.Copy(stream, conn)
		_ = stream.Close()
		done <- struct{}{}
	}()
	go func() { // kubectl's bytes to the container
		_, _ = io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = conn.Close()
		}
		done <- struct{}{}
	}()
	hard := func() {
		_ = conn.Close()
		_ = stream.Close()
		if r, ok := stream.(interface{ Reset() error }); ok {
			_ = r.Reset()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		hard()
		return ctx.Err()
	}
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-done:
		_ = conn.Close()
		return nil
	case <-t.C:
		hard()
		return nil
	case <-ctx.Done():
		hard()
		return ctx.Err()
	}
}
