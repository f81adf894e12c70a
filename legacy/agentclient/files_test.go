package agentclient

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	legacyagent "github.com/vk-titus/vk-titus/legacy/agent"
)

// TestReadFilePaging: what log streaming relies on, against the reference
// agent, in both codecs: FileSize answers the size alone (empty files
// included), a READ_FILE answers at most ReadFileChunk from its offset and
// nothing past the end, and a missing file is ErrNotFound.
func TestReadFilePaging(t *testing.T) {
	work := t.TempDir()
	l := logrus.New()
	l.SetOutput(io.Discard)
	a, err := legacyagent.New(legacyagent.Config{WorkDir: work, Listen: "127.0.0.1:5051", Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { a.Close(); srv.Close() })

	big := bytes.Repeat([]byte("0123456789abcdef\n"), 3*ReadFileChunk/17+5) // > 3 chunks
	dir := filepath.Join(work, "sandboxes", "files-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stdout"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stderr"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := SandboxPath("files-test", "stdout"), SandboxPath("files-test", "stderr")
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			c, ctx := cc.client(srv.URL), testCtx(t)
			if size, err := c.FileSize(ctx, stdout); err != nil || size != uint64(len(big)) {
				t.Fatalf("FileSize(stdout) = %d, %v; want %d", size, err, len(big))
			}
			if size, err := c.FileSize(ctx, stderr); err != nil || size != 0 {
				t.Fatalf("FileSize(empty stderr) = %d, %v", size, err)
			}
			if _, err := c.FileSize(ctx, SandboxPath("files-test", "nope")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("FileSize(missing) = %v, want ErrNotFound", err)
			}
			var got []byte
			for off := uint64(0); ; {
				data, size, err := c.ReadFile(ctx, stdout, off, 1<<20)
				if err != nil || size != uint64(len(big)) {
					t.Fatalf("ReadFile at %d: size %d, %v", off, size, err)
				}
				if len(data) > ReadFileChunk {
					t.Fatalf("ReadFile answered %d bytes, more than ReadFileChunk", len(data))
				}
				if len(data) == 0 {
					break
				}
				got = append(got, data...)
				off += uint64(len(data))
			}
			if !bytes.Equal(got, big) {
				t.Fatalf("paged read gave %d bytes, want the file's %d", len(got), len(big))
			}
			if data, _, err := c.ReadFile(ctx, stdout, 5, 3); err != nil || string(data) != "567" {
				t.Fatalf("ReadFile(5, 3) = %q, %v", data, err)
			}
		})
	}
}
