package translate

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// checkDecodeProperty is what both fuzz targets assert: DecodeContainerInfo
// never panics, fails only with ErrInvalidSpec, and whatever it accepts
// re-encodes to an annotation that decodes to an equal message and is a
// fixed point of encoding.
func checkDecodeProperty(t *testing.T, s string) {
	ci, err := DecodeContainerInfo(s)
	if err != nil {
		if ci != nil {
			t.Fatalf("error %v with a non-nil result", err)
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("error does not wrap ErrInvalidSpec: %v", err)
		}
		return
	}
	enc, err := EncodeContainerInfo(ci)
	if err != nil {
		// Re-encoding writes non-nullable fields the input may have left out,
		// which can push an input right at the limit over it. Nothing else
		// may fail.
		if b, merr := ci.Marshal(); merr == nil && base64.StdEncoding.EncodedLen(len(b)) > MaxAnnotationBytes {
			return
		}
		t.Fatalf("accepted message does not re-encode: %v", err)
	}
	again, err := DecodeContainerInfo(enc)
	if err != nil {
		t.Fatalf("re-encoded annotation does not decode: %v", err)
	}
	if !ci.Equal(again) {
		t.Fatalf("round trip changed the message:\n%v\n%v", ci, again)
	}
	if enc2, err := EncodeContainerInfo(again); err != nil || enc2 != enc {
		t.Fatalf("encoding is not a fixed point (err %v)", err)
	}
}

// FuzzDecodeContainerInfo feeds annotation text. Its seeds are committed in
// testdata/fuzz/FuzzDecodeContainerInfo (regenerate with
// VKT_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./translate/).
func FuzzDecodeContainerInfo(f *testing.F) {
	f.Fuzz(checkDecodeProperty)
}

// FuzzContainerInfoWire feeds raw protobuf, base64-encoded before decoding,
// so that mutations land in the wire format rather than in base64 text that
// mostly fails to decode.
func FuzzContainerInfoWire(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if b, err := base64.StdEncoding.DecodeString(s.text); err == nil && len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeProperty(t, base64.StdEncoding.EncodeToString(b))
	})
}

// fuzzSeed is one committed seed; accept says whether it must decode.
type fuzzSeed struct {
	name, text string
	accept     bool
}

func fuzzSeeds(t testing.TB) []fuzzSeed {
	b64 := base64.StdEncoding.EncodeToString
	derived, err := EncodeContainerInfo(mustDerive(t))
	if err != nil {
		t.Fatal(err)
	}
	user, userBytes := rawEncode(t, userContainerInfo())

	// A tower of unknown length-delimited fields (field 15), each inside
	// the previous one: unknown fields are skipped whole, so this decodes.
	tower := []byte{}
	for i := 0; i < 300; i++ {
		tower = append(append([]byte{0x7a}, appendVarint(nil, uint64(len(tower)))...), tower...)
	}
	// type=MESOS, then one volume whose secret reference lacks its
	// required name.
	noRefName := []byte{0x08, 0x02, 0x12, 0x10, 0x18, 0x02, 0x0a, 0x02, '/', 'x', 0x2a, 0x08, 0x08, 0x03, 0x22, 0x04, 0x08, 0x01, 0x12, 0x00}

	return []fuzzSeed{
		{"valid-derived", derived, true},
		{"valid-user", user, true},
		{"valid-whitespace", "\n  " + user + "\t\n", true},
		{"empty", "", false},
		{"malformed-base64", "not*base64!", false},
		{"malformed-base64-padding", "CAI", false},
		{"malformed-base64-url-alphabet", "-_-_", false},
		{"truncated-protobuf", b64(userBytes[:len(userBytes)-5]), false},
		{"truncated-varint", b64([]byte{0x08, 0x82}), false},
		{"hostile-huge-length", b64([]byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), false},
		{"hostile-length-overflow", b64([]byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), false},
		{"hostile-long-varint", b64(append([]byte{0x08}, bytes.Repeat([]byte{0x80}, 12)...)), false},
		{"hostile-deep-groups", b64(append([]byte{0x08, 0x02}, bytes.Repeat([]byte{0x7b}, 20000)...)), false},
		{"hostile-deep-unknown", b64(append([]byte{0x08, 0x02}, tower...)), true},
		{"hostile-wrong-wire-type", b64([]byte{0x08, 0x02, 0x10, 0x01}), false},
		{"hostile-type-as-bytes", b64([]byte{0x0a, 0x01, 0x02}), false},
		{"hostile-fixed64-truncated", b64([]byte{0x08, 0x02, 0x79, 0x01}), false},
		{"hostile-field-zero", b64([]byte{0x00, 0x00}), false},
		{"unknown-type-enum", b64([]byte{0x08, 0x07}), false},
		{"missing-required-name", b64(noRefName), false},
		{"oversize", string(bytes.Repeat([]byte("A"), MaxAnnotationBytes+1)), false},
	}
}

func mustDerive(t testing.TB) *mesos.ContainerInfo {
	pod := testPod()
	vols, err := checkPodVolumes(pod)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := deriveContainerInfo(pod, &pod.Spec.Containers[0], vols)
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// The committed corpus must hold every seed, unchanged; with
// VKT_WRITE_FUZZ_SEEDS=1 the test rewrites it first.
func TestFuzzSeedsCommitted(t *testing.T) {
	seeds := fuzzSeeds(t)
	entries := make([]corpusEntry, len(seeds))
	for i, s := range seeds {
		entries[i] = corpusEntry{s.name, []any{s.text}}
	}
	checkCorpus(t, "FuzzDecodeContainerInfo", entries)
	for _, s := range seeds {
		if _, err := DecodeContainerInfo(s.text); s.accept != (err == nil) {
			t.Errorf("seed %s: err = %v", s.name, err)
		}
	}
}

// corpusEntry is one committed seed of a fuzz target: its file name and
// the target's arguments.
type corpusEntry struct {
	name string
	args []any
}

// checkCorpus asserts that testdata/fuzz/<target> holds every entry as go
// test writes it, unchanged, after rewriting them when
// VKT_WRITE_FUZZ_SEEDS is set.
func checkCorpus(t *testing.T, target string, entries []corpusEntry) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	write := os.Getenv("VKT_WRITE_FUZZ_SEEDS") != ""
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		want := encodeCorpusEntry(t, e.args)
		file := filepath.Join(dir, e.name)
		if write {
			if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("seed %s: %v", e.name, err)
			continue
		}
		if string(b) != want {
			t.Errorf("seed %s of %s is stale: regenerate with VKT_WRITE_FUZZ_SEEDS=1", e.name, target)
		}
	}
}

// encodeCorpusEntry writes arguments as go test writes a corpus file
// (internal/fuzz/encoding.go).
func encodeCorpusEntry(t *testing.T, args []any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			t.Fatalf("corpus argument of type %T", a)
		}
	}
	return b.String()
}
