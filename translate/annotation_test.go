package translate

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// The annotation written for a pod without one must reproduce the same
// container when read back, and be written only once.
func TestRoundTripDerivedAnnotation(t *testing.T) {
	pod := testPod()
	r := newResolver()

	first, ann, err := PodLaunches(pod, r)
	if err != nil {
		t.Fatalf("PodLaunches: %v", err)
	}
	if ann == "" {
		t.Fatal("no annotation returned for a pod without one")
	}
	derived, err := DecodeContainerInfo(ann)
	if err != nil {
		t.Fatalf("decode returned annotation: %v", err)
	}

	pod.Annotations[AnnotationContainerInfo] = ann
	second, ann2, err := PodLaunches(pod, r)
	if err != nil {
		t.Fatalf("PodLaunches with annotation: %v", err)
	}
	if ann2 != "" {
		t.Errorf("annotation returned although present: %q", ann2)
	}
	fromPod, present, err := ContainerInfoFromAnnotation(pod)
	if err != nil || !present {
		t.Fatalf("ContainerInfoFromAnnotation: present=%v err=%v", present, err)
	}
	if !derived.Equal(fromPod) {
		t.Errorf("main ContainerInfo changed across the round trip:\n%v\n%v", derived, fromPod)
	}
	reenc, err := EncodeContainerInfo(fromPod)
	if err != nil {
		t.Fatal(err)
	}
	if reenc != ann {
		t.Errorf("annotation text not byte-identical:\n%s\n%s", ann, reenc)
	}
	if len(first) != len(second) {
		t.Fatalf("launch count %d then %d", len(first), len(second))
	}
	for i := range first {
		a, b := first[i], second[i]
		if a.ContainerID != b.ContainerID || !a.Container.Equal(b.Container) || !a.Command.Equal(b.Command) || a.KillGrace != b.KillGrace {
			t.Errorf("launch %d (%s) differs across the round trip", i, a.ContainerName)
		}
	}
}

// A legacy spec carries fields the derivation never produces; with a pod
// spec that grants them, they must reach the agent exactly as written.
func TestUserAnnotationSurvivesByteForByte(t *testing.T) {
	user := admittedUserContainerInfo()
	ann, orig := rawEncode(t, user)

	pod := privilegedTestPod()
	pod.Annotations[AnnotationContainerInfo] = "\n  " + ann + "\n" // tolerated whitespace
	ls, out, err := PodLaunches(pod, newResolver())
	if err != nil {
		t.Fatalf("PodLaunches: %v", err)
	}
	if out != "" {
		t.Errorf("annotation returned although present")
	}

	decoded, err := DecodeContainerInfo(ann)
	if err != nil {
		t.Fatal(err)
	}
	again, err := decoded.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, orig) {
		t.Errorf("decode+marshal changed the bytes:\n%x\n%x", orig, again)
	}
	if !decoded.Equal(user) {
		t.Errorf("decoded message differs from the original")
	}

	main := mainLaunch(t, ls)
	if main.ContainerName != "web" {
		t.Fatalf("main launch is %q", main.ContainerName)
	}
	c := main.Container
	// Everything but the volumes is the user's, untouched.
	withoutVolumes := func(ci *mesos.ContainerInfo) *mesos.ContainerInfo { cp := *ci; cp.Volumes = nil; return &cp }
	if !withoutVolumes(c).Equal(withoutVolumes(user)) {
		t.Errorf("launch ContainerInfo differs from the annotation outside volumes:\n%v", c)
	}
	// The config map reference became one VALUE volume per key, in key order;
	// the host path is untouched.
	want := []string{"/etc/app/app.yaml", "/etc/app/log.level", "/var/log/host"}
	if got := containerPaths(c); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("volumes %v, want %v", got, want)
	}
	if s := c.Volumes[0].Source.Secret; s.Type != mesos.Secret_VALUE || string(s.Value.Data) != "port: 8080\n" {
		t.Errorf("app.yaml not resolved: %v", s)
	}
	if !c.Volumes[2].Equal(&user.Volumes[1]) {
		t.Errorf("host path volume changed: %v", c.Volumes[2])
	}
	// Resolution happened in a copy.
	if user.Volumes[0].Source.Secret.Type != mesos.Secret_REFERENCE {
		t.Error("resolution mutated the caller's message")
	}
	fromPod, _, _ := ContainerInfoFromAnnotation(pod)
	if !fromPod.Equal(user) {
		t.Error("annotation on the pod no longer decodes to the user's message")
	}
}

// gogo's generated Marshal writes fields in number order and mesos.proto's
// ContainerInfo reaches no map fields, so encoding is deterministic.
func TestEncodeDeterministic(t *testing.T) {
	ci := userContainerInfo()
	first, err := EncodeContainerInfo(ci)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		s, err := EncodeContainerInfo(userContainerInfo())
		if err != nil || s != first {
			t.Fatalf("encoding %d differs (err %v)", i, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, _ := rawEncode(t, userContainerInfo())
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	enc := func(ci *mesos.ContainerInfo) string { s, _ := rawEncode(t, ci); return s }
	docker := mesos.ContainerInfo_DOCKER
	mesosType := mesos.ContainerInfo_MESOS
	unknownType := mesos.ContainerInfo_Type(9)

	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"blank", " \n\t", "empty"},
		{"oversize", strings.Repeat("A", MaxAnnotationBytes+1), "262145 bytes, over the 262144-byte limit"},
		{"not base64", "!!not*base64!!", "not base64"},
		{"url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(b64([]byte{0xfb, 0xff, 0xfe, 0x08, 0x02})), "not base64"},
		{"truncated", valid[:len(valid)-8], "malformed protobuf"},
		{"no type", b64([]byte{0x22, 0x01, 'h'}), "type"},
		{"unknown type", enc(&mesos.ContainerInfo{Type: &unknownType}), "unknown container type 9"},
		{"docker without info", enc(&mesos.ContainerInfo{Type: &docker}), "no docker info"},
		{"docker empty image", enc(&mesos.ContainerInfo{Type: &docker, Docker: &mesos.ContainerInfo_DockerInfo{Image: " "}}), "empty image name"},
		{"mesos with docker info", enc(&mesos.ContainerInfo{Type: &mesosType, Docker: &mesos.ContainerInfo_DockerInfo{Image: "x"}}), "also carries docker info"},
		{"mesos image without name", enc(&mesos.ContainerInfo{Type: &mesosType, Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{}}}}), "DOCKER image has no name"},
		{"volume escapes sandbox", enc(&mesos.ContainerInfo{Type: &mesosType, Volumes: []mesos.Volume{{
			Mode: mesos.RW.Enum(), ContainerPath: "/x",
			Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SANDBOX_PATH, SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_SELF, Path: "a/../../etc"}},
		}}}), "leaves the sandbox"},
		{"secret without reference", enc(&mesos.ContainerInfo{Type: &mesosType, Volumes: []mesos.Volume{{
			Mode: mesos.RO.Enum(), ContainerPath: "/x",
			Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET, Secret: &mesos.Secret{Type: mesos.Secret_REFERENCE}},
		}}}), "REFERENCE secret has no name"},
		// type=MESOS, then volumes (field 2) with a length of MaxInt64.
		{"huge length", b64([]byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), "runs past"},
		{"length overflows int", b64([]byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "runs past"},
		{"varint too long", b64(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 11)...)), "varint"},
		{"wrong wire type", b64([]byte{0x08, 0x02, 0x10, 0x01}), "wireType"},
		{"group nesting", b64(append([]byte{0x08, 0x02}, bytes.Repeat([]byte{0x7b}, 10000)...)), "groups"},
		{"field zero", b64([]byte{0x00, 0x01}), "illegal field number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ci, err := DecodeContainerInfo(tc.in)
			if err == nil {
				t.Fatalf("accepted: %v", ci)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// The generated decoder really does panic on the overflowing length that
// checkWire turns away; if mesos-go is ever regenerated with the fix, this
// test says the guard can go.
func TestGeneratedDecoderNeedsGuard(t *testing.T) {
	hostile := []byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		_ = new(mesos.ContainerInfo).Unmarshal(hostile)
		return false
	}()
	if !panicked {
		t.Log("mesos-go's decoder no longer panics on an overflowing length")
	}
	if _, err := DecodeContainerInfo(base64.StdEncoding.EncodeToString(hostile)); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("hostile input not refused: %v", err)
	}
}

func TestDecodeAtLimit(t *testing.T) {
	// A valid annotation padded with whitespace right up to the limit is
	// accepted; one byte more is not, before any decoding.
	valid, _ := rawEncode(t, userContainerInfo())
	padded := valid + strings.Repeat(" ", MaxAnnotationBytes-len(valid))
	if _, err := DecodeContainerInfo(padded); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := DecodeContainerInfo(padded + " "); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	if _, err := EncodeContainerInfo(nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("nil: %v", err)
	}
	if _, err := EncodeContainerInfo(&mesos.ContainerInfo{}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("no type: %v", err)
	}
	big := &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: &mesos.ContainerInfo_DockerInfo{Image: strings.Repeat("x", MaxAnnotationBytes)}}
	if _, err := EncodeContainerInfo(big); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversize: %v", err)
	}
}

func TestContainerInfoFromAnnotation(t *testing.T) {
	pod := testPod()
	if ci, present, err := ContainerInfoFromAnnotation(pod); ci != nil || present || err != nil {
		t.Errorf("absent: %v %v %v", ci, present, err)
	}
	pod.Annotations[AnnotationContainerInfo] = "%%%"
	if _, present, err := ContainerInfoFromAnnotation(pod); !present || !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("invalid: present=%v err=%v", present, err)
	}
	if _, _, err := PodLaunches(pod, newResolver()); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("PodLaunches with invalid annotation: %v", err)
	}
}

func containerPaths(ci *mesos.ContainerInfo) []string {
	out := make([]string, len(ci.Volumes))
	for i, v := range ci.Volumes {
		out[i] = v.ContainerPath
	}
	return out
}
