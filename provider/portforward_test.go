package provider

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/internal/testlog"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// These tests stand a local TCP listener in for the agent's host (the
// provider's host address is 127.0.0.1, as on the local stack) and a pair
// of pipes in for virtual-kubelet's data stream, with a SPDY stream's
// semantics: Close ends the writing side only, Reset both.

// fakeStream is the data stream as PortForward sees it; the test plays
// kubectl on the other side: it writes to toPod, closes toPod to end its
// side, and reads fromPod.
type fakeStream struct {
	in      *io.PipeReader
	toPod   *io.PipeWriter
	out     *io.PipeWriter
	fromPod *io.PipeReader
	closes  atomic.Int32
	resets  atomic.Int32
}

var errStreamReset = errors.New("stream reset")

func newFakeStream() *fakeStream {
	s := &fakeStream{}
	s.in, s.toPod = io.Pipe()
	s.fromPod, s.out = io.Pipe()
	return s
}

func (s *fakeStream) Read(b []byte) (int, error)  { return s.in.Read(b) }
func (s *fakeStream) Write(b []byte) (int, error) { return s.out.Write(b) }

// Close half-closes: kubectl reads EOF, and may still write.
func (s *fakeStream) Close() error {
	s.closes.Add(1)
	return s.out.Close()
}

func (s *fakeStream) Reset() error {
	s.resets.Add(1)
	s.out.CloseWithError(errStreamReset)
	s.in.CloseWithError(errStreamReset)
	return nil
}

// fakeHost listens on 127.0.0.1 and serves each connection with serve.
func fakeHost(t *testing.T, serve func(net.Conn)) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// forwardProvider is a provider that knows pod ns/web, its one container
// in state.
func forwardProvider(t *testing.T, ctx context.Context, state sm.State) *Provider {
	p := &Provider{hostIP: "127.0.0.1", ctx: ctx, log: testlog.New().WithField("test", t.Name()),
		pods: map[types.UID]*podRecord{}, byName: map[string]*podRecord{}}
	rec := newPodRecord(testPod("web", "uid-web", "sleep 600"))
	rec.ctrs[0].state = state
	p.pods[rec.uid], p.byName[rec.key] = rec, rec
	return p
}

// forward runs PortForward on its own goroutine, as virtual-kubelet does.
func forward(p *Provider, ctx context.Context, port int32, s *fakeStream) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- p.PortForward(ctx, "ns", "web", port, s) }()
	return errc
}

func within(t *testing.T, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("PortForward still running after %s", d)
		return nil
	}
}

// Bytes go both ways, unchanged, in volume; kubectl ending its side is
// passed on to the container's server (which answers everything and then
// ends its own), and the forward then ends cleanly. The pod declares no
// port: as with the kubelet, any port may be forwarded.
func TestPortForwardCopiesBothWays(t *testing.T) {
	serverSawEOF := make(chan struct{})
	port := fakeHost(t, func(c net.Conn) {
		_, _ = io.Copy(c, c) // echo until kubectl's side ends
		close(serverSawEOF)
	})
	p := forwardProvider(t, context.Background(), sm.Running)
	s := newFakeStream()
	errc := forward(p, context.Background(), port, s)

	payload := make([]byte, 4<<20)
	for i := range payload {
		payload[i] = byte(rand.IntN(256))
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s.fromPod)
		got <- b
	}()
	if _, err := s.toPod.Write(payload); err != nil {
		t.Fatal(err)
	}
	s.toPod.Close()
	select {
	case <-serverSawEOF:
	case <-time.After(5 * time.Second):
		t.Fatal("kubectl's end of stream never reached the container's server")
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Fatalf("echoed %d bytes, want the %d sent, unchanged", len(b), len(payload))
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	if s.closes.Load() == 0 {
		t.Error("stream never closed")
	}
	if s.resets.Load() != 0 {
		t.Error("a forward whose sides both ended was reset")
	}
}

// kubectl ends its side at once (a client that sends its request and
// half-closes); the container's answer, written afterwards, still reaches it.
func TestPortForwardAnswerAfterClientEnds(t *testing.T) {
	port := fakeHost(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintf(c, "answer to %q", req)
	})
	p := forwardProvider(t, context.Background(), sm.Running)
	s := newFakeStream()
	errc := forward(p, context.Background(), port, s)
	go func() {
		_, _ = s.toPod.Write([]byte("GET"))
		s.toPod.Close()
	}()
	b, err := io.ReadAll(s.fromPod)
	if err != nil || string(b) != `answer to "GET"` {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatalf("PortForward: %v", err)
	}
}

// The container's server closes first while kubectl keeps its side open:
// kubectl reads everything and then EOF, and the forward ends after the
// drain, closing the connection and resetting the stream, so no copy is
// left reading it.
func TestPortForwardServerCloses(t *testing.T) {
	port := fakeHost(t, func(c net.Conn) { _, _ = c.Write([]byte("bye\n")) })
	p := forwardProvider(t, context.Background(), sm.Running)
	s := newFakeStream()
	before := runtime.NumGoroutine()
	start := time.Now()
	errc := forward(p, context.Background(), port, s)
	b, err := io.ReadAll(s.fromPod)
	if err != nil || string(b) != "bye\n" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := within(t, errc, portForwardDrain+5*time.Second); err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	if el := time.Since(start); el > portForwardDrain+2*time.Second {
		t.Errorf("took %s to end; the drain is %s", el, portForwardDrain)
	}
	if s.resets.Load() != 1 {
		t.Errorf("stream reset %d times, want once (kubectl's side was still open)", s.resets.Load())
	}
	if _, err := s.toPod.Write([]byte("x")); err == nil {
		t.Error("kubectl's side still accepts bytes after the forward ended")
	}
	settles(t, before)
}

// An unreachable port is an error that names the pod, the port and the
// agent's address, as kubectl prints it; the stream is closed.
func TestPortForwardUnreachablePort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close() // nothing listens there now
	p := forwardProvider(t, context.Background(), sm.Running)
	s := newFakeStream()
	err = within(t, forward(p, context.Background(), port, s), portForwardDialTimeout+5*time.Second)
	if err == nil {
		t.Fatal("no error forwarding to a closed port")
	}
	addr := "127.0.0.1:" + strconv.Itoa(int(port))
	for _, want := range []string{"ns/web", fmt.Sprintf("port %d", port), addr, "agent's host", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %q does not wrap the dial's", err)
	}
	if s.closes.Load() == 0 {
		t.Error("stream not closed")
	}
}

// What is refused before dialling: a pod not on this node, a pod with no
// running container, a port out of range.
func TestPortForwardRefuses(t *testing.T) {
	port := fakeHost(t, func(c net.Conn) { t.Error("dialled a forward that should have been refused") })
	for _, c := range []struct {
		name   string
		pod    string
		state  sm.State
		port   int32
		is     func(error) bool
		saying string
	}{
		{"not on this node", "other", sm.Running, port, errdefs.IsNotFound, "not on this node"},
		{"not running yet", "web", sm.Starting, port, errdefs.IsInvalidInput, "no running container"},
		{"ended", "web", sm.Succeeded, port, errdefs.IsInvalidInput, "no running container"},
		{"port 0", "web", sm.Running, 0, errdefs.IsInvalidInput, "not in 1-65535"},
		{"port 65536", "web", sm.Running, 65536, errdefs.IsInvalidInput, "not in 1-65535"},
	} {
		p := forwardProvider(t, context.Background(), c.state)
		s := newFakeStream()
		err := p.PortForward(context.Background(), "ns", c.pod, c.port, s)
		if err == nil || !c.is(err) || !strings.Contains(err.Error(), c.saying) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.saying)
		}
		if s.closes.Load() == 0 {
			t.Errorf("%s: stream not closed", c.name)
		}
	}
}

// A container the agent has not answered for is as it was last shown:
// forwardable if it was running, not if it was still starting.
func TestPortForwardDisconnectedAsLastShown(t *testing.T) {
	for shown, ok := range map[sm.State]bool{sm.Running: true, sm.Starting: false} {
		p := forwardProvider(t, context.Background(), sm.Disconnected)
		p.byName["ns/web"].ctrs[0].shown = shown
		if err := p.forwardable("ns", "web"); (err == nil) != ok {
			t.Errorf("disconnected, last shown %s: %v", shown, err)
		}
	}
}

// Forwards to one port run side by side, each on its own connection and
// stream; when they are done nothing of them is left running.
func TestPortForwardConcurrentStreams(t *testing.T) {
	var conns atomic.Int32
	port := fakeHost(t, func(c net.Conn) {
		n := conns.Add(1)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // all are open at once
		fmt.Fprintf(c, "conn %d got %s", n, line)
	})
	p := forwardProvider(t, context.Background(), sm.Running)
	before := runtime.NumGoroutine()
	const streams = 32
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newFakeStream()
			errc := forward(p, context.Background(), port, s)
			go func() {
				fmt.Fprintf(s.toPod, "request %d\n", i)
				s.toPod.Close()
			}()
			b, err := io.ReadAll(s.fromPod)
			if want := fmt.Sprintf(" got request %d\n", i); err != nil || !strings.HasSuffix(string(b), want) {
				t.Errorf("stream %d read %q, %v; want ...%q", i, b, err, want)
			}
			if err := within(t, errc, 10*time.Second); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if conns.Load() != streams {
		t.Errorf("%d connections to the container's port, want one per stream (%d)", conns.Load(), streams)
	}
	settles(t, before)
}

// The request's context, or the provider's, ending ends a forward at once,
// closing the connection to the container and the stream.
func TestPortForwardContextEnds(t *testing.T) {
	for _, which := range []string{"request", "provider"} {
		closed := make(chan struct{})
		port := fakeHost(t, func(c net.Conn) {
			_, _ = io.Copy(io.Discard, c) // until the forward closes it
			close(closed)
		})
		reqCtx, cancelReq := context.WithCancel(context.Background())
		provCtx, cancelProv := context.WithCancel(context.Background())
		p := forwardProvider(t, provCtx, sm.Running)
		s := newFakeStream()
		errc := forward(p, reqCtx, port, s)
		if _, err := s.toPod.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if which == "request" {
			cancelReq()
		} else {
			cancelProv()
		}
		if err := within(t, errc, 5*time.Second); !errors.Is(err, context.Canceled) {
			t.Errorf("%s context ended: PortForward returned %v", which, err)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Errorf("%s context ended: the connection to the container stayed open", which)
		}
		if s.resets.Load() == 0 {
			t.Errorf("%s context ended: stream not reset", which)
		}
		cancelReq()
		cancelProv()
	}
}

// settles waits for the goroutine count to come back to what it was.
func settles(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
