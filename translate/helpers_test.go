package translate

import (
	"encoding/base64"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const testUID = "3f2b6c1e-9a47-4d1b-8c5e-0f6a7b8c9d01"

// fakeResolver serves config maps and secrets from maps keyed "ns/name" and
// counts reads; a missing object is a NotFound error, as from a lister.
type fakeResolver struct {
	configMaps map[string]map[string][]byte
	secrets    map[string]map[string][]byte
	reads      int
}

func (f *fakeResolver) ConfigMap(ns, name string) (map[string][]byte, error) {
	f.reads++
	if d, ok := f.configMaps[ns+"/"+name]; ok {
		return d, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeResolver) Secret(ns, name string) (map[string][]byte, error) {
	f.reads++
	if d, ok := f.secrets[ns+"/"+name]; ok {
		return d, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func newResolver() *fakeResolver {
	return &fakeResolver{
		configMaps: map[string]map[string][]byte{
			"team/app-config":       {"app.yaml": []byte("port: 8080\n"), "log.level": []byte("debug")},
			"team/kube-root-ca.crt": {"ca.crt": []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")},
		},
		secrets: map[string]map[string][]byte{
			"team/db-creds": {"password": []byte("hunter2-s3cret"), "username": []byte("app")},
		},
	}
}

func quantity(s string) resource.Quantity { return resource.MustParse(s) }

// testPod is a pod using most of what the translation supports.
func testPod() *corev1.Pod {
	yes := true
	grace := int64(45)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "web-7d9f",
			Namespace:   "team",
			UID:         testUID,
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": `say "hi"`},
		},
		Spec: corev1.PodSpec{
			NodeName:                      "titus-agent-1",
			ServiceAccountName:            "web",
			TerminationGracePeriodSeconds: &grace,
			InitContainers: []corev1.Container{{
				Name:    "migrate",
				Image:   "registry.example/db-migrate:1.2",
				Command: []string{"/bin/migrate", "--up"},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "creds", MountPath: "/etc/creds"},
				},
			}},
			Containers: []corev1.Container{{
				Name:  "web",
				Image: "registry.example/web:2.0",
				Args:  []string{"--port", "$(PORT)"},
				Env: []corev1.EnvVar{
					{Name: "PORT", Value: "8080"},
					{Name: "MODE", Value: "prod"},
				},
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceCPU: quantity("1500m"), corev1.ResourceMemory: quantity("512Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: quantity("500m")},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "scratch", MountPath: "/scratch"},
					{Name: "config", MountPath: "/etc/app"},
					{Name: "creds", MountPath: "/etc/creds", ReadOnly: true},
					{Name: "podinfo", MountPath: "/etc/podinfo"},
					{Name: "logs", MountPath: "/var/log/host", ReadOnly: true},
					{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
				},
			}, {
				Name:  "sidecar",
				Image: "registry.example/proxy:3",
				TTY:   true,
				VolumeMounts: []corev1.VolumeMount{
					{Name: "config", MountPath: "/etc/proxy/app.yaml", SubPath: "app.yaml"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
				}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: "db-creds",
					Items:      []corev1.KeyToPath{{Key: "password", Path: "db/password"}},
				}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
					Items: []corev1.DownwardAPIVolumeFile{
						{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
						{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
						{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}},
					},
				}}},
				{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}},
				{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
						{ConfigMap: &corev1.ConfigMapProjection{
							LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
							Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
						}},
						{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
							{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
						}}},
					},
				}}},
				{Name: "optional-cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "absent"},
					Optional:             &yes,
				}}},
			},
		},
	}
}

// userContainerInfo is a ContainerInfo as a legacy tool would write it,
// with fields the spec derivation never produces.
func userContainerInfo() *mesos.ContainerInfo {
	network := mesos.ContainerInfo_DockerInfo_BRIDGE
	hostname := "legacy-host"
	proto := "tcp"
	ip := "10.1.2.3"
	netName := "titus-vpc"
	yes := true
	shm := uint32(64)
	hard, soft := uint64(4096), uint64(1024)
	v := "v"
	return &mesos.ContainerInfo{
		Type:     mesos.ContainerInfo_DOCKER.Enum(),
		Hostname: &hostname,
		Docker: &mesos.ContainerInfo_DockerInfo{
			Image:        "registry.example/legacy/app@sha256:0123456789abcdef",
			Network:      &network,
			PortMappings: []mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: 31000, ContainerPort: 8080, Protocol: &proto}},
			Privileged:   &yes,
			Parameters:   []mesos.Parameter{{Key: "ulimit", Value: "nofile=1024"}, {Key: "label", Value: "team=x"}},
		},
		NetworkInfos: []mesos.NetworkInfo{{
			Name:        &netName,
			IPAddresses: []mesos.NetworkInfo_IPAddress{{IPAddress: &ip}},
			Groups:      []string{"sg-1", "sg-2"},
			Labels:      &mesos.Labels{Labels: []mesos.Label{{Key: "eni", Value: &v}, {Key: "bare"}}},
		}},
		LinuxInfo: &mesos.LinuxInfo{
			EffectiveCapabilities: &mesos.CapabilityInfo{Capabilities: []mesos.CapabilityInfo_Capability{mesos.CapabilityInfo_NET_ADMIN, mesos.CapabilityInfo_CHOWN}},
			SharePIDNamespace:     &yes,
			IPCMode:               mesos.LinuxInfo_PRIVATE.Enum(),
			SHMSize:               &shm,
		},
		RlimitInfo: &mesos.RLimitInfo{Rlimits: []mesos.RLimitInfo_RLimit{{Type: mesos.RLimitInfo_RLimit_RLMT_CORE, Hard: &hard, Soft: &soft}}},
		Volumes: []mesos.Volume{{
			Mode:          mesos.RO.Enum(),
			ContainerPath: "/etc/app",
			Source: &mesos.Volume_Source{
				Type:   mesos.Volume_Source_SECRET,
				Secret: &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: &mesos.Secret_Reference{Name: "configmap:team/app-config"}},
			},
		}, {
			Mode:          mesos.RW.Enum(),
			ContainerPath: "/data",
			Source: &mesos.Volume_Source{
				Type: mesos.Volume_Source_DOCKER_VOLUME,
				DockerVolume: &mesos.Volume_Source_DockerVolume{
					Name: "legacy-data",
				},
			},
		}},
	}
}

// admittedUserContainerInfo is userContainerInfo without what the policy
// refuses outright (CNI networks, Docker volumes), and with a host path the
// spec of privilegedTestPod mounts.
func admittedUserContainerInfo() *mesos.ContainerInfo {
	ci := userContainerInfo()
	ci.NetworkInfos = nil
	ci.Volumes[1] = mesos.Volume{
		Mode:          mesos.RO.Enum(),
		ContainerPath: "/var/log/host",
		Source: &mesos.Volume_Source{
			Type:     mesos.Volume_Source_HOST_PATH,
			HostPath: &mesos.Volume_Source_HostPath{Path: "/var/log"},
		},
	}
	return ci
}

// privilegedTestPod is testPod with the spec that grants what
// admittedUserContainerInfo asks for: the same image, privileged (so
// every capability and docker parameter), the host's PID namespace and
// host port 31000.
func privilegedTestPod() *corev1.Pod {
	pod := testPod()
	yes := true
	pod.Spec.HostPID = true
	web := &pod.Spec.Containers[0]
	web.Image = userContainerInfo().Docker.Image
	web.SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	web.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31000}}
	return pod
}

// rawEncode marshals without the package's validation, as a foreign tool would.
func rawEncode(t testing.TB, ci *mesos.ContainerInfo) (string, []byte) {
	t.Helper()
	b, err := ci.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return base64.StdEncoding.EncodeToString(b), b
}

func mainLaunch(t testing.TB, ls []Launch) Launch {
	t.Helper()
	for _, l := range ls {
		if !l.Init {
			return l
		}
	}
	t.Fatalf("no app container launch in %d launches", len(ls))
	return Launch{}
}
