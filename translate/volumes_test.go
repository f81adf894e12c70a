package translate

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// describe renders a volume as "path mode kind detail" for compact tables.
func describe(v mesos.Volume) string {
	mode := "?"
	if v.Mode != nil {
		mode = v.Mode.String()
	}
	s := v.Source
	switch {
	case s == nil:
		return fmt.Sprintf("%s %s none", v.ContainerPath, mode)
	case s.Type == mesos.Volume_Source_SANDBOX_PATH:
		return fmt.Sprintf("%s %s sandbox:%s:%s", v.ContainerPath, mode, s.SandboxPath.Type, s.SandboxPath.Path)
	case s.Type == mesos.Volume_Source_HOST_PATH:
		return fmt.Sprintf("%s %s host:%s", v.ContainerPath, mode, s.HostPath.Path)
	case s.Type == mesos.Volume_Source_SECRET && s.Secret.Type == mesos.Secret_VALUE:
		return fmt.Sprintf("%s %s value:%q", v.ContainerPath, mode, s.Secret.Value.Data)
	case s.Type == mesos.Volume_Source_SECRET && s.Secret.Type == mesos.Secret_REFERENCE:
		return fmt.Sprintf("%s %s ref:%s#%s", v.ContainerPath, mode, s.Secret.Reference.Name, s.Secret.Reference.GetKey())
	}
	return fmt.Sprintf("%s %s %v", v.ContainerPath, mode, s)
}

func describeAll(vs []mesos.Volume) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = describe(v)
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestVolumesOfTestPod(t *testing.T) {
	pod := testPod()
	r := newResolver()
	ls, ann, err := PodLaunches(pod, r)
	if err != nil {
		t.Fatal(err)
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount"
	ca := `"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"`

	sameLines(t, "init container", describeAll(ls[0].Container.Volumes), []string{
		`/etc/creds/db/password RO value:"hunter2-s3cret"`,
	})
	sameLines(t, "main container (launch)", describeAll(ls[1].Container.Volumes), []string{
		`/scratch RW sandbox:SELF:volumes/scratch`,
		`/etc/app/app.yaml RO value:"port: 8080\n"`,
		`/etc/app/log.level RO value:"debug"`,
		`/etc/creds/db/password RO value:"hunter2-s3cret"`,
		`/etc/podinfo/labels RO value:"app=\"web\"\ntier=\"front\""`,
		`/etc/podinfo/name RO value:"web-7d9f"`,
		`/var/log/host RO host:/var/log`,
		sa + `/ca.crt RO value:` + ca,
		sa + `/namespace RO value:"team"`,
	})
	sameLines(t, "sidecar (subPath file)", describeAll(ls[2].Container.Volumes), []string{
		`/etc/proxy/app.yaml RO value:"port: 8080\n"`,
	})

	// The annotation holds references only.
	annCI, err := DecodeContainerInfo(ann)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "main container (annotation)", describeAll(annCI.Volumes), []string{
		`/scratch RW sandbox:SELF:volumes/scratch`,
		`/etc/app RO ref:configmap:team/app-config#`,
		`/etc/creds/db/password RO ref:secret:team/db-creds#password`,
		`/etc/podinfo/labels RO ref:downward:metadata.labels#`,
		`/etc/podinfo/name RO ref:downward:metadata.name#`,
		`/var/log/host RO host:/var/log`,
		sa + `/ca.crt RO ref:configmap:team/kube-root-ca.crt#ca.crt`,
		sa + `/namespace RO ref:downward:metadata.namespace#`,
	})
	assertNoSecretValues(t, ann, "hunter2-s3cret")

	// Each object is read once per translation, however often it is mounted.
	if r.reads != 3 {
		t.Errorf("resolver read %d objects, want 3", r.reads)
	}
}

// assertNoSecretValues fails when the annotation carries a VALUE secret or
// the secret's text anywhere.
func assertNoSecretValues(t *testing.T, ann, secret string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(ann)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Error("secret data found in the annotation")
	}
	ci, err := DecodeContainerInfo(ann)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range ci.Volumes {
		if s := v.GetSource().GetSecret(); s != nil && s.Type == mesos.Secret_VALUE {
			t.Errorf("VALUE secret in annotation at %s", v.ContainerPath)
		}
	}
}

func podWithVolume(v corev1.Volume, m corev1.VolumeMount) *corev1.Pod {
	if m.Name == "" {
		m.Name = v.Name
	}
	pod := onePod(corev1.Container{VolumeMounts: []corev1.VolumeMount{m}})
	pod.Spec.Volumes = []corev1.Volume{v}
	return pod
}

func TestVolumeTable(t *testing.T) {
	yes := true
	cm := func(name string, optional *bool, items ...corev1.KeyToPath) corev1.Volume {
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: optional, Items: items,
		}}}
	}
	sec := func(name string, optional *bool, items ...corev1.KeyToPath) corev1.Volume {
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: name, Optional: optional, Items: items,
		}}}
	}
	down := func(fieldPaths ...string) corev1.Volume {
		var items []corev1.DownwardAPIVolumeFile
		for i, fp := range fieldPaths {
			items = append(items, corev1.DownwardAPIVolumeFile{Path: fmt.Sprintf("f%d", i), FieldRef: &corev1.ObjectFieldSelector{FieldPath: fp}})
		}
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: items}}}
	}
	tests := []struct {
		name string
		vol  corev1.Volume
		m    corev1.VolumeMount
		want []string
	}{
		{"emptyDir", corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			corev1.VolumeMount{MountPath: "/tmp/x"}, []string{"/tmp/x RW sandbox:SELF:volumes/v"}},
		{"emptyDir subPath", corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			corev1.VolumeMount{MountPath: "/tmp/x", SubPath: "a/b"}, []string{"/tmp/x RW sandbox:SELF:volumes/v/a/b"}},
		{"hostPath", corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/data"}}},
			corev1.VolumeMount{MountPath: "/data"}, []string{"/data RW host:/srv/data"}},
		{"hostPath read-only subPath", corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv"}}},
			corev1.VolumeMount{MountPath: "/data", SubPath: "one", ReadOnly: true}, []string{"/data RO host:/srv/one"}},
		{"configMap all keys", cm("app-config", nil), corev1.VolumeMount{MountPath: "/cfg"},
			[]string{`/cfg/app.yaml RO value:"port: 8080\n"`, `/cfg/log.level RO value:"debug"`}},
		{"configMap items", cm("app-config", nil, corev1.KeyToPath{Key: "log.level", Path: "conf/level"}), corev1.VolumeMount{MountPath: "/cfg"},
			[]string{`/cfg/conf/level RO value:"debug"`}},
		{"configMap items under subPath dir", cm("app-config", nil, corev1.KeyToPath{Key: "log.level", Path: "conf/level"}, corev1.KeyToPath{Key: "app.yaml", Path: "app.yaml"}),
			corev1.VolumeMount{MountPath: "/cfg", SubPath: "conf"}, []string{`/cfg/level RO value:"debug"`}},
		{"optional missing configMap", cm("absent", &yes), corev1.VolumeMount{MountPath: "/cfg"}, nil},
		{"optional missing key", cm("app-config", &yes, corev1.KeyToPath{Key: "nope", Path: "nope"}, corev1.KeyToPath{Key: "log.level", Path: "l"}),
			corev1.VolumeMount{MountPath: "/cfg"}, []string{`/cfg/l RO value:"debug"`}},
		{"optional missing secret", sec("absent", &yes), corev1.VolumeMount{MountPath: "/s"}, nil},
		{"secret all keys", sec("db-creds", nil), corev1.VolumeMount{MountPath: "/s"},
			[]string{`/s/password RO value:"hunter2-s3cret"`, `/s/username RO value:"app"`}},
		{"downward", down("metadata.uid", "metadata.annotations", "metadata.labels['app']", "spec.nodeName", "spec.serviceAccountName", "status.podIP"),
			corev1.VolumeMount{MountPath: "/info"}, []string{
				`/info/f0 RO value:"` + testUID + `"`,
				`/info/f1 RO value:"a=\"1\"\nb=\"x y\""`,
				`/info/f2 RO value:"web"`,
				`/info/f3 RO value:"node-1"`,
				`/info/f4 RO value:"sa"`,
				`/info/f5 RO value:"10.0.0.7"`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := podWithVolume(tc.vol, tc.m)
			pod.Labels = map[string]string{"app": "web"}
			pod.Annotations = map[string]string{"b": "x y", "a": "1"}
			pod.Spec.NodeName, pod.Spec.ServiceAccountName, pod.Status.PodIP = "node-1", "sa", "10.0.0.7"
			assertRoundTrip(t, pod)
			ls, ann, err := PodLaunches(pod, newResolver())
			if err != nil {
				t.Fatalf("PodLaunches: %v", err)
			}
			sameLines(t, "volumes", describeAll(ls[0].Container.Volumes), tc.want)
			assertNoSecretValues(t, ann, "hunter2-s3cret")
		})
	}
}

func TestVolumeErrors(t *testing.T) {
	pvc := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}
	cm := func(name string) corev1.Volume {
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
	}
	empty := corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		invalid bool // wraps ErrInvalidSpec: fail the pod, don't retry
		want    string
	}{
		{"pvc mounted", podWithVolume(pvc, corev1.VolumeMount{MountPath: "/data"}), true, `volume "data" is of unsupported type persistentVolumeClaim`},
		{"pvc not mounted", func() *corev1.Pod {
			p := onePod(corev1.Container{})
			p.Spec.Volumes = []corev1.Volume{pvc}
			return p
		}(), true, "persistentVolumeClaim"},
		{"csi", podWithVolume(corev1.Volume{Name: "c", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "d"}}}, corev1.VolumeMount{MountPath: "/c"}), true, `volume "c" is of unsupported type csi`},
		{"clusterTrustBundle", podWithVolume(corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Path: "b"}},
		}}}}, corev1.VolumeMount{MountPath: "/p"}), true, "clusterTrustBundle"},
		{"unknown mount", podWithVolume(empty, corev1.VolumeMount{Name: "nope", MountPath: "/x"}), true, `mounts volume "nope"`},
		{"subPathExpr", podWithVolume(empty, corev1.VolumeMount{MountPath: "/x", SubPathExpr: "$(POD)"}), true, "subPathExpr"},
		{"subPath escapes", podWithVolume(empty, corev1.VolumeMount{MountPath: "/x", SubPath: "../etc"}), true, "subPath"},
		{"downward unsupported field", podWithVolume(corev1.Volume{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.generateName"}}},
		}}}, corev1.VolumeMount{MountPath: "/d"}), true, "metadata.generateName"},
		{"missing configMap", podWithVolume(cm("later"), corev1.VolumeMount{MountPath: "/c"}), false, `configmap team/later`},
		{"missing key", podWithVolume(corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Items: []corev1.KeyToPath{{Key: "nope", Path: "n"}},
		}}}, corev1.VolumeMount{MountPath: "/c"}), false, `has no key "nope"`},
		{"volumeDevices", func() *corev1.Pod {
			p := podWithVolume(empty, corev1.VolumeMount{MountPath: "/x"})
			p.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "v", DevicePath: "/dev/xvda"}}
			return p
		}(), true, "volumeDevices"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := PodLaunches(tc.pod, newResolver())
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrInvalidSpec) != tc.invalid {
				t.Errorf("errors.Is(err, ErrInvalidSpec) = %v, want %v: %v", !tc.invalid, tc.invalid, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestMissingConfigMapIsNotFound(t *testing.T) {
	pod := podWithVolume(corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "later"}}}}, corev1.VolumeMount{MountPath: "/c"})
	_, _, err := PodLaunches(pod, newResolver())
	if !apierrors.IsNotFound(err) {
		t.Errorf("missing required config map should stay a NotFound (retry later): %v", err)
	}
}

type failingResolver struct{}

func (failingResolver) ConfigMap(string, string) (map[string][]byte, error) {
	return nil, errors.New("informer not synced")
}
func (failingResolver) Secret(string, string) (map[string][]byte, error) {
	return nil, errors.New("informer not synced")
}

func TestResolverFailures(t *testing.T) {
	pod := testPod()
	if _, _, err := PodLaunches(pod, failingResolver{}); err == nil || errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("resolver failure: %v", err)
	}
	if _, _, err := PodLaunches(pod, nil); err == nil || errors.Is(err, ErrInvalidSpec) {
		t.Errorf("nil resolver with references: %v", err)
	}
	// A pod that references nothing needs no resolver.
	if _, _, err := PodLaunches(onePod(corev1.Container{}), nil); err != nil {
		t.Errorf("nil resolver, no references: %v", err)
	}
}

// References in an annotation that the policy lets through (see
// policy_test.go for those it refuses) resolve as derived ones do.
func TestAnnotationReferences(t *testing.T) {
	ref := func(name string) mesos.Volume {
		return mesos.Volume{Mode: mesos.RO.Enum(), ContainerPath: "/r", Source: &mesos.Volume_Source{
			Type: mesos.Volume_Source_SECRET, Secret: &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: &mesos.Secret_Reference{Name: name}},
		}}
	}
	pod := onePod(corev1.Container{Env: []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db-creds"}, Key: "password"},
	}}}})
	ci := &mesos.ContainerInfo{
		Type:    mesos.ContainerInfo_MESOS.Enum(),
		Mesos:   &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{Name: pod.Spec.Containers[0].Image}}},
		Volumes: []mesos.Volume{ref("secret:team/db-creds?optional"), ref("downward:metadata.name")},
	}
	ann, err := EncodeContainerInfo(ci)
	if err != nil {
		t.Fatal(err)
	}
	pod.Annotations = map[string]string{AnnotationContainerInfo: ann}
	ls, _, err := PodLaunches(pod, newResolver())
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "references resolved", describeAll(ls[0].Container.Volumes), []string{
		`/r/password RO value:"hunter2-s3cret"`,
		`/r/username RO value:"app"`,
		`/r RO value:"p"`,
	})
}
