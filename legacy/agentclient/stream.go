package agentclient

// Exec and attach over the Mesos v1 streaming calls, as one drives a Mesos
// agent: LAUNCH_NESTED_CONTAINER_SESSION (a streaming response of ProcessIO
// records), ATTACH_CONTAINER_INPUT (a streaming request),
// ATTACH_CONTAINER_OUTPUT, WAIT_NESTED_CONTAINER and REMOVE_NESTED_CONTAINER,
// all through mesos-go's agent/calls, httpcli and httpagent.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
)

// ErrUnsupported: the agent does not offer what was asked (it answers the
// streaming calls with 501 or 415, or has no such endpoint), or the
// container cannot do it (stdin of a standalone container). Retrying cannot
// help.
var ErrUnsupported = errors.New("not supported by agent")

// TermSize is a terminal size in character cells.
type TermSize struct {
	Width, Height uint16
}

// ExecIO is what an exec or attach is connected to. Nil writers discard;
// with TTY everything arrives on Stdout (a terminal has one output).
type ExecIO struct {
	// Stdin feeds the command; its EOF (or error) is the command's end of
	// input. Nil: the command's stdin is at EOF at once (as docker exec
	// without -i; with TTY the terminal's EOF character is typed).
	Stdin io.Reader
	// Stdout and Stderr receive the command's output as it comes.
	Stdout, Stderr io.Writer
	// TTY runs the command on a pseudo-terminal.
	TTY bool
	// Resize delivers terminal sizes (TTY only). The first size, when one
	// is ready within ttyInitialSizeWait, is the terminal's initial size.
	Resize <-chan TermSize
}

const (
	// ttyInitialSizeWait is how long Exec waits for a first size on Resize
	// before launching a TTY session without one (clients send their size
	// as soon as their stream is up).
	ttyInitialSizeWait = 100 * time.Millisecond
	// inputFailureGrace is how long a failed stdin attachment may precede
	// the end of the output (a session that ended on its own makes the
	// attachment fail) before the exec is aborted instead.
	inputFailureGrace = 2 * time.Second
	stdinChunk        = 32 << 10
)

// sessionID returns a fresh id for a session nested in parent: parent with
// '.', '/' and other characters Mesos refuses in a nested id replaced by
// '-', then "-exec-" and 16 random hex digits.
func sessionID(parent string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	suffix := "-exec-" + hex.EncodeToString(b[:])
	base := strings.Map(func(r rune) rune {
		if r == '.' || r == '/' || r == '\\' || r <= ' ' || r == 0x7f {
			return '-'
		}
		return r
	}, parent)
	if max := 255 - len(suffix); len(base) > max {
		base = base[:max]
	}
	return base + suffix
}

// streamErr classifies an error of a streaming call like classify does, but
// tells an agent without exec/attach apart: 501 or 415, a 404 that is not
// about one of ids (the endpoint itself is missing) or an answer mesos-go
// cannot read as a stream is ErrUnsupported.
func (c *Client) streamErr(call agent.Call_Type, err error, ids ...string) error {
	var pe httpcli.ProtocolError
	switch {
	case apierrors.Code(501).Matches(err), apierrors.Code(415).Matches(err), errors.As(err, &pe):
		return fmt.Errorf("%s: %w: exec and attach are not supported by this agent: %w", call, ErrUnsupported, err)
	case apierrors.CodeNotFound.Matches(err):
		for _, id := range ids {
			if mentionsID(err.Error(), id) {
				return c.classify(call, err)
			}
		}
		return fmt.Errorf("%s: %w: the agent has no such endpoint (exec and attach are not supported by this agent): %w", call, ErrUnsupported, err)
	}
	return c.classify(call, err)
}

// mentionsID reports whether msg names id as a whole (not inside a word).
func mentionsID(msg, id string) bool {
	if id == "" {
		return false
	}
	idChar := func(b byte) bool {
		return b == '-' || b == '_' || b == '.' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], id)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(id)
		rightOK := end == len(msg) || !idChar(msg[end]) ||
			msg[end] == '.' && (end+1 == len(msg) || !idChar(msg[end+1])) // a full stop
		if (start == 0 || !idChar(msg[start-1])) && rightOK {
			return true
		}
		i = start + 1
	}
}

// Exec runs cmd (an argv; no shell unless cmd asks for one) in the running
// container parentID as a nested container session and returns its exit
// code (128+signal if it was signalled). Output is copied to io.Stdout and
// io.Stderr as it comes; Exec returns once the command has ended and its
// output is delivered. Cancelling ctx closes the session's connection, and
// the agent kills the session; Exec then returns ctx's cause.
//
// Errors: ErrNotFound (no such container), ErrRejected (e.g. the container
// is not running), ErrUnsupported (the agent has no exec), ErrUnavailable.
// A command that cannot be executed is not an error: like a shell, the
// session says why on stderr and ends with 127 (not found) or 126.
func (c *Client) Exec(ctx context.Context, parentID string, cmd []string, eio ExecIO) (exitCode int, err error) {
	if parentID == "" {
		return -1, fmt.Errorf("%s: %w: empty container id", agent.Call_LAUNCH_NESTED_CONTAINER_SESSION, ErrRejected)
	}
	if len(cmd) == 0 || cmd[0] == "" {
		return -1, fmt.Errorf("%s: %w: empty command", agent.Call_LAUNCH_NESTED_CONTAINER_SESSION, ErrRejected)
	}
	cid := mesos.ContainerID{Value: sessionID(parentID), Parent: &mesos.ContainerID{Value: parentID}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var ci *mesos.ContainerInfo
	if eio.TTY {
		ti := &mesos.TTYInfo{}
		if eio.Resize != nil {
			t := time.NewTimer(ttyInitialSizeWait)
			select {
			case sz, ok := <-eio.Resize:
				if ok {
					ti.WindowSize = &mesos.TTYInfo_WindowSize{Rows: uint32(sz.Height), Columns: uint32(sz.Width)}
				}
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		typ := mesos.ContainerInfo_MESOS
		ci = &mesos.ContainerInfo{Type: &typ, TTYInfo: ti}
	}
	shell := false
	command := &mesos.CommandInfo{Shell: &shell, Value: &cmd[0], Arguments: cmd}
	launch := calls.LaunchNestedContainerSession(cid, command, ci)

	start := time.Now()
	res, err := c.sender.Send(ctx, calls.NonStreaming(launch))
	if err != nil {
		if res != nil {
			res.Close()
		}
		err = c.streamErr(launch.Type, err, parentID, cid.Value)
		c.observe(launch.Type.String(), time.Since(start), err)
		return -1, err
	}
	if res == nil {
		// 202: Mesos' answer to a LAUNCH of an id in use.
		err = fmt.Errorf("%s: %w: session id %s is already in use", launch.Type, ErrRejected, cid.Value)
		c.observe(launch.Type.String(), time.Since(start), err)
		return -1, err
	}
	defer res.Close()
	c.observe(launch.Type.String(), time.Since(start), nil)

	// Stdin and resizes go on their own connection, once the session
	// exists (the launch answered).
	outputDone := make(chan struct{})
	inputCtx, inputCancel := context.WithCancel(ctx)
	inputEnded := make(chan struct{})
	go func() {
		defer close(inputEnded)
		err := c.attachInput(inputCtx, cid, eio, outputDone)
		if err == nil || inputCtx.Err() != nil {
			return
		}
		// A session that ended on its own refuses the attachment; only a
		// session that keeps running without its input is a failure.
		t := time.NewTimer(inputFailureGrace)
		defer t.Stop()
		select {
		case <-outputDone:
		case <-inputCtx.Done():
		case <-t.C:
			cancel(err)
		}
	}()
	stopInput := func() {
		inputCancel()
		<-inputEnded
	}

	outErr := copyOutput(res, eio.Stdout, eio.Stderr, eio.TTY)
	close(outputDone)
	stopInput()
	if cause := context.Cause(ctx); cause != nil {
		return -1, fmt.Errorf("%s: %w", launch.Type, cause)
	}
	if outErr != nil {
		var we writeErr
		if errors.As(outErr, &we) {
			return -1, fmt.Errorf("%s: copying output: %w", launch.Type, we.err)
		}
		return -1, fmt.Errorf("%s: output stream: %w: %w", launch.Type, ErrUnavailable, outErr)
	}

	code, err := c.waitSession(ctx, cid)
	if err != nil {
		return -1, err
	}
	// The agent keeps the status a while; free it now (best effort).
	rctx, rcancel := c.bounded(ctx)
	_, _ = c.noData(rctx, calls.RemoveNestedContainer(cid))
	rcancel()
	return code, nil
}

func (c *Client) waitSession(ctx context.Context, cid mesos.ContainerID) (int, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	res, err := c.call(ctx, calls.WaitNestedContainer(cid))
	if err != nil {
		return -1, err
	}
	w := res.GetWaitNestedContainer()
	if w == nil || w.ExitStatus == nil {
		msg := ""
		if w != nil {
			msg = w.GetMessage()
		}
		return -1, fmt.Errorf("%s: %w: session %s ended without an exit status %s", agent.Call_WAIT_NESTED_CONTAINER, ErrUnavailable, cid.Value, msg)
	}
	ws := syscall.WaitStatus(*w.ExitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// attachInput streams stdin (its EOF as an empty DATA record) and terminal
// sizes to the session with ATTACH_CONTAINER_INPUT, until both are
// exhausted, the output ends or ctx is done.
func (c *Client) attachInput(ctx context.Context, cid mesos.ContainerID, eio ExecIO, outputDone <-chan struct{}) (err error) {
	ch := make(chan *agent.Call)
	stop := make(chan struct{})
	defer close(stop)
	send := func(call *agent.Call) bool {
		select {
		case ch <- call:
			return true
		case <-stop:
			return false
		}
	}
	var producers sync.WaitGroup
	producers.Add(1)
	go func() {
		// This goroutine outlives attachInput while a Read on Stdin blocks;
		// it ends with that Read (the caller closes its stdin source when
		// its client leaves).
		defer producers.Done()
		if eio.Stdin == nil {
			send(calls.AttachContainerInputData(nil))
			return
		}
		buf := make([]byte, stdinChunk)
		for {
			n, rerr := eio.Stdin.Read(buf)
			if n > 0 && !send(calls.AttachContainerInputData(append([]byte(nil), buf[:n]...))) {
				return
			}
			if rerr != nil {
				send(calls.AttachContainerInputData(nil)) // EOF
				return
			}
		}
	}()
	if eio.TTY && eio.Resize != nil {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for {
				select {
				case sz, ok := <-eio.Resize:
					if !ok {
						return
					}
					if !send(calls.AttachContainerInputTTY(&mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{
						Rows: uint32(sz.Height), Columns: uint32(sz.Width)}})) {
						return
					}
				case <-stop:
					return
				}
			}
		}()
	}
	exhausted := make(chan struct{})
	go func() {
		producers.Wait()
		close(exhausted)
	}()

	first := calls.AttachContainerInput(cid)
	req := calls.RequestStreamingFunc(func() *agent.Call {
		if first != nil {
			f := first
			first = nil
			return f
		}
		select {
		case call := <-ch:
			return call
		case <-exhausted:
		case <-outputDone:
		case <-ctx.Done():
		}
		return nil // the end of the request stream
	})
	start := time.Now()
	defer func() { c.observe(agent.Call_ATTACH_CONTAINER_INPUT.String(), time.Since(start), err) }()
	res, err := c.sender.Send(ctx, req)
	if res != nil {
		res.Close()
	}
	if err != nil {
		return c.streamErr(agent.Call_ATTACH_CONTAINER_INPUT, err, cid.Value)
	}
	return nil
}

type writeErr struct{ err error }

func (e writeErr) Error() string { return e.err.Error() }

// copyOutput writes the DATA records of a ProcessIO stream to stdout and
// stderr until the stream ends (nil) or breaks. A failed write is a
// writeErr.
func copyOutput(dec encoding.Decoder, stdout, stderr io.Writer, tty bool) error {
	if tty && stdout != nil {
		stderr = stdout
	}
	for {
		var pio agent.ProcessIO
		if err := dec.Decode(&pio); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if pio.Type != agent.ProcessIO_DATA || pio.Data == nil || len(pio.Data.Data) == 0 {
			continue // CONTROL records (heartbeats) carry no output
		}
		var w io.Writer
		switch pio.Data.Type {
		case agent.ProcessIO_Data_STDOUT:
			w = stdout
		case agent.ProcessIO_Data_STDERR:
			w = stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(pio.Data.Data); err != nil {
			return writeErr{err}
		}
	}
}

// Attach streams what the running standalone container containerID writes
// to stdout and stderr from now on (ATTACH_CONTAINER_OUTPUT; like kubectl
// attach, earlier output is the logs' business) until the container ends
// (nil) or ctx is done (ctx's error). With io.TTY both go to io.Stdout.
// io.Stdin must be nil: a standalone container's stdin is /dev/null and it
// has no tty, so Mesos cannot attach input to it (ErrUnsupported).
func (c *Client) Attach(ctx context.Context, containerID string, eio ExecIO) (err error) {
	call := calls.AttachContainerOutput(mesos.ContainerID{Value: containerID})
	if eio.Stdin != nil {
		return fmt.Errorf("%s: %w: stdin of container %s cannot be attached: standalone containers run with stdin from /dev/null and without a tty",
			agent.Call_ATTACH_CONTAINER_INPUT, ErrUnsupported, containerID)
	}
	start := time.Now()
	res, err := c.sender.Send(ctx, calls.NonStreaming(call))
	if err != nil {
		if res != nil {
			res.Close()
		}
		err = c.streamErr(call.Type, err, containerID)
		c.observe(call.Type.String(), time.Since(start), err)
		return err
	}
	if res == nil {
		err = fmt.Errorf("%s: %w: no stream in the answer", call.Type, ErrUnavailable)
		c.observe(call.Type.String(), time.Since(start), err)
		return err
	}
	defer res.Close()
	c.observe(call.Type.String(), time.Since(start), nil)
	err = copyOutput(res, eio.Stdout, eio.Stderr, eio.TTY)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var we writeErr
	switch {
	case err == nil:
		return nil
	case errors.As(err, &we):
		return fmt.Errorf("%s: copying output: %w", call.Type, we.err)
	default:
		return fmt.Errorf("%s: output stream: %w: %w", call.Type, ErrUnavailable, err)
	}
}
