package memlimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var got int64 = -1
	setLimit := func(v int64) int64 { got = v; return 0 }

	v2 := write("memory.max", "1073741824\n")
	if msg := set("", []string{v2}, setLimit); got != 966367641 || !strings.Contains(msg, "966367641") {
		t.Fatalf("v2 limit: set %d, %q", got, msg)
	}
	got = -1
	if msg := set("512MiB", []string{v2}, setLimit); got != -1 || !strings.Contains(msg, "kept") {
		t.Fatalf("GOMEMLIMIT must win: set %d, %q", got, msg)
	}
	for _, none := range []string{"max\n", "9223372036854771712\n"} {
		f := write("none", none)
		if msg := set("", []string{f}, setLimit); got != -1 || !strings.Contains(msg, "no limit") {
			t.Fatalf("%q: set %d, %q", none, got, msg)
		}
	}
	bad := write("bad", "lots\n")
	if msg := set("", []string{bad}, setLimit); got != -1 || !strings.Contains(msg, "unreadable") {
		t.Fatalf("bad limit: set %d, %q", got, msg)
	}
	v1 := write("memory.limit_in_bytes", "2147483648\n")
	if set("", []string{filepath.Join(dir, "absent"), v1}, setLimit); got != 1932735283 {
		t.Fatalf("v1 after a missing v2: set %d", got)
	}
	if msg := set("", []string{filepath.Join(dir, "absent")}, setLimit); !strings.Contains(msg, "no cgroup memory limit") {
		t.Fatalf("none found: %q", msg)
	}
}
