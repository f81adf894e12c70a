package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
)

func TestSinceFiltersWholeRuns(t *testing.T) {
	ended := func(ago time.Duration) *corev1.ContainerStateTerminated {
		return &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(time.Now().Add(-ago))}
	}
	pod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name:                 "main",
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(time.Hour)},
	}}}}
	for name, c := range map[string]struct {
		opts api.ContainerLogOpts
		want bool
	}{
		"no since":                   {api.ContainerLogOpts{}, false},
		"running run is shown whole": {api.ContainerLogOpts{SinceSeconds: 1}, false},
		"previous ended before":      {api.ContainerLogOpts{Previous: true, SinceSeconds: 60}, true},
		"previous ended within":      {api.ContainerLogOpts{Previous: true, SinceTime: time.Now().Add(-2 * time.Hour)}, false},
		"unknown container":          {api.ContainerLogOpts{SinceSeconds: 1}, false},
	} {
		container := "main"
		if name == "unknown container" {
			container = "other"
		}
		if got := endedBefore(pod, container, c.opts); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

// fakeFiles answers READ_FILE as a Mesos agent does (at most cap bytes per
// answer, the size with every answer, nothing past the end) from files it
// makes up on demand, so a test can read a 2 GB log without 2 GB anywhere.
// It counts what it served: the tests' measure of what a stream held.
type fakeFiles struct {
	mu        sync.Mutex
	files     map[string]*fakeFile
	cap       uint64
	reads     int    // ReadFile calls answered
	served    uint64 // data bytes in those answers
	sizeCalls int
	failSizes int // the next FileSize calls that fail as an unreachable agent
}

// fakeFile is either data, or lines generated lines of width bytes each
// (the last without its newline when noFinalNewline).
type fakeFile struct {
	data           []byte
	lines, width   uint64
	noFinalNewline bool
}

func (f *fakeFile) size() uint64 {
	if f.width == 0 {
		return uint64(len(f.data))
	}
	n := f.lines * f.width
	if f.noFinalNewline && n > 0 {
		n--
	}
	return n
}

// genLine is generated line i, newline included.
func genLine(i, width uint64) string {
	s := fmt.Sprintf("line %012d ", i)
	return s + strings.Repeat("x", int(width)-len(s)-1) + "\n"
}

func (f *fakeFile) readAt(p []byte, off uint64) {
	if f.width == 0 {
		copy(p, f.data[off:])
		return
	}
	for len(p) > 0 {
		i, col := off/f.width, off%f.width
		n := copy(p, genLine(i, f.width)[col:])
		p, off = p[n:], off+uint64(n)
	}
}

func newFake(cap uint64) *fakeFiles {
	return &fakeFiles{files: map[string]*fakeFile{}, cap: cap}
}

func (ff *fakeFiles) set(path string, f *fakeFile) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.files[path] = f
}

func (ff *fakeFiles) appendData(path, s string) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	f := ff.files[path]
	f.data = append(f.data[:len(f.data):len(f.data)], s...)
}

func (ff *fakeFiles) stats() (reads int, served uint64) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return ff.reads, ff.served
}

func (ff *fakeFiles) ReadFile(ctx context.Context, path string, off, length uint64) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("READ_FILE: %w: %w", agentclient.ErrUnavailable, err)
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	f, ok := ff.files[path]
	if !ok {
		return nil, 0, fmt.Errorf("READ_FILE %s: %w", path, agentclient.ErrNotFound)
	}
	size := f.size()
	ff.reads++
	if off >= size {
		return []byte{}, size, nil
	}
	n := size - off
	if length > 0 && length < n {
		n = length
	}
	n = min(n, ff.cap)
	p := make([]byte, n)
	f.readAt(p, off)
	ff.served += n
	return p, size, nil
}

func (ff *fakeFiles) FileSize(ctx context.Context, path string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("READ_FILE: %w: %w", agentclient.ErrUnavailable, err)
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.sizeCalls++
	if ff.failSizes > 0 {
		ff.failSizes--
		return 0, fmt.Errorf("READ_FILE: %w", agentclient.ErrUnavailable)
	}
	f, ok := ff.files[path]
	if !ok {
		return 0, fmt.Errorf("READ_FILE %s: %w", path, agentclient.ErrNotFound)
	}
	return f.size(), nil
}

var _ logFiles = (*agentclient.Client)(nil)

var logPaths = []string{"/sandboxes/r/stdout", "/sandboxes/r/stderr"}

// refLogs is what a stream must give, computed the obvious way on files
// small enough to hold: stdout then stderr, the last tail lines (a final
// newline ends the last line), the first limit bytes of that.
func refLogs(stdout, stderr string, tail, limit int) string {
	b := stdout + stderr
	if tail > 0 {
		trimmed := strings.TrimSuffix(b, "\n")
		idx := len(trimmed)
		for i := 0; i < tail && idx >= 0; i++ {
			idx = strings.LastIndexByte(trimmed[:idx], '\n')
		}
		if idx >= 0 {
			b = b[idx+1:]
		}
	}
	if limit > 0 && len(b) > limit {
		b = b[:limit]
	}
	return b
}

func readLogs(t testing.TB, src logFiles, o logOpts) string {
	t.Helper()
	r, err := openLogs(context.Background(), src, logPaths, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLogsTailOfHugeFileReadsOnlyItsEnd(t *testing.T) {
	const width, lines = 100, 2_000_000 // 200 MB
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{lines: lines, width: width})
	ff.set(logPaths[1], &fakeFile{})
	got := readLogs(t, ff, logOpts{tail: 100})
	var want strings.Builder
	for i := uint64(lines - 100); i < lines; i++ {
		want.WriteString(genLine(i, width))
	}
	if got != want.String() {
		t.Fatalf("tail 100 of 200 MB: got %d bytes starting %q, want %d bytes starting %q", len(got), got[:min(len(got), 40)], want.Len(), want.String()[:40])
	}
	// 100 lines are 10,000 bytes: one chunk read backwards to find their
	// start, one read forwards to give them.
	reads, served := ff.stats()
	t.Logf("tail 100 of 200 MB: %d READ_FILE answers, %d bytes", reads, served)
	if reads > 4 || served > 2*agentclient.ReadFileChunk {
		t.Fatalf("tail 100 of 200 MB took %d READ_FILE answers with %d bytes; want at most 4 and %d", reads, served, 2*agentclient.ReadFileChunk)
	}
}

func TestLogsStreamWithoutTailReadsAsConsumed(t *testing.T) {
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{lines: 2_000_000, width: 100})
	ff.set(logPaths[1], &fakeFile{})
	r, err := openLogs(context.Background(), ff, logPaths, logOpts{})
	if err != nil {
		t.Fatal(err)
	}
	const take = 1 << 20
	b, err := io.ReadAll(io.LimitReader(r, take))
	if err != nil || len(b) != take {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	if want := genLine(0, 100) + genLine(1, 100); string(b[:200]) != want {
		t.Fatalf("stream starts %q, want %q", b[:200], want)
	}
	if _, served := ff.stats(); served > take+agentclient.ReadFileChunk {
		t.Fatalf("reading 1 MiB of a 200 MB log fetched %d bytes: the stream reads ahead", served)
	}
	r.Close()
	reads, _ := ff.stats()
	if n, err := r.Read(make([]byte, 10)); n != 0 || !errors.Is(err, errLogsClosed) {
		t.Fatalf("Read after Close: %d, %v", n, err)
	}
	if again, _ := ff.stats(); again != reads {
		t.Fatalf("Read after Close asked the agent")
	}
}

func TestLogsCases(t *testing.T) {
	line := func(i int) string { return fmt.Sprintf("line-%03d\n", i) } // 9 bytes: across 4-byte chunks
	var ten strings.Builder
	for i := range 10 {
		ten.WriteString(line(i))
	}
	for _, c := range []struct {
		name           string
		stdout, stderr string
		tail, limit    int
		want           string
	}{
		{name: "whole", stdout: ten.String(), want: ten.String()},
		{name: "tail across chunk boundaries", stdout: ten.String(), tail: 3, want: line(7) + line(8) + line(9)},
		{name: "tail more than there is", stdout: ten.String(), tail: 30, want: ten.String()},
		{name: "no trailing newline", stdout: "a\nbb\nccc", tail: 2, want: "bb\nccc"},
		{name: "no trailing newline, tail 1", stdout: "a\nbb\nccc", tail: 1, want: "ccc"},
		{name: "no newline at all", stdout: "abcdefghij", tail: 1, want: "abcdefghij"},
		{name: "empty", want: ""},
		{name: "empty, tail", tail: 5, want: ""},
		{name: "empty lines", stdout: "a\n\n\n", tail: 2, want: "\n\n"},
		{name: "limit", stdout: ten.String(), limit: 13, want: ten.String()[:13]},
		{name: "tail then limit", stdout: ten.String(), tail: 2, limit: 11, want: (line(8) + line(9))[:11]},
		{name: "limit beyond the end", stdout: "ab\n", limit: 100, want: "ab\n"},
		{name: "stderr follows stdout", stdout: "o1\no2\n", stderr: "e1\ne2\n", want: "o1\no2\ne1\ne2\n"},
		{name: "tail reaches into stdout", stdout: "o1\no2\n", stderr: "e1\ne2\n", tail: 3, want: "o2\ne1\ne2\n"},
		{name: "tail within stderr", stdout: "o1\no2\n", stderr: "e1\ne2\n", tail: 1, want: "e2\n"},
		{name: "tail with empty stderr", stdout: "o1\no2\n", tail: 1, want: "o2\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if ref := refLogs(c.stdout, c.stderr, c.tail, c.limit); ref != c.want {
				t.Fatalf("reference gives %q, case says %q", ref, c.want)
			}
			ff := newFake(3) // answers shorter than the chunk asked
			ff.set(logPaths[0], &fakeFile{data: []byte(c.stdout)})
			ff.set(logPaths[1], &fakeFile{data: []byte(c.stderr)})
			if got := readLogs(t, ff, logOpts{tail: c.tail, limit: int64(c.limit), chunk: 4}); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestLogsMatchReference: random logs, chunk and answer sizes, tails and
// limits give what the whole-file reference gives.
func TestLogsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := func() string {
		b := make([]byte, rng.IntN(60))
		for i := range b {
			b[i] = "ab\n"[rng.IntN(3)]
		}
		return string(b)
	}
	for i := range 3000 {
		stdout, stderr := text(), text()
		tail, limit := rng.IntN(12), 0
		if rng.IntN(3) == 0 {
			limit = 1 + rng.IntN(40)
		}
		chunk, cap := uint64(1+rng.IntN(16)), uint64(1+rng.IntN(16))
		ff := newFake(cap)
		ff.set(logPaths[0], &fakeFile{data: []byte(stdout)})
		ff.set(logPaths[1], &fakeFile{data: []byte(stderr)})
		want := refLogs(stdout, stderr, tail, limit)
		if got := readLogs(t, ff, logOpts{tail: tail, limit: int64(limit), chunk: chunk}); got != want {
			t.Fatalf("case %d: stdout %q stderr %q tail %d limit %d chunk %d cap %d: got %q, want %q", i, stdout, stderr, tail, limit, chunk, cap, got, want)
		}
	}
}

func TestLogsGeneratedFileWithoutFinalNewline(t *testing.T) {
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{lines: 1_000_000, width: 37, noFinalNewline: true})
	ff.set(logPaths[1], &fakeFile{})
	got := readLogs(t, ff, logOpts{tail: 2})
	want := genLine(999_998, 37) + strings.TrimSuffix(genLine(999_999, 37), "\n")
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLogsMissingSandboxIsNotFound(t *testing.T) {
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{})
	_, err := openLogs(context.Background(), ff, logPaths, logOpts{})
	if !errors.Is(err, agentclient.ErrNotFound) || !strings.Contains(err.Error(), logPaths[1]) {
		t.Fatalf("missing stderr: %v", err)
	}
}

// TestLogsFollow: a follower sees what is written while the run lives, what
// it wrote last once it ends, then the end of the stream; a truncated file
// is read anew, and an agent failing a poll does not end the stream.
func TestLogsFollow(t *testing.T) {
	ff := newFake(5)
	ff.set(logPaths[0], &fakeFile{data: []byte("old1\nold2\n")})
	ff.set(logPaths[1], &fakeFile{})
	var running atomic.Bool
	running.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := openLogs(ctx, ff, logPaths, logOpts{tail: 1, follow: true, running: running.Load, poll: time.Millisecond, chunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	expect := func(want string) {
		t.Helper()
		b := make([]byte, len(want))
		if _, err := io.ReadFull(r, b); err != nil || string(b) != want {
			t.Fatalf("got %q, %v; want %q", b, err, want)
		}
	}
	expect("old2\n")
	ff.appendData(logPaths[0], "new1\n")
	expect("new1\n")
	ff.mu.Lock()
	ff.failSizes = 3
	ff.mu.Unlock()
	ff.appendData(logPaths[1], "err1\n")
	expect("err1\n")
	ff.set(logPaths[0], &fakeFile{data: []byte("rotated\n")})
	expect("rotated\n")
	ff.appendData(logPaths[0], "last\n")
	running.Store(false)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "last\n" {
		t.Fatalf("after the run ended: %q, %v; want %q then the end", rest, err, "last\n")
	}
}

// TestLogsFollowStops: a follower blocked waiting for more returns when its
// context ends or the stream is closed, and the agent is asked nothing more.
func TestLogsFollowStops(t *testing.T) {
	for _, how := range []string{"context", "close"} {
		t.Run(how, func(t *testing.T) {
			ff := newFake(agentclient.ReadFileChunk)
			ff.set(logPaths[0], &fakeFile{data: []byte("x\n")})
			ff.set(logPaths[1], &fakeFile{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, err := openLogs(ctx, ff, logPaths, logOpts{follow: true, running: func() bool { return true }, poll: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(io.LimitReader(r, 2)); err != nil || string(b) != "x\n" {
				t.Fatalf("%q, %v", b, err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := r.Read(make([]byte, 10)) // waits for the next poll: an hour
				done <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if how == "context" {
				cancel()
			} else {
				r.Close()
			}
			select {
			case err := <-done:
				if err == nil || err == io.EOF {
					t.Fatalf("Read ended with %v, want an error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read still blocked after the stream was stopped")
			}
			reads, _ := ff.stats()
			if _, err := r.Read(make([]byte, 10)); err == nil {
				t.Fatal("Read after stop succeeded")
			}
			if again, _ := ff.stats(); again != reads {
				t.Fatal("the agent was asked after the stream stopped")
			}
		})
	}
}

// TestLogsTailOf2GBAllocatesLittle: memory, not time, is what a tail of a
// huge log must bound; the allocation total of a whole --tail=100 request on
// a 2 GB log, READ_FILE answers included, stays far below one MB per GB.
func TestLogsTailOf2GBAllocatesLittle(t *testing.T) {
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{lines: 20_000_000, width: 100}) // 2 GB
	ff.set(logPaths[1], &fakeFile{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := openLogs(context.Background(), ff, logPaths, logOpts{tail: 100})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	runtime.ReadMemStats(&after)
	if err != nil || n != 100*100 {
		t.Fatalf("copied %d bytes, %v; want 10000", n, err)
	}
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("tail 100 of 2 GB: TotalAlloc grew %d bytes", grew)
	if grew > 20<<20 {
		t.Fatalf("tail 100 of 2 GB allocated %d bytes; want < 20 MB", grew)
	}
}

func BenchmarkLogsTail100Of2GB(b *testing.B) {
	ff := newFake(agentclient.ReadFileChunk)
	ff.set(logPaths[0], &fakeFile{lines: 20_000_000, width: 100})
	ff.set(logPaths[1], &fakeFile{})
	b.ReportAllocs()
	for b.Loop() {
		r, err := openLogs(context.Background(), ff, logPaths, logOpts{tail: 100})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
