package translate

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
)

// Bounds on what one fuzz input may build, so that an input runs in
// milliseconds; a pod past them would not fit in etcd's 1.5 MiB anyway.
const (
	maxFuzzContainers = 512
	maxFuzzEnv        = 8192
)

// Fill modes of FuzzPodLaunches.
const (
	fillNone        = iota
	fillAnnotations // the pod's annotations padded to the API's 256 KiB total
	fillAtLimit     // the container-info annotation padded to MaxAnnotationBytes
	fillOverLimit   // ... and one byte more
	fillModes       // how many there are
)

const (
	fillPadKey       = "fuzz.vk-titus.io/padding"
	fuzzEnvValueSize = 64
)

// FuzzPodLaunches admits hostile pods as the provider does: the pod as
// JSON (a plain pod when it does not parse), the container-info annotation
// ("" for none), copies of the first container to add, env vars to give it,
// and a fill mode. Seeds: testdata/fuzz/FuzzPodLaunches (regenerate with
// VKT_WRITE_FUZZ_SEEDS=1 go test -run TestPodFuzzSeeds ./translate/).
func FuzzPodLaunches(f *testing.F) {
	f.Fuzz(func(t *testing.T, podJSON []byte, annotation string, containers, envVars uint16, fill byte) {
		checkLaunchProperty(t, hostilePod(podJSON, annotation, containers, envVars, fill))
	})
}

func hostilePod(podJSON []byte, annotation string, containers, envVars uint16, fill byte) *corev1.Pod {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(podJSON, pod); err != nil {
		pod = onePod(corev1.Container{})
	}
	if annotation != "" {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[AnnotationContainerInfo] = annotation
	}
	if len(pod.Spec.Containers) > 0 {
		first := pod.Spec.Containers[0]
		for i := range int(min(containers, maxFuzzContainers)) {
			c := *first.DeepCopy()
			c.Name = fmt.Sprintf("%s-%d", first.Name, i)
			pod.Spec.Containers = append(pod.Spec.Containers, c)
		}
		c := &pod.Spec.Containers[0]
		for i := range int(min(envVars, maxFuzzEnv)) {
			// Each value refers to the one before: expansion must stay linear.
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("E%d", i), Value: strings.Repeat("v", fuzzEnvValueSize) + fmt.Sprintf("$(E%d)", i-1)})
			c.Args = append(c.Args, fmt.Sprintf("$(E%d)", i))
		}
	}
	switch fill % fillModes {
	case fillAnnotations:
		total := len(fillPadKey)
		for k, v := range pod.Annotations {
			total += len(k) + len(v)
		}
		if pad := apivalidation.TotalAnnotationSizeLimitB - total; pad > 0 {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[fillPadKey] = strings.Repeat("p", pad)
		}
	case fillAtLimit, fillOverLimit:
		if s, ok := pod.Annotations[AnnotationContainerInfo]; ok && len(s) < MaxAnnotationBytes {
			pad := MaxAnnotationBytes - len(s)
			if fill%fillModes == fillOverLimit {
				pad++
			}
			pod.Annotations[AnnotationContainerInfo] = s + strings.Repeat(" ", pad)
		}
	}
	return pod
}

// checkLaunchProperty is what FuzzPodLaunches asserts: PodLaunches does not
// panic and leaves the pod alone; it fails with nothing else returned, or it
// returns one valid launch per container, each within what the spec grants.
func checkLaunchProperty(t *testing.T, pod *corev1.Pod) {
	before := pod.DeepCopy()
	ls, ann, err := PodLaunches(pod, newResolver())
	if !reflect.DeepEqual(before, pod) {
		t.Fatal("PodLaunches changed the pod")
	}
	if err != nil {
		if ls != nil || ann != "" {
			t.Fatalf("error %v with launches or an annotation", err)
		}
		var pe *PolicyError
		if errors.As(err, &pe) && !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("a PolicyError that is not an ErrInvalidSpec: %v", err)
		}
		if err.Error() == "" {
			t.Fatal("an error without a message")
		}
		return
	}
	spec := &pod.Spec
	if len(ls) != len(spec.InitContainers)+len(spec.Containers) {
		t.Fatalf("%d launches for %d+%d containers", len(ls), len(spec.InitContainers), len(spec.Containers))
	}
	vols, err := checkPodVolumes(pod)
	if err != nil {
		t.Fatalf("launched a pod whose volumes are refused: %v", err)
	}
	pol := &policy{pod: pod, vols: vols}
	byName := make(map[string]*corev1.Container, len(ls))
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			byName[cs[i].Name] = &cs[i]
		}
	}
	ids := make(map[string]bool, len(ls))
	for _, l := range ls {
		c := byName[l.ContainerName]
		switch {
		case c == nil:
			t.Fatalf("launch of unknown container %q", l.ContainerName)
		case ids[l.ContainerID]:
			t.Fatalf("container id %q launched twice", l.ContainerID)
		case l.Command == nil || l.Container == nil:
			t.Fatalf("%s: launch without command or container", l.ContainerName)
		}
		ids[l.ContainerID] = true
		if err := validateContainerInfo(l.Container); err != nil {
			t.Fatalf("%s: launched a container the master would refuse: %v", l.ContainerName, err)
		}
		if err := pol.check(c, l.Container, l.Command); err != nil {
			t.Fatalf("%s: launched more than the spec grants: %v", l.ContainerName, err)
		}
		if s := scalars(l.Resources); s["cpus"] <= 0 || s["mem"] <= 0 {
			t.Fatalf("%s: resources %v", l.ContainerName, s)
		}
	}
	_, present := pod.Annotations[AnnotationContainerInfo]
	if present != (ann == "") {
		t.Fatalf("annotation present %v, returned %q", present, ann)
	}
	if ann != "" {
		ci, err := DecodeContainerInfo(ann)
		if err != nil {
			t.Fatalf("returned annotation does not decode: %v", err)
		}
		if err := pol.check(&spec.Containers[0], ci, nil); err != nil {
			t.Fatalf("returned annotation fails the policy: %v", err)
		}
	}
}

// podFuzzSeed is one committed seed of FuzzPodLaunches; want is "" when the
// pod must launch, else a piece of the error.
type podFuzzSeed struct {
	name       string
	pod        []byte
	annotation string
	containers uint16
	envVars    uint16
	fill       byte
	want       string
}

func podFuzzSeeds(t *testing.T) []podFuzzSeed {
	js := func(pod *corev1.Pod) []byte {
		b, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	enc := func(ci *mesos.ContainerInfo) string {
		s, _ := rawEncode(t, ci)
		return s
	}
	hostEtc := func() *mesos.ContainerInfo {
		ci, _ := policyLaunch(t, policyPod())
		ci.Volumes = []mesos.Volume{hostPathVolume("/etc", "hostetc", mesos.RO)}
		return ci
	}
	withHostEtc := policyPod()
	mountHostPath(withHostEtc, "/etc", corev1.VolumeMount{MountPath: "hostetc", ReadOnly: true})
	crossNS, _ := policyLaunch(t, policyPod())
	crossNS.Volumes = []mesos.Volume{secretVolume("secret:kube-system/bootstrap-token")}
	plain, _ := policyLaunch(t, policyPod())
	garbage := base64.StdEncoding.EncodeToString([]byte{0x08, 0x02, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})

	return []podFuzzSeed{
		{name: "derived-test-pod", pod: js(testPod())},
		{name: "granted-legacy-annotation", pod: js(privilegedTestPod()), annotation: enc(admittedUserContainerInfo())},
		{name: "refused-legacy-annotation", pod: js(testPod()), annotation: enc(userContainerInfo()), want: "container-info: docker.image"},
		{name: "refused-host-path", pod: js(policyPod()), annotation: enc(hostEtc()), want: "container-info: volumes[0] HOST_PATH /etc"},
		{name: "granted-host-path", pod: js(withHostEtc), annotation: enc(hostEtc())},
		{name: "refused-cross-namespace-secret", pod: js(policyPod()), annotation: enc(crossNS), want: "references must stay in the pod's namespace"},
		{name: "many-containers", pod: js(policyPod()), containers: maxFuzzContainers},
		{name: "huge-env", pod: js(policyPod()), envVars: maxFuzzEnv},
		{name: "many-containers-huge-env-full-annotations", pod: js(testPod()), containers: 200, envVars: 1000, fill: fillAnnotations},
		{name: "annotations-at-api-limit", pod: js(testPod()), fill: fillAnnotations},
		{name: "container-info-at-limit", pod: js(policyPod()), annotation: enc(plain), fill: fillAtLimit},
		{name: "container-info-over-limit", pod: js(policyPod()), annotation: enc(plain), fill: fillOverLimit, want: "over the 262144-byte limit"},
		{name: "bad-base64", pod: js(policyPod()), annotation: "not*base64!", want: "is not base64"},
		{name: "garbage-protobuf", pod: js(policyPod()), annotation: garbage, want: "malformed protobuf"},
		{name: "not-json", pod: []byte("{{{"), containers: 3},
		{name: "no-containers", pod: []byte(`{"metadata":{"name":"p","namespace":"team"}}`), want: "has no containers"},
		{name: "null-container", pod: []byte(`{"spec":{"containers":[null]}}`), want: `container name ""`},
		{name: "odd-container-name", pod: []byte(`{"metadata":{"name":"p","namespace":"team"},"spec":{"containers":[{"name":"../../etc","image":"busybox"}]}}`), want: `container name "../../etc"`},
		{name: "unicode-container-name", pod: []byte(`{"spec":{"containers":[{"name":"wéb","image":"busybox"}]}}`), want: `container name "wéb"`},
		{name: "duplicate-container-name", pod: []byte(`{"spec":{"initContainers":[{"name":"a","image":"x"}],"containers":[{"name":"a","image":"x"}]}}`), want: `container name "a" is used twice`},
		{name: "odd-volume-name", pod: []byte(`{"spec":{"volumes":[{"name":"../stdout","emptyDir":{}}],"containers":[{"name":"a","image":"x","volumeMounts":[{"name":"../stdout","mountPath":"/x"}]}]}}`), want: `volume name "../stdout"`},
		{name: "empty-host-path", pod: []byte(`{"spec":{"volumes":[{"name":"h","hostPath":{"path":""}}],"initContainers":[{"name":"i","image":"x","volumeMounts":[{"name":"h","mountPath":"/h"}]}],"containers":[{"name":"a","image":"x"}]}}`), want: "HOST_PATH source has no path"},
		{name: "hostile-quantities", pod: []byte(`{"spec":{"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"9223372036854775807","memory":"1E","nvidia.com/gpu":"-1","ephemeral-storage":"1e-9"}}}]}}`)},
	}
}

// The committed corpus holds every seed, unchanged, and each seed does
// what it is there to show.
func TestPodFuzzSeeds(t *testing.T) {
	seeds := podFuzzSeeds(t)
	entries := make([]corpusEntry, len(seeds))
	for i, s := range seeds {
		entries[i] = corpusEntry{s.name, []any{s.pod, s.annotation, s.containers, s.envVars, s.fill}}
	}
	checkCorpus(t, "FuzzPodLaunches", entries)
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			_, _, err := PodLaunches(hostilePod(s.pod, s.annotation, s.containers, s.envVars, s.fill), newResolver())
			switch {
			case s.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)):
				t.Errorf("err = %v, want one mentioning %q", err, s.want)
			}
		})
	}
}
