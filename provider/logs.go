package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// GetContainerLogs streams the container's sandbox stdout and stderr through
// READ_FILE, a chunk at a time (see logReader: a log may be far larger than
// the bridge's memory). The pod is looked up in the API cache, so logs of a
// finished pod stay readable after a bridge restart, as long as its sandbox
// exists.
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
	// --previous reads a run that has ended: there is nothing to follow.
	follow := opts.Follow && !opts.Previous
	r, err := openLogs(ctx, p.agent, []string{agentclient.SandboxPath(id, "stdout"), agentclient.SandboxPath(id, "stderr")}, logOpts{
		tail:    opts.Tail,
		limit:   int64(opts.LimitBytes),
		follow:  follow,
		running: func() bool { return p.running(namespace, podName, containerName, id) },
	})
	if err != nil {
		err = fmt.Errorf("logs of %s/%s container %s (run %s): %w", namespace, podName, containerName, id, err)
		if errors.Is(err, agentclient.ErrNotFound) {
			// The kubelet API answers 404 for errdefs' NotFound, which does
			// not look through fmt's wrapping: it goes outermost.
			err = errdefs.AsNotFound(err)
		}
		return nil, err
	}
	return r, nil
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

// Streaming a log with bounded memory.
//
// A run's stdout and stderr are files in its sandbox on the agent, and the
// only way to them is READ_FILE (Mesos v1 agent API), which takes an offset
// and a length, answers at most agentclient.ReadFileChunk bytes, and tells
// the file's size. A log can be many gigabytes and one bridge serves every
// pod of its node, so no request may hold a log, or even a --tail window of
// it, in memory: reading a whole sandbox file per `kubectl logs` is how a
// chatty container ran the bridge out of memory.
//
// So the reader pulls one chunk at a time, only when the kubelet API's
// handler asks for more bytes (Read): memory per request is a chunk or two
// whatever the file size, and a slow client slows the reads down instead of
// letting them pile up. There is no goroutine behind it, so nothing can
// leak; Close, or the end of the request's context, aborts the READ_FILE or
// the --follow wait in progress.
//
//   - The files are shown one after the other, stdout then stderr, as one
//     stream (they carry no times to interleave by).
//   - --tail=N reads backwards from the end, a chunk at a time, counting
//     newlines until it has N (a final newline ends the last line rather
//     than starting an empty one), then streams forward from there. It
//     re-reads that last stretch rather than keeping it.
//   - --limit-bytes ends the stream after that many bytes.
//   - --follow, after the first pass, polls each file's size and reads what
//     was added, until the run has ended and what it wrote is drained. A
//     file that shrank was truncated or replaced: it is read again from its
//     start, as `tail -F` does. An agent that fails while following is
//     retried at the next poll rather than cutting the stream.

// logFiles is the part of the agent client logs need: READ_FILE by offset
// and length, and the size alone. *agentclient.Client implements it; tests
// use a fake that makes up arbitrarily large files.
type logFiles interface {
	ReadFile(ctx context.Context, path string, offset, length uint64) ([]byte, uint64, error)
	FileSize(ctx context.Context, path string) (uint64, error)
}

// logOpts are the options a stream honours; api.ContainerLogOpts' others are
// settled before it opens.
type logOpts struct {
	tail    int   // last lines only; 0 (or less): from the start
	limit   int64 // bytes at most; 0 (or less): no limit
	follow  bool
	running func() bool // follow: whether the run may still write
	// chunk and poll default to agentclient.ReadFileChunk and
	// logPollInterval; tests shrink them.
	chunk uint64
	poll  time.Duration
}

// logPollInterval is how often --follow looks for new bytes: about what a
// person watching a log notices, and two small READ_FILE calls per follower.
const logPollInterval = time.Second

var errLogsClosed = errors.New("logs: reader closed")

// logReader streams a run's log files; see above.
type logReader struct {
	src   logFiles
	opts  logOpts
	files []logFile

	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool

	started bool   // the --tail start was found
	pass    int    // 0: the first pass; more: --follow polls
	last    bool   // --follow: the run had ended before this pass began
	cur     int    // the file being read in this pass
	left    int64  // with a limit: bytes still to give
	buf     []byte // fetched, not yet given
	err     error  // once set, every later Read answers it
}

type logFile struct {
	path     string
	off, end uint64 // next byte to read; where this pass stops
}

// openLogs learns the files' sizes, so that a run without a sandbox is a
// NotFound error now rather than a broken stream, and returns the reader.
// Nothing else is read until the first Read.
func openLogs(ctx context.Context, src logFiles, paths []string, o logOpts) (*logReader, error) {
	if o.chunk == 0 {
		o.chunk = agentclient.ReadFileChunk
	}
	if o.poll <= 0 {
		o.poll = logPollInterval
	}
	if o.running == nil {
		o.running = func() bool { return false }
	}
	r := &logReader{src: src, opts: o, left: o.limit}
	for _, path := range paths {
		size, err := src.FileSize(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
		r.files = append(r.files, logFile{path: path, end: size})
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r, nil
}

// Read gives what was fetched, fetching the next chunk when that is used up.
func (r *logReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.buf) == 0 {
		if r.err == nil {
			r.err = r.fill()
		}
		if r.err != nil {
			if r.closed.Load() {
				return 0, errLogsClosed
			}
			r.cancel()
			return 0, r.err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close ends the stream; a READ_FILE or a --follow wait in progress returns
// at once.
func (r *logReader) Close() error {
	r.closed.Store(true)
	r.cancel()
	return nil
}

// fill sets buf to the next bytes of the stream, or says why there are none
// (io.EOF at its end).
func (r *logReader) fill() error {
	for {
		if r.opts.limit > 0 && r.left <= 0 {
			return io.EOF
		}
		if err := r.ctx.Err(); err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		if !r.started {
			r.started = true
			if r.opts.tail > 0 {
				if err := r.seekTail(); err != nil {
					return err
				}
			}
		}
		if r.cur < len(r.files) {
			f := &r.files[r.cur]
			if f.off >= f.end {
				r.cur++
				continue
			}
			data, _, err := r.src.ReadFile(r.ctx, f.path, f.off, min(r.opts.chunk, f.end-f.off))
			switch {
			case err != nil && (r.pass == 0 || r.ctx.Err() != nil):
				return fmt.Errorf("logs: reading %s at offset %d: %w", f.path, f.off, err)
			case err != nil || len(data) == 0:
				// Following: the agent failed, try again at the next poll.
				// Either way: the file shrank under us, so this pass is over
				// for it; the next poll sees what became of it.
				f.end = f.off
				continue
			}
			f.off += uint64(len(data))
			if r.opts.limit > 0 && int64(len(data)) > r.left {
				data = data[:r.left]
			}
			r.left -= int64(len(data))
			r.buf = data
			return nil
		}
		if !r.opts.follow || r.last {
			return io.EOF
		}
		if err := r.nextPass(); err != nil {
			return err
		}
	}
}

// nextPass waits for the next --follow poll, unless the run has ended, and
// sets each file's end to its current size.
func (r *logReader) nextPass() error {
	r.last = !r.opts.running()
	if !r.last {
		t := time.NewTimer(r.opts.poll)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return fmt.Errorf("logs: %w", r.ctx.Err())
		case <-t.C:
		}
	}
	r.pass++
	r.cur = 0
	for i := range r.files {
		f := &r.files[i]
		size, err := r.src.FileSize(r.ctx, f.path)
		switch {
		case r.ctx.Err() != nil:
			return fmt.Errorf("logs: %w", r.ctx.Err())
		case err != nil:
			f.end = f.off // try again at the next poll
		case size < f.off:
			f.off, f.end = 0, size // truncated or replaced: read it anew
		default:
			f.end = size
		}
	}
	return nil
}

// seekTail moves each file's offset to where the last opts.tail lines of
// the stream start, reading backwards from the end a chunk at a time. Files
// wholly before that start are skipped; if the stream has fewer lines, it
// is shown whole.
func (r *logReader) seekTail() error {
	need := r.opts.tail
	final := true // the next byte looked at is the stream's last
	chunk := make([]byte, 0, r.opts.chunk)
	for i := len(r.files) - 1; i >= 0; i-- {
		f := &r.files[i]
		for end := f.end; end > 0; {
			start := end - min(r.opts.chunk, end)
			var err error
			if chunk, err = r.readRange(chunk[:0], f.path, start, end); err != nil {
				return err
			}
			for j := len(chunk) - 1; j >= 0; j-- {
				if chunk[j] != '\n' || final {
					final = false
					continue
				}
				if need--; need == 0 {
					f.off = start + uint64(j) + 1
					for k := range i {
						r.files[k].off = r.files[k].end
					}
					return nil
				}
			}
			end = start
		}
	}
	return nil
}

// readRange appends path's bytes [start, end) to buf, in as many READ_FILE
// calls as the agent needs.
func (r *logReader) readRange(buf []byte, path string, start, end uint64) ([]byte, error) {
	for off := start; off < end; {
		data, _, err := r.src.ReadFile(r.ctx, path, off, end-off)
		if err != nil {
			return nil, fmt.Errorf("logs: --tail: reading %s at offset %d: %w", path, off, err)
		}
		if len(data) == 0 {
			return nil, fmt.Errorf("logs: --tail: %s shrank below %d bytes while being read", path, end)
		}
		if uint64(len(data)) > end-off {
			data = data[:end-off]
		}
		buf = append(buf, data...)
		off += uint64(len(data))
	}
	return buf, nil
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
