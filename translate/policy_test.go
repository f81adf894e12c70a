package translate

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
)

// checkPolicy runs the policy on the main container of pod, as PodLaunches
// does before anything is resolved.
func checkPolicy(pod *corev1.Pod, ci *mesos.ContainerInfo, cmd *mesos.CommandInfo) error {
	vols, err := checkPodVolumes(pod)
	if err != nil {
		return err
	}
	return (&policy{pod: pod, vols: vols}).check(&pod.Spec.Containers[0], ci, cmd)
}

// policyPod is a plain pod, in a namespace where baseline PodSecurity would
// admit it; policyLaunch is what the spec derivation gives its container.
func policyPod() *corev1.Pod { return onePod(corev1.Container{Name: "main"}) }

func policyLaunch(t *testing.T, pod *corev1.Pod) (*mesos.ContainerInfo, *mesos.CommandInfo) {
	t.Helper()
	vols, err := checkPodVolumes(pod)
	if err != nil {
		t.Fatal(err)
	}
	c := &pod.Spec.Containers[0]
	ci, err := deriveContainerInfo(pod, c, vols)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := commandInfo(pod, c)
	if err != nil {
		t.Fatal(err)
	}
	return ci, cmd
}

// mostPrivilegedPod grants every pod-spec privilege there is: what the
// policy refuses even then has no spec equivalent at all.
func mostPrivilegedPod() *corev1.Pod {
	pod := policyPod()
	yes := true
	pod.Spec.HostNetwork, pod.Spec.HostPID, pod.Spec.HostIPC = true, true, true
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		Privileged:     &yes,
		Capabilities:   &corev1.Capabilities{Add: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
	}
	return pod
}

func hostPathVolume(hostPath, containerPath string, mode mesos.Volume_Mode) mesos.Volume {
	return mesos.Volume{Mode: mode.Enum(), ContainerPath: containerPath, Source: &mesos.Volume_Source{
		Type: mesos.Volume_Source_HOST_PATH, HostPath: &mesos.Volume_Source_HostPath{Path: hostPath},
	}}
}

func secretRef(name string) *mesos.Secret {
	return &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: &mesos.Secret_Reference{Name: name}}
}

func secretVolume(name string) mesos.Volume {
	return mesos.Volume{Mode: mesos.RO.Enum(), ContainerPath: "/s", Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET, Secret: secretRef(name)}}
}

func mountHostPath(pod *corev1.Pod, hostPath string, m corev1.VolumeMount) {
	m.Name = fmt.Sprintf("host%d", len(pod.Spec.Volumes))
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: m.Name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPath}}})
	pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, m)
}

func securityContext(pod *corev1.Pod) *corev1.SecurityContext {
	c := &pod.Spec.Containers[0]
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

func addCaps(caps ...corev1.Capability) func(*corev1.Pod) {
	return func(pod *corev1.Pod) {
		securityContext(pod).Capabilities = &corev1.Capabilities{Add: caps}
	}
}

func privileged(pod *corev1.Pod) {
	yes := true
	securityContext(pod).Privileged = &yes
}

func referenceSecret(pod *corev1.Pod) {
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "PW", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db-creds"}, Key: "password"},
	}})
}

// policyRow is one row of the mapping table in docs/security.md: a legacy
// field (ask), the spec that grants it (grant; nil for a field refused
// outright), and the PolicyError otherwise.
type policyRow struct {
	name  string
	base  func(pod *corev1.Pod) // optional: the spec the row starts from
	ask   func(ci *mesos.ContainerInfo, cmd *mesos.CommandInfo)
	grant func(pod *corev1.Pod)
	field string // PolicyError.Field
	want  string // in the message
}

func policyRows() []policyRow {
	yes, no := true, false
	bidi := corev1.MountPropagationBidirectional
	caps := func(cs ...mesos.CapabilityInfo_Capability) *mesos.CapabilityInfo {
		return &mesos.CapabilityInfo{Capabilities: cs}
	}
	linux := func(ci *mesos.ContainerInfo) *mesos.LinuxInfo {
		if ci.LinuxInfo == nil {
			ci.LinuxInfo = &mesos.LinuxInfo{}
		}
		return ci.LinuxInfo
	}
	docker := func(ci *mesos.ContainerInfo) *mesos.ContainerInfo_DockerInfo {
		if ci.Docker == nil {
			ci.Type, ci.Mesos = mesos.ContainerInfo_DOCKER.Enum(), nil
			// Mesos' default network is HOST: a bridge asks for nothing.
			ci.Docker = &mesos.ContainerInfo_DockerInfo{Image: "busybox:1.36", Network: mesos.ContainerInfo_DockerInfo_BRIDGE.Enum()}
		}
		return ci.Docker
	}
	str := func(s string) *string { return &s }
	uid := func(v int64) *int64 { return &v }

	return []policyRow{
		// Images: what image policies admitted.
		{name: "mesos image", field: "container-info: mesos.image", want: `"evil:1": the pod spec's container "main" runs image "busybox:1.36"`,
			ask:   func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { ci.Mesos.Image.Docker.Name = "evil:1" },
			grant: func(pod *corev1.Pod) { pod.Spec.Containers[0].Image = "evil:1" }},
		{name: "docker image", field: "container-info: docker.image", want: `"evil:1"`,
			ask:   func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { docker(ci).Image = "evil:1" },
			grant: func(pod *corev1.Pod) { pod.Spec.Containers[0].Image = "evil:1" }},
		{name: "mesos without image", field: "container-info: mesos.image", want: "agent's root filesystem",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { ci.Mesos = nil }},
		{name: "appc image", field: "container-info: mesos.image", want: `APPC image "busybox"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Mesos.Image = &mesos.Image{Type: mesos.Image_APPC.Enum(), Appc: &mesos.Image_Appc{Name: "busybox"}}
			}},
		{name: "image docker config", field: "container-info: mesos.image.docker.config", want: `docker config secret:team/db-creds: the pod spec does not reference secret "db-creds"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Mesos.Image.Docker.Config = secretRef("secret:team/db-creds")
			},
			grant: func(pod *corev1.Pod) {
				pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "db-creds"}}
			}},

		// Docker.
		{name: "docker privileged", field: "container-info: docker.privileged", want: `true: the pod spec's container "main" is not privileged`,
			ask:   func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { docker(ci).Privileged = &yes },
			grant: privileged},
		{name: "docker parameters", field: "container-info: docker.parameters[0]", want: "pid=host: docker run options can grant anything",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				docker(ci).Parameters = []mesos.Parameter{{Key: "pid", Value: "host"}}
			},
			grant: privileged},
		{name: "docker host network", field: "container-info: docker.network", want: "HOST: the pod spec does not set hostNetwork",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				docker(ci).Network = mesos.ContainerInfo_DockerInfo_HOST.Enum()
			},
			grant: func(pod *corev1.Pod) { pod.Spec.HostNetwork = true }},
		{name: "docker network unset", field: "container-info: docker.network", want: "unset, which Mesos reads as HOST",
			ask:   func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { docker(ci).Network = nil },
			grant: func(pod *corev1.Pod) { pod.Spec.HostNetwork = true }},
		{name: "docker port mapping", field: "container-info: docker.port_mappings[0]", want: "host port 31000 to 8080/UDP",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				docker(ci).PortMappings = []mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: 31000, ContainerPort: 8080, Protocol: str("udp")}}
			},
			grant: func(pod *corev1.Pod) {
				pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31000, Protocol: corev1.ProtocolUDP}}
			}},
		{name: "docker volume driver", field: "container-info: docker.volume_driver", want: "can mount anything on the host",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { docker(ci).VolumeDriver = str("local") }},

		// Networks.
		{name: "cni network", field: "container-info: network_infos[0]", want: "titus-vpc: CNI networks",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.NetworkInfos = []mesos.NetworkInfo{{Name: str("titus-vpc")}}
			}},

		// LinuxInfo.
		{name: "effective capabilities", field: "container-info: linux_info.effective_capabilities", want: `NET_ADMIN: the pod spec does not grant container "main"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).EffectiveCapabilities = caps(mesos.CapabilityInfo_CHOWN, mesos.CapabilityInfo_NET_ADMIN)
			},
			grant: addCaps("NET_ADMIN")},
		{name: "bounding capabilities", field: "container-info: linux_info.bounding_capabilities", want: "SYS_ADMIN",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).BoundingCapabilities = caps(mesos.CapabilityInfo_SYS_ADMIN)
			},
			grant: addCaps("CAP_SYS_ADMIN")},
		{name: "capability info (deprecated)", field: "container-info: linux_info.capability_info", want: "SYS_PTRACE",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).CapabilityInfo = caps(mesos.CapabilityInfo_SYS_PTRACE)
			},
			grant: privileged},
		{name: "unknown capability", field: "container-info: linux_info.effective_capabilities", want: "unknown capability 0",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).EffectiveCapabilities = caps(mesos.CapabilityInfo_UNKNOWN)
			}},
		{name: "share pid namespace", field: "container-info: linux_info.share_pid_namespace", want: "true: the pod spec does not set hostPID",
			ask:   func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { linux(ci).SharePIDNamespace = &yes },
			grant: func(pod *corev1.Pod) { pod.Spec.HostPID = true }},
		{name: "ipc share parent", field: "container-info: linux_info.ipc_mode", want: "SHARE_PARENT: the pod spec does not set hostIPC",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).IPCMode = mesos.LinuxInfo_SHARE_PARENT.Enum()
			},
			grant: func(pod *corev1.Pod) { pod.Spec.HostIPC = true }},
		{name: "ipc unknown", field: "container-info: linux_info.ipc_mode", want: "unknown IPC mode 0",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).IPCMode = mesos.LinuxInfo_UNKNOWN.Enum()
			}},
		{name: "seccomp unconfined", field: "container-info: linux_info.seccomp", want: `unconfined: the pod spec does not give container "main" seccompProfile type Unconfined`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).Seccomp = &mesos.SeccompInfo{Unconfined: &yes}
			},
			grant: func(pod *corev1.Pod) { // pod level: containers inherit it
				pod.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
			}},
		{name: "seccomp profile", field: "container-info: linux_info.seccomp", want: `profile_name "audit.json"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				linux(ci).Seccomp = &mesos.SeccompInfo{ProfileName: str("audit.json"), Unconfined: &no}
			},
			grant: func(pod *corev1.Pod) {
				securityContext(pod).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: str("audit.json")}
			}},
		{name: "seccomp empty", field: "container-info: linux_info.seccomp", want: "neither unconfined nor profile_name",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) { linux(ci).Seccomp = &mesos.SeccompInfo{} }},

		// Rlimits.
		{name: "rlimit", field: "container-info: rlimit_info.rlimits[0]", want: "RLMT_NOFILE: setting a resource limit needs SYS_RESOURCE",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				hard, soft := uint64(1<<20), uint64(1<<16)
				ci.RlimitInfo = &mesos.RLimitInfo{Rlimits: []mesos.RLimitInfo_RLimit{{Type: mesos.RLimitInfo_RLimit_RLMT_NOFILE, Hard: &hard, Soft: &soft}}}
			},
			grant: addCaps("SYS_RESOURCE")},

		// Volumes.
		{name: "host path (the issue's example)", field: "container-info: volumes[0]", want: "HOST_PATH /etc: the pod spec has no hostPath volume /etc mounted at hostetc",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{hostPathVolume("/etc", "hostetc", mesos.RO)}
			},
			grant: func(pod *corev1.Pod) {
				mountHostPath(pod, "/etc", corev1.VolumeMount{MountPath: "hostetc", ReadOnly: true})
			}},
		{name: "host path with subPath", field: "container-info: volumes[0]", want: "HOST_PATH /srv/data/app: the pod spec has no hostPath volume",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{hostPathVolume("/srv/data/app", "/data", mesos.RW)}
			},
			grant: func(pod *corev1.Pod) {
				mountHostPath(pod, "/srv/data", corev1.VolumeMount{MountPath: "/data", SubPath: "app"})
			}},
		{name: "host path writable", field: "container-info: volumes[0]", want: "HOST_PATH /etc: mode RW, but the pod spec mounts it readOnly at /host/etc",
			base: func(pod *corev1.Pod) {
				mountHostPath(pod, "/etc", corev1.VolumeMount{MountPath: "/host/etc", ReadOnly: true})
			},
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{hostPathVolume("/etc", "/host/etc", mesos.RW)}
			},
			grant: func(pod *corev1.Pod) { pod.Spec.Containers[0].VolumeMounts[0].ReadOnly = false }},
		{name: "host path bidirectional", field: "container-info: volumes[0]", want: "mount propagation BIDIRECTIONAL",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				v := hostPathVolume("/mnt", "/mnt", mesos.RW)
				v.Source.HostPath.MountPropagation = &mesos.MountPropagation{Mode: mesos.MountPropagation_BIDIRECTIONAL.Enum()}
				ci.Volumes = []mesos.Volume{v}
			},
			base: func(pod *corev1.Pod) {
				privileged(pod)
				mountHostPath(pod, "/mnt", corev1.VolumeMount{MountPath: "/mnt"})
			},
			grant: func(pod *corev1.Pod) { pod.Spec.Containers[0].VolumeMounts[0].MountPropagation = &bidi }},
		{name: "legacy host_path", field: "container-info: volumes[0]", want: "host_path /var/run/docker.sock: the pod spec has no hostPath volume",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RW.Enum(), ContainerPath: "/var/run/docker.sock", HostPath: str("/var/run/docker.sock")}}
			},
			grant: func(pod *corev1.Pod) {
				mountHostPath(pod, "/var/run/docker.sock", corev1.VolumeMount{MountPath: "/var/run/docker.sock"})
			}},
		{name: "legacy relative host_path", field: "container-info: volumes[0]", want: `host_path "../../etc" is relative`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RW.Enum(), ContainerPath: "/x", HostPath: str("../../etc")}}
			}},
		{name: "volume without source", field: "container-info: volumes[0]", want: "neither source nor host_path",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RW.Enum(), ContainerPath: "/x"}}
			}},
		{name: "image volume", field: "container-info: volumes[0]", want: "image volume",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RO.Enum(), ContainerPath: "/x", Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{Name: "tools"}}}}
			}},
		{name: "parent sandbox", field: "container-info: volumes[0]", want: "SANDBOX_PATH PARENT",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RW.Enum(), ContainerPath: "/x", Source: &mesos.Volume_Source{
					Type: mesos.Volume_Source_SANDBOX_PATH, SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_PARENT, Path: "shared"},
				}}}
			}},
		{name: "docker volume", field: "container-info: volumes[0]", want: `DOCKER_VOLUME "legacy-data"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{{Mode: mesos.RW.Enum(), ContainerPath: "/data", Source: &mesos.Volume_Source{
					Type: mesos.Volume_Source_DOCKER_VOLUME, DockerVolume: &mesos.Volume_Source_DockerVolume{Name: "legacy-data"},
				}}}
			}},

		// Secret references.
		{name: "secret reference", field: "container-info: volumes[0]", want: `SECRET secret:team/db-creds: the pod spec does not reference secret "db-creds"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("secret:team/db-creds")}
			},
			grant: referenceSecret},
		{name: "secret reference via envFrom", field: "container-info: volumes[0]", want: `does not reference secret "db-creds"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("secret:team/db-creds?optional")}
			},
			grant: func(pod *corev1.Pod) {
				pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db-creds"}}}}
			}},
		{name: "secret reference via projected volume", field: "container-info: volumes[0]", want: `does not reference secret "db-creds"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("secret:team/db-creds")}
			},
			grant: func(pod *corev1.Pod) { // named by the pod, mounted by no container
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db-creds"}}}},
				}}})
			}},
		{name: "config map reference", field: "container-info: volumes[0]", want: `SECRET configmap:team/app-config: the pod spec does not reference configmap "app-config"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("configmap:team/app-config")}
			},
			grant: func(pod *corev1.Pod) {
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
				}}})
			}},
		{name: "config map reference via env", field: "container-info: volumes[0]", want: `configmap "app-config"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("configmap:team/app-config")}
			},
			grant: func(pod *corev1.Pod) {
				pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "L", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Key: "log.level",
				}}}}
			}},
		{name: "reference to another namespace", field: "container-info: volumes[0]", want: `secret:kube-system/db-creds: references must stay in the pod's namespace "team"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("secret:kube-system/db-creds")}
			}},
		{name: "malformed reference", field: "container-info: volumes[0]", want: "malformed reference",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("secret:team")}
			}},
		{name: "foreign reference", field: "container-info: volumes[0]", want: "SECRET vault:prod/db: only configmap:, secret: and downward: references",
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("vault:prod/db")}
			}},
		{name: "unsupported downward field", field: "container-info: volumes[0]", want: `unsupported downward API fieldPath "spec.containers[0].image"`,
			ask: func(ci *mesos.ContainerInfo, _ *mesos.CommandInfo) {
				ci.Volumes = []mesos.Volume{secretVolume("downward:spec.containers[0].image")}
			}},

		// CommandInfo.
		{name: "user", field: "command: user", want: `"0": the pod spec sets no runAsUser`,
			ask:   func(_ *mesos.ContainerInfo, cmd *mesos.CommandInfo) { cmd.User = str("0") },
			grant: func(pod *corev1.Pod) { securityContext(pod).RunAsUser = uid(0) }},
		{name: "user by name", field: "command: user", want: `"root": the pod spec runs container "main" as runAsUser 0`,
			base: func(pod *corev1.Pod) { securityContext(pod).RunAsUser = uid(0) },
			ask:  func(_ *mesos.ContainerInfo, cmd *mesos.CommandInfo) { cmd.User = str("root") }},
		{name: "user unset", field: "command: user", want: "unset: the agent's default user would run container",
			base: func(pod *corev1.Pod) { pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: uid(1000)} },
			ask:  func(_ *mesos.ContainerInfo, cmd *mesos.CommandInfo) { cmd.User = nil }},
		{name: "fetcher uris", field: "command: uris[0]", want: "agent's fetcher",
			ask: func(_ *mesos.ContainerInfo, cmd *mesos.CommandInfo) {
				cmd.URIs = []mesos.CommandInfo_URI{{Value: "http://169.254.169.254/latest/meta-data/"}}
			}},
		{name: "environment secret", field: "command: environment.variables[0]", want: `PW secret:team/db-creds: the pod spec does not reference secret "db-creds"`,
			ask: func(_ *mesos.ContainerInfo, cmd *mesos.CommandInfo) {
				cmd.Environment = &mesos.Environment{Variables: []mesos.Environment_Variable{{
					Name: "PW", Type: mesos.Environment_Variable_SECRET.Enum(), Secret: secretRef("secret:team/db-creds"),
				}}}
			},
			grant: referenceSecret},
	}
}

// Every row: refused without the spec that grants it, with a PolicyError
// naming the field; accepted with it, through PodLaunches when the row is
// about the annotation. Rows without a grant are refused even from the most
// privileged pod.
func TestPolicyTable(t *testing.T) {
	for _, row := range policyRows() {
		t.Run(row.name, func(t *testing.T) {
			// The row asks for its field on top of what a plain pod derives
			// to; base, then grant, shape the spec it is checked against.
			build := func(pod *corev1.Pod) (*mesos.ContainerInfo, *mesos.CommandInfo) {
				if row.base != nil {
					row.base(pod)
				}
				ci, cmd := policyLaunch(t, policyPod())
				row.ask(ci, cmd)
				if err := validateContainerInfo(ci); err != nil {
					t.Fatalf("the row's ContainerInfo is malformed, not refused by policy: %v", err)
				}
				return ci, cmd
			}
			pod := policyPod()
			ci, cmd := build(pod)
			err := checkPolicy(pod, ci, cmd)
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("not refused with a PolicyError: %v", err)
			}
			if pe.Field != row.field || !strings.Contains(pe.Msg, row.want) {
				t.Errorf("refused as %q %q, want field %q and %q", pe.Field, pe.Msg, row.field, row.want)
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.HasPrefix(err.Error(), row.field+" ") {
				t.Errorf("error %q: must wrap ErrInvalidSpec and start with the field", err)
			}

			if row.grant == nil {
				pod := mostPrivilegedPod()
				ci, cmd := build(pod)
				if err := checkPolicy(pod, ci, cmd); !errors.As(err, &pe) || pe.Field != row.field {
					t.Errorf("refused outright, yet the most privileged pod gets: %v", err)
				}
				return
			}
			granted := policyPod()
			ci, cmd = build(granted)
			row.grant(granted)
			if err := checkPolicy(granted, ci, cmd); err != nil {
				t.Fatalf("refused with the granting spec: %v", err)
			}
			if strings.HasPrefix(row.field, fieldCmd) {
				return // a CommandInfo never comes from the annotation
			}
			ann, err := EncodeContainerInfo(ci)
			if err != nil {
				t.Fatal(err)
			}
			granted.Annotations = map[string]string{AnnotationContainerInfo: ann}
			if _, _, err := PodLaunches(granted, newResolver()); err != nil {
				t.Errorf("PodLaunches with the granting spec: %v", err)
			}
		})
	}
}

// The attack, end to end: a plain pod whose annotation mounts the
// host's /etc fails as the provider will report it, and reads no secret.
func TestAnnotationHostPathRefused(t *testing.T) {
	pod := policyPod()
	ci, _ := policyLaunch(t, pod)
	ci.Volumes = []mesos.Volume{hostPathVolume("/etc", "hostetc", mesos.RW), secretVolume("secret:team/db-creds")}
	ann, err := EncodeContainerInfo(ci)
	if err != nil {
		t.Fatal(err)
	}
	pod.Annotations = map[string]string{AnnotationContainerInfo: ann}
	r := newResolver()
	ls, _, err := PodLaunches(pod, r)
	if ls != nil || !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("launched or not invalid: %v", err)
	}
	const want = `container "main": container-info: volumes[0] HOST_PATH /etc: the pod spec has no hostPath volume /etc mounted at hostetc`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	if r.reads != 0 {
		t.Errorf("%d objects read before the policy refused the pod", r.reads)
	}
}

// Capabilities the container runtime grants by default need no spec
// field; dropping them takes them away, as the runtime would.
func TestPolicyDefaultCapabilities(t *testing.T) {
	ask := func(pod *corev1.Pod, c mesos.CapabilityInfo_Capability) error {
		ci, cmd := policyLaunch(t, pod)
		ci.LinuxInfo = &mesos.LinuxInfo{EffectiveCapabilities: &mesos.CapabilityInfo{Capabilities: []mesos.CapabilityInfo_Capability{c}}}
		return checkPolicy(pod, ci, cmd)
	}
	if err := ask(policyPod(), mesos.CapabilityInfo_NET_BIND_SERVICE); err != nil {
		t.Errorf("default capability refused: %v", err)
	}
	tests := []struct {
		name       string
		add, drop  []corev1.Capability
		capability mesos.CapabilityInfo_Capability
		ok         bool
	}{
		{"drop one", nil, []corev1.Capability{"NET_RAW"}, mesos.CapabilityInfo_NET_RAW, false},
		{"drop ALL", nil, []corev1.Capability{"ALL"}, mesos.CapabilityInfo_CHOWN, false},
		{"drop ALL, add back", []corev1.Capability{"cap_chown"}, []corev1.Capability{"ALL"}, mesos.CapabilityInfo_CHOWN, true},
		{"add ALL", []corev1.Capability{"ALL"}, nil, mesos.CapabilityInfo_SYS_MODULE, true},
		{"add ALL, drop one", []corev1.Capability{"ALL"}, []corev1.Capability{"SYS_MODULE"}, mesos.CapabilityInfo_SYS_MODULE, false},
	}
	for _, tc := range tests {
		pod := policyPod()
		securityContext(pod).Capabilities = &corev1.Capabilities{Add: tc.add, Drop: tc.drop}
		if err := ask(pod, tc.capability); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// Harmless fields need no spec field at all.
func TestPolicyHarmlessFields(t *testing.T) {
	pod := policyPod()
	ci, cmd := policyLaunch(t, pod)
	yes := true
	shm := uint32(256)
	host := "legacy-host"
	ci.Hostname = &host
	ci.TTYInfo = &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: 24, Columns: 80}}
	ci.LinuxInfo = &mesos.LinuxInfo{IPCMode: mesos.LinuxInfo_PRIVATE.Enum(), SHMSize: &shm, ShareCgroups: &yes}
	ci.Mesos.Image.Cached = &yes
	ci.Mesos.Image.Docker.Credential = &mesos.Credential{Principal: "robot"}
	ci.Volumes = []mesos.Volume{
		{Mode: mesos.RW.Enum(), ContainerPath: "/scratch", Source: &mesos.Volume_Source{
			Type: mesos.Volume_Source_SANDBOX_PATH, SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_SELF, Path: "scratch"},
		}},
		{Mode: mesos.RO.Enum(), ContainerPath: "/v", Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SECRET, Secret: &mesos.Secret{
			Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: []byte("the author's own")},
		}}},
		secretVolume("downward:metadata.labels"),
	}
	if err := checkPolicy(pod, ci, cmd); err != nil {
		t.Fatal(err)
	}
	// A Docker container on a bridge without host ports, force-pulled.
	ci.Type, ci.Mesos = mesos.ContainerInfo_DOCKER.Enum(), nil
	ci.Docker = &mesos.ContainerInfo_DockerInfo{Image: pod.Spec.Containers[0].Image, Network: mesos.ContainerInfo_DockerInfo_BRIDGE.Enum(), ForcePullImage: &yes}
	if err := checkPolicy(pod, ci, cmd); err != nil {
		t.Fatal(err)
	}
}

// assertRoundTrip: what the spec derivation gives passes the policy, and
// survives encode → decode → policy → launch unchanged.
func assertRoundTrip(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, present := pod.Annotations[AnnotationContainerInfo]; present {
		t.Fatal("round trip of a pod that already carries the annotation")
	}
	first, ann, err := PodLaunches(pod, newResolver())
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	ci, err := DecodeContainerInfo(ann)
	if err != nil {
		t.Fatalf("decode the derived annotation: %v", err)
	}
	main := mainLaunch(t, first)
	if err := checkPolicy(pod, ci, main.Command); err != nil {
		t.Fatalf("the derived annotation fails the policy: %v", err)
	}
	annotated := pod.DeepCopy()
	if annotated.Annotations == nil {
		annotated.Annotations = map[string]string{}
	}
	annotated.Annotations[AnnotationContainerInfo] = ann
	second, again, err := PodLaunches(annotated, newResolver())
	if err != nil {
		t.Fatalf("launch from the derived annotation: %v", err)
	}
	if again != "" || len(second) != len(first) {
		t.Fatalf("annotation %q returned, %d launches then %d", again, len(first), len(second))
	}
	for i := range first {
		a, b := first[i], second[i]
		if a.ContainerID != b.ContainerID || !withoutValues(a.Container).Equal(withoutValues(b.Container)) || !a.Command.Equal(b.Command) || a.KillGrace != b.KillGrace {
			t.Errorf("launch %d (%s) differs across the round trip", i, a.ContainerName)
		}
	}
}

// withoutValues blanks resolved secret data: a downward metadata.annotations
// file rightly shows the annotation the round trip adds.
func withoutValues(ci *mesos.ContainerInfo) *mesos.ContainerInfo {
	out := *ci
	out.Volumes = make([]mesos.Volume, len(ci.Volumes))
	for i, v := range ci.Volumes {
		if s := v.GetSource().GetSecret(); s != nil && s.Type == mesos.Secret_VALUE {
			src := *v.Source
			src.Secret = &mesos.Secret{Type: mesos.Secret_VALUE}
			v.Source = &src
		}
		out.Volumes[i] = v
	}
	return &out
}

// Every fixture of this package's tests goes through assertRoundTrip:
// launchOf and TestVolumeTable call it for theirs, this test for the rest,
// including the spec of every granting row of the policy table.
func TestRoundTripFixtures(t *testing.T) {
	pods := map[string]*corev1.Pod{
		"testPod":           testPod(),
		"privilegedTestPod": privilegedTestPod(),
		"mostPrivilegedPod": mostPrivilegedPod(),
	}
	for _, row := range policyRows() {
		if row.grant == nil {
			continue
		}
		pod := policyPod()
		if row.base != nil {
			row.base(pod)
		}
		row.grant(pod)
		if relativeMount(pod) {
			// The derivation refuses a relative mountPath (Mesos would
			// read it relative to the sandbox): only an annotation can
			// ask for one.
			continue
		}
		pods["granted: "+row.name] = pod
	}
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) { assertRoundTrip(t, pod) })
	}
}

func relativeMount(pod *corev1.Pod) bool {
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if !strings.HasPrefix(m.MountPath, "/") {
			return true
		}
	}
	return false
}
