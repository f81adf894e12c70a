package translate

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func onePod(c corev1.Container) *corev1.Pod {
	if c.Name == "" {
		c.Name = "main"
	}
	if c.Image == "" {
		c.Image = "busybox:1.36"
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team", UID: testUID},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
	}
}

func launchOf(t *testing.T, pod *corev1.Pod) Launch {
	t.Helper()
	assertRoundTrip(t, pod)
	ls, _, err := PodLaunches(pod, newResolver())
	if err != nil {
		t.Fatalf("PodLaunches: %v", err)
	}
	return mainLaunch(t, ls)
}

func TestCommandMapping(t *testing.T) {
	env := []corev1.EnvVar{{Name: "TARGET", Value: "world"}}
	tests := []struct {
		name      string
		c         corev1.Container
		value     *string
		arguments []string
	}{
		{"neither: image default", corev1.Container{}, nil, nil},
		{"command only", corev1.Container{Command: []string{"/bin/echo", "hi"}}, strPtr("/bin/echo"), []string{"/bin/echo", "hi"}},
		{"command and args", corev1.Container{Command: []string{"/bin/echo"}, Args: []string{"a", "b"}}, strPtr("/bin/echo"), []string{"/bin/echo", "a", "b"}},
		{"args only: entrypoint + args", corev1.Container{Args: []string{"--verbose", "x"}}, nil, []string{"--verbose", "x"}},
		{"expansion", corev1.Container{Env: env, Command: []string{"/bin/echo"}, Args: []string{"hello $(TARGET)", "$(MISSING)", "$$(TARGET)", "$$", "$x", "$(unterminated"}},
			strPtr("/bin/echo"), []string{"/bin/echo", "hello world", "$(MISSING)", "$(TARGET)", "$", "$x", "$(unterminated"}},
		{"workingDir wraps in sh", corev1.Container{WorkingDir: "/srv/app", Command: []string{"./run"}, Args: []string{"--fast"}},
			strPtr("/bin/sh"), []string{"sh", "-c", workdirScript, "vk-titus-workdir", "/srv/app", "./run", "--fast"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := launchOf(t, onePod(tc.c)).Command
			if cmd.Shell == nil || *cmd.Shell {
				t.Errorf("shell must be explicitly false (Mesos defaults it to true): %v", cmd.Shell)
			}
			if !reflect.DeepEqual(cmd.Value, tc.value) {
				t.Errorf("value %v, want %v", deref(cmd.Value), deref(tc.value))
			}
			if !reflect.DeepEqual(cmd.Arguments, tc.arguments) {
				t.Errorf("arguments %q, want %q", cmd.Arguments, tc.arguments)
			}
		})
	}
}

func TestWorkingDirWithoutCommandRefused(t *testing.T) {
	_, _, err := PodLaunches(onePod(corev1.Container{WorkingDir: "/srv", Args: []string{"x"}}), nil)
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "workingDir") {
		t.Fatalf("err = %v", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestEnvironment(t *testing.T) {
	c := corev1.Container{Env: []corev1.EnvVar{
		{Name: "ZED", Value: "last"},
		{Name: "ALPHA", Value: "1"},
		{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
		{Name: "EMPTY", Value: ""},
		{Name: "ALPHA", Value: "2"},
	}}
	cmd := launchOf(t, onePod(c)).Command
	var got []string
	for _, v := range cmd.Environment.Variables {
		if v.Type == nil || *v.Type != mesos.Environment_Variable_VALUE || v.Value == nil || v.Secret != nil {
			t.Errorf("%s: not a plain VALUE variable: %v", v.Name, v)
			continue
		}
		got = append(got, v.Name+"="+*v.Value)
	}
	want := []string{"ALPHA=2", "EMPTY=", "ZED=last"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("env %q, want %q", got, want)
	}
	if launchOf(t, onePod(corev1.Container{})).Command.Environment != nil {
		t.Error("environment set for a container without env")
	}
}

func TestUser(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		pod, cont *int64
		want      *string
	}{
		{"none", nil, nil, nil},
		{"pod", u(1000), nil, strPtr("1000")},
		{"container wins", u(1000), u(0), strPtr("0")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := onePod(corev1.Container{})
			if tc.pod != nil {
				pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: tc.pod}
			}
			if tc.cont != nil {
				pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: tc.cont}
			}
			if got := launchOf(t, pod).Command.User; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("user %v, want %v", deref(got), deref(tc.want))
			}
		})
	}
}

func TestKillGrace(t *testing.T) {
	s := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		in   *int64
		want time.Duration
	}{{nil, 30 * time.Second}, {s(5), 5 * time.Second}, {s(0), 0}, {s(-3), 0}} {
		pod := onePod(corev1.Container{})
		pod.Spec.TerminationGracePeriodSeconds = tc.in
		if got := launchOf(t, pod).KillGrace; got != tc.want {
			t.Errorf("grace %v → %v, want %v", tc.in, got, tc.want)
		}
	}
}

func scalars(rs []mesos.Resource) map[string]float64 {
	out := map[string]float64{}
	for _, r := range rs {
		if r.Type == nil || *r.Type != mesos.SCALAR || r.Scalar == nil || r.Role != nil || r.Reservation != nil {
			continue
		}
		out[r.Name] = r.Scalar.Value
	}
	return out
}

func TestResources(t *testing.T) {
	rl := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = quantity(kv[i+1])
		}
		return l
	}
	tests := []struct {
		name string
		rr   corev1.ResourceRequirements
		want map[string]float64
	}{
		{"defaults", corev1.ResourceRequirements{}, map[string]float64{"cpus": 0.1, "mem": 32}},
		{"requests", corev1.ResourceRequirements{Requests: rl("cpu", "250m", "memory", "100M")}, map[string]float64{"cpus": 0.25, "mem": 96}},
		{"limits win", corev1.ResourceRequirements{Requests: rl("cpu", "250m", "memory", "64Mi"), Limits: rl("cpu", "2", "memory", "1Gi")}, map[string]float64{"cpus": 2, "mem": 1024}},
		{"zero limit falls back", corev1.ResourceRequirements{Requests: rl("cpu", "300m"), Limits: rl("cpu", "0")}, map[string]float64{"cpus": 0.3, "mem": 32}},
		{"disk and gpus", corev1.ResourceRequirements{Limits: rl("ephemeral-storage", "2Gi", "nvidia.com/gpu", "2"), Requests: rl("memory", "256Mi")},
			map[string]float64{"cpus": 0.1, "mem": 256, "disk": 2048, "gpus": 2}},
		// Past int64 millicores the count would overflow (negative cpus): held
		// at the largest instead, for the agent to refuse.
		{"huge limit held, never negative", corev1.ResourceRequirements{Limits: rl("cpu", "9223372036854775807", "memory", "100E")},
			map[string]float64{"cpus": float64(math.MaxInt64) / 1000, "mem": math.Ceil(float64(math.MaxInt64) / mib)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := scalars(launchOf(t, onePod(corev1.Container{Resources: tc.rr})).Resources)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("resources %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPodResources(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	c := func(cpu, mem string) corev1.Container {
		return corev1.Container{Name: "c" + cpu + mem, Image: "x", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: quantity(cpu), corev1.ResourceMemory: quantity(mem)},
		}}
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{c("100m", "100Mi"), c("200m", "100Mi")},
	}}
	check := func(name string, cpus, mem float64) {
		t.Helper()
		gc, gm, _, _ := PodResources(pod)
		if gc != cpus || gm != mem {
			t.Errorf("%s: cpus %v mem %v, want %v %v", name, gc, gm, cpus, mem)
		}
	}
	check("apps sum", 0.3, 200)

	pod.Spec.InitContainers = []corev1.Container{c("1", "50Mi")}
	check("big init container dominates cpu only", 1, 200)

	sidecar := c("500m", "10Mi")
	sidecar.RestartPolicy = &always
	pod.Spec.InitContainers = []corev1.Container{sidecar, c("1", "50Mi")}
	// apps+sidecar = 0.8 cpu / 210 Mi; init after the sidecar = 1.5 / 60.
	check("sidecar adds to both", 1.5, 210)

	pod.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: quantity("250m"), corev1.ResourceMemory: quantity("20Mi")}
	check("overhead", 1.75, 230)

	if a, b, c, d := PodResources(nil); a+b+c+d != 0 {
		t.Error("nil pod")
	}
}

func TestLaunchOrderAndIDs(t *testing.T) {
	pod := testPod()
	ls, _, err := PodLaunches(pod, newResolver())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.ContainerName)
		uid, name, ok := ParseContainerID(l.ContainerID)
		if !ok || uid != pod.UID || name != l.ContainerName {
			t.Errorf("%s: container id %q parses to %q %q %v", l.ContainerName, l.ContainerID, uid, name, ok)
		}
		if l.KillGrace != 45*time.Second {
			t.Errorf("%s: grace %v", l.ContainerName, l.KillGrace)
		}
		if l.Container.GetHostname() != "web-7d9f" {
			t.Errorf("%s: hostname %q", l.ContainerName, l.Container.GetHostname())
		}
		img := l.Container.GetMesos().GetImage()
		if l.Container.GetType() != mesos.ContainerInfo_MESOS || img.GetType() != mesos.Image_DOCKER || img.GetDocker().Name == "" {
			t.Errorf("%s: not a MESOS container with a docker image: %v", l.ContainerName, l.Container)
		}
	}
	if want := []string{"migrate", "web", "sidecar"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if !ls[0].Init || ls[1].Init || ls[2].Init {
		t.Error("init flags wrong")
	}
	if ls[2].Container.TTYInfo == nil || ls[1].Container.TTYInfo != nil {
		t.Error("tty only for the sidecar")
	}
}

func TestHostname(t *testing.T) {
	pod := onePod(corev1.Container{})
	pod.Name = strings.Repeat("a", 62) + "-b"
	if h := launchOf(t, pod).Container.GetHostname(); h != strings.Repeat("a", 62) {
		t.Errorf("truncated hostname %q", h)
	}
	pod.Spec.Hostname = "explicit"
	if h := launchOf(t, pod).Container.GetHostname(); h != "explicit" {
		t.Errorf("hostname %q", h)
	}
}

func TestPodLaunchesInvalid(t *testing.T) {
	if _, _, err := PodLaunches(nil, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("nil pod: %v", err)
	}
	pod := onePod(corev1.Container{})
	pod.Spec.Containers = nil
	if _, _, err := PodLaunches(pod, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("no containers: %v", err)
	}
	pod = onePod(corev1.Container{})
	pod.Spec.Containers[0].Image = ""
	if _, _, err := PodLaunches(pod, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("no image: %v", err)
	}
}
