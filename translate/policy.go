package translate

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
)

// The policy: a Launch never grants a container more than the pod spec
// does, because the spec is what admission (PodSecurity, image policy,
// RBAC on the objects it names) has seen, and the annotation is not. Every
// field of ContainerInfo and CommandInfo is either harmless, allowed when
// the spec holds its Kubernetes equivalent, or refused outright because the
// spec has no equivalent. docs/security.md holds the table; the code below
// is its only implementation.

// PolicyError is a field of the legacy spec that asks for more than the pod
// spec grants. It wraps ErrInvalidSpec: the pod can never run as written.
type PolicyError struct {
	// Field names the refused field as "<message>: <path>", the message
	// being container-info (the annotation's ContainerInfo) or command
	// (the CommandInfo), the path spelled as in mesos.proto:
	// "container-info: volumes[0]", "command: user".
	Field string
	// Msg says what the field asks for and what the spec lacks.
	Msg string
}

func (e *PolicyError) Error() string { return e.Field + " " + e.Msg }

// Unwrap makes every PolicyError an ErrInvalidSpec for errors.Is.
func (e *PolicyError) Unwrap() error { return ErrInvalidSpec }

func refuse(field, format string, args ...any) error {
	return &PolicyError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

const (
	fieldCI  = "container-info: "
	fieldCmd = "command: "
)

// runtimeDefaultCapabilities is the set containerd and Docker give a
// container whose securityContext names no capabilities: what a Kubernetes
// pod gets without asking, and therefore what baseline PodSecurity allows.
var runtimeDefaultCapabilities = []string{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// policy checks the launches of one pod. It reads the pod and never changes
// it; what it derives from the spec is computed on first use and kept for
// the pod's other containers.
type policy struct {
	pod  *corev1.Pod
	vols map[string]*corev1.Volume // by name, from checkPodVolumes
	refs map[string]bool           // "<kind>:<name>" of objects the spec names; nil until needed
}

// check refuses, with a *PolicyError, the first field of ci or cmd that
// grants c more than the pod spec does. ci must have passed
// validateContainerInfo; cmd may be nil, to check ci alone.
func (p *policy) check(c *corev1.Container, ci *mesos.ContainerInfo, cmd *mesos.CommandInfo) error {
	g := newGrants(p.pod, c)
	if err := p.checkImage(g, ci); err != nil {
		return err
	}
	if d := ci.Docker; d != nil {
		if err := p.checkDocker(g, d); err != nil {
			return err
		}
	}
	if len(ci.NetworkInfos) > 0 {
		return refuse(fieldCI+"network_infos[0]", "%s: CNI networks, IP addresses and security groups have no pod spec field; the pod gets the agent's default network", ci.NetworkInfos[0].GetName())
	}
	if l := ci.LinuxInfo; l != nil {
		if err := p.checkLinux(g, l); err != nil {
			return err
		}
	}
	for i, r := range ci.GetRlimitInfo().GetRlimits() {
		field := fmt.Sprintf("%srlimit_info.rlimits[%d]", fieldCI, i)
		name, ok := mesos.RLimitInfo_RLimit_Type_name[int32(r.Type)]
		if !ok || r.Type == mesos.RLimitInfo_RLimit_UNKNOWN {
			return refuse(field, "unknown resource limit %d", int32(r.Type))
		}
		// Only CAP_SYS_RESOURCE lets a process raise its own hard limits,
		// and without the agent's limits a raise cannot be told from a
		// lowering.
		if !g.hasCap("SYS_RESOURCE") {
			return refuse(field, "%s: setting a resource limit needs SYS_RESOURCE, which the pod spec does not grant container %q (securityContext.capabilities.add, or privileged)", name, c.Name)
		}
	}
	for i := range ci.Volumes {
		if err := p.checkVolume(g, fmt.Sprintf("%svolumes[%d]", fieldCI, i), &ci.Volumes[i]); err != nil {
			return err
		}
	}
	if cmd != nil {
		return p.checkCommand(c, cmd)
	}
	return nil
}

// grants is what the spec lets one container do.
type grants struct {
	c          *corev1.Container
	privileged bool
	caps       map[string]bool // without CAP_ prefix; unused when privileged
	seccomp    *corev1.SeccompProfile
}

func newGrants(pod *corev1.Pod, c *corev1.Container) grants {
	g := grants{c: c}
	sc := c.SecurityContext
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		g.privileged = true
	}
	if sc != nil && sc.SeccompProfile != nil {
		g.seccomp = sc.SeccompProfile
	} else if psc := pod.Spec.SecurityContext; psc != nil {
		g.seccomp = psc.SeccompProfile
	}
	if g.privileged {
		return g
	}
	// The container runtime's rule (containerd's setOCICapabilities): ALL
	// in add grants everything, ALL in drop clears the set, then single
	// adds, then single drops.
	g.caps = make(map[string]bool, len(runtimeDefaultCapabilities))
	for _, n := range runtimeDefaultCapabilities {
		g.caps[n] = true
	}
	var add, drop []corev1.Capability
	if sc != nil && sc.Capabilities != nil {
		add, drop = sc.Capabilities.Add, sc.Capabilities.Drop
	}
	for _, a := range add {
		if capName(a) == "ALL" {
			for _, n := range mesos.CapabilityInfo_Capability_name {
				g.caps[n] = true
			}
		}
	}
	for _, d := range drop {
		if capName(d) == "ALL" {
			clear(g.caps)
		}
	}
	for _, a := range add {
		g.caps[capName(a)] = true
	}
	for _, d := range drop {
		delete(g.caps, capName(d))
	}
	return g
}

// capName spells a Kubernetes capability as Mesos does: upper case, no
// CAP_ prefix (the runtime accepts both).
func capName(c corev1.Capability) string {
	return strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
}

func (g grants) hasCap(name string) bool { return g.privileged || g.caps[name] }

// checkImage: the image is what image policies admitted, so the legacy
// spec must run the very image the container names.
func (p *policy) checkImage(g grants, ci *mesos.ContainerInfo) error {
	want := g.c.Image
	if ci.GetType() == mesos.ContainerInfo_DOCKER {
		if ci.Docker.Image != want {
			return refuse(fieldCI+"docker.image", "%q: the pod spec's container %q runs image %q", ci.Docker.Image, g.c.Name, want)
		}
		return nil
	}
	im := ci.GetMesos().GetImage()
	switch {
	case im == nil:
		return refuse(fieldCI+"mesos.image", "unset: a MESOS container without an image runs in the agent's root filesystem; the pod spec's container %q runs image %q", g.c.Name, want)
	case im.GetType() != mesos.Image_DOCKER:
		return refuse(fieldCI+"mesos.image", "%s image %q: the pod spec's container %q runs the Docker image %q", im.GetType(), im.GetAppc().GetName(), g.c.Name, want)
	case im.Docker.Name != want:
		return refuse(fieldCI+"mesos.image", "%q: the pod spec's container %q runs image %q", im.Docker.Name, g.c.Name, want)
	}
	if cfg := im.Docker.Config; cfg != nil {
		return p.checkSecret(fieldCI+"mesos.image.docker.config", "docker config", cfg)
	}
	return nil
}

func (p *policy) checkDocker(g grants, d *mesos.ContainerInfo_DockerInfo) error {
	if d.GetPrivileged() && !g.privileged {
		return refuse(fieldCI+"docker.privileged", "true: the pod spec's container %q is not privileged (securityContext.privileged)", g.c.Name)
	}
	if len(d.Parameters) > 0 && !g.privileged {
		// Options of docker run (--cap-add, --pid, -v, --device, ...) can
		// grant anything: only a privileged container has nothing to gain.
		return refuse(fieldCI+"docker.parameters[0]", "%s=%s: docker run options can grant anything; the pod spec's container %q must be privileged (securityContext.privileged)", d.Parameters[0].Key, d.Parameters[0].Value, g.c.Name)
	}
	if d.GetNetwork() == mesos.ContainerInfo_DockerInfo_HOST && !p.pod.Spec.HostNetwork {
		if d.Network == nil {
			return refuse(fieldCI+"docker.network", "unset, which Mesos reads as HOST: the pod spec does not set hostNetwork (set BRIDGE)")
		}
		return refuse(fieldCI+"docker.network", "HOST: the pod spec does not set hostNetwork")
	}
	for i, pm := range d.PortMappings {
		proto := strings.ToUpper(pm.GetProtocol())
		if proto == "" {
			proto = string(corev1.ProtocolTCP) // Mesos' and Kubernetes' default
		}
		if !hasHostPort(g.c, pm.HostPort, pm.ContainerPort, proto) {
			return refuse(fmt.Sprintf("%sdocker.port_mappings[%d]", fieldCI, i), "host port %d to %d/%s: the pod spec's container %q has no port with hostPort %d, containerPort %d, protocol %s", pm.HostPort, pm.ContainerPort, proto, g.c.Name, pm.HostPort, pm.ContainerPort, proto)
		}
	}
	if d.VolumeDriver != nil {
		return refuse(fieldCI+"docker.volume_driver", "%q: a volume driver can mount anything on the host; the pod spec has no equivalent", *d.VolumeDriver)
	}
	return nil
}

func hasHostPort(c *corev1.Container, host, ctr uint32, proto string) bool {
	for _, p := range c.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if int64(p.HostPort) == int64(host) && int64(p.ContainerPort) == int64(ctr) && string(pp) == proto {
			return true
		}
	}
	return false
}

func (p *policy) checkLinux(g grants, l *mesos.LinuxInfo) error {
	for _, set := range []struct {
		field string
		info  *mesos.CapabilityInfo
	}{
		{"linux_info.capability_info", l.CapabilityInfo},
		{"linux_info.bounding_capabilities", l.BoundingCapabilities},
		{"linux_info.effective_capabilities", l.EffectiveCapabilities},
	} {
		for _, c := range set.info.GetCapabilities() {
			name, ok := mesos.CapabilityInfo_Capability_name[int32(c)]
			if !ok || c == mesos.CapabilityInfo_UNKNOWN {
				return refuse(fieldCI+set.field, "unknown capability %d", int32(c))
			}
			if !g.hasCap(name) {
				return refuse(fieldCI+set.field, "%s: the pod spec does not grant container %q this capability (securityContext.capabilities.add, or privileged)", name, g.c.Name)
			}
		}
	}
	// A top-level container's "parent" is the agent: sharing its PID or IPC
	// namespace is sharing the host's.
	if l.GetSharePIDNamespace() && !p.pod.Spec.HostPID {
		return refuse(fieldCI+"linux_info.share_pid_namespace", "true: the pod spec does not set hostPID")
	}
	if m := l.IPCMode; m != nil {
		switch *m {
		case mesos.LinuxInfo_PRIVATE:
		case mesos.LinuxInfo_SHARE_PARENT:
			if !p.pod.Spec.HostIPC {
				return refuse(fieldCI+"linux_info.ipc_mode", "SHARE_PARENT: the pod spec does not set hostIPC")
			}
		default:
			return refuse(fieldCI+"linux_info.ipc_mode", "unknown IPC mode %d", int32(*m))
		}
	}
	if s := l.Seccomp; s != nil {
		return checkSeccomp(g, s)
	}
	return nil
}

// checkSeccomp maps Mesos' profile (a file under the agent's
// --seccomp_config_dir) onto a Localhost profile (a file under the
// kubelet's seccomp directory) and unconfined onto Unconfined. A privileged
// container runs unconfined anyway, so it may ask for either.
func checkSeccomp(g grants, s *mesos.SeccompInfo) error {
	const field = fieldCI + "linux_info.seccomp"
	unconfined, profile := s.GetUnconfined(), s.GetProfileName()
	switch {
	case unconfined && profile != "":
		return refuse(field, "both unconfined and profile_name %q are set", profile)
	case !unconfined && profile == "":
		return refuse(field, "neither unconfined nor profile_name is set")
	case g.privileged:
		return nil
	case unconfined:
		if g.seccomp == nil || g.seccomp.Type != corev1.SeccompProfileTypeUnconfined {
			return refuse(field, "unconfined: the pod spec does not give container %q seccompProfile type Unconfined", g.c.Name)
		}
	default:
		sp := g.seccomp
		if sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || sp.LocalhostProfile == nil || *sp.LocalhostProfile != profile {
			return refuse(field, "profile_name %q: the pod spec does not give container %q seccompProfile type Localhost with localhostProfile %q", profile, g.c.Name, profile)
		}
	}
	return nil
}

func (p *policy) checkVolume(g grants, field string, v *mesos.Volume) error {
	if v.Image != nil {
		return refuse(field, "image volume: the pod spec has no image volume this package supports, and its image was not admitted")
	}
	if v.HostPath != nil { // the pre-Source way of asking for a host path
		switch {
		case v.Source != nil:
			return refuse(field, "host_path %q and source are both set", *v.HostPath)
		case !path.IsAbs(*v.HostPath):
			return refuse(field, "host_path %q is relative to the sandbox, where it may climb out: use source SANDBOX_PATH", *v.HostPath)
		}
		return p.checkHostPath(g, field, "host_path", *v.HostPath, v.ContainerPath, v.GetMode(), nil)
	}
	src := v.Source
	if src == nil {
		return refuse(field, "%q has neither source nor host_path", v.ContainerPath)
	}
	switch src.Type {
	case mesos.Volume_Source_SANDBOX_PATH:
		if src.SandboxPath.Type != mesos.Volume_Source_SandboxPath_SELF {
			return refuse(field, "SANDBOX_PATH %s %q: the container is top-level and has no parent sandbox", src.SandboxPath.Type, src.SandboxPath.Path)
		}
		return nil
	case mesos.Volume_Source_HOST_PATH:
		return p.checkHostPath(g, field, "HOST_PATH", src.HostPath.Path, v.ContainerPath, v.GetMode(), src.HostPath.MountPropagation)
	case mesos.Volume_Source_SECRET:
		return p.checkSecret(field, "SECRET", src.Secret)
	case mesos.Volume_Source_DOCKER_VOLUME:
		return refuse(field, "DOCKER_VOLUME %q: a named Docker volume lives on the host, shared with any container that names it; the pod spec has no equivalent", src.DockerVolume.Name)
	}
	return refuse(field, "unknown source type %d", int32(src.Type))
}

// checkHostPath wants a hostPath volume of the spec, mounted by the same
// container at the same place, with the same path (subPath included), no
// more writable and propagating no more than the spec's mount.
func (p *policy) checkHostPath(g grants, field, what, hostPath, containerPath string, mode mesos.Volume_Mode, prop *mesos.MountPropagation) error {
	bidirectional := false
	if prop != nil && prop.Mode != nil {
		switch *prop.Mode {
		case mesos.MountPropagation_HOST_TO_CONTAINER:
		case mesos.MountPropagation_BIDIRECTIONAL:
			bidirectional = true
		default:
			return refuse(field, "%s %s: unknown mount propagation %d", what, hostPath, int32(*prop.Mode))
		}
	}
	host, at := path.Clean(hostPath), path.Clean(containerPath)
	var mismatch error
	for _, m := range g.c.VolumeMounts {
		sv := p.vols[m.Name]
		if sv == nil || sv.HostPath == nil || path.Clean(m.MountPath) != at || path.Clean(joinSub(sv.HostPath.Path, m.SubPath)) != host {
			continue
		}
		switch {
		case m.ReadOnly && mode != mesos.RO:
			mismatch = refuse(field, "%s %s: mode %s, but the pod spec mounts it readOnly at %s", what, hostPath, mode, containerPath)
		case bidirectional && (m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional):
			mismatch = refuse(field, "%s %s: mount propagation BIDIRECTIONAL, but the pod spec's mount at %s is not mountPropagation Bidirectional", what, hostPath, containerPath)
		default:
			return nil
		}
	}
	if mismatch != nil {
		return mismatch
	}
	return refuse(field, "%s %s: the pod spec has no hostPath volume %s mounted at %s", what, hostPath, hostPath, containerPath)
}

// checkSecret allows secret values (the pod's author wrote them) and the
// references of this package's scheme that stay in the pod's namespace and
// name an object the spec already names: what the node authorizer would let
// a kubelet read for this pod. Other references name secrets in a store
// outside Kubernetes, which no pod spec can name.
func (p *policy) checkSecret(field, what string, s *mesos.Secret) error {
	if s == nil {
		return refuse(field, "%s: no secret", what)
	}
	if s.Type == mesos.Secret_VALUE {
		return nil
	}
	name := s.GetReference().GetName()
	kind, rest, ours := splitReference(name)
	if !ours {
		return refuse(field, "%s %s: only %s:, %s: and %s: references can be checked against the pod spec", what, name, refConfigMap, refSecret, refDownward)
	}
	if kind == refDownward {
		if !knownFieldPath(rest) {
			return refuse(field, "%s %s: unsupported downward API fieldPath %q", what, name, rest)
		}
		return nil
	}
	ns, obj, _, err := parseObjectReference(rest)
	switch {
	case err != nil:
		return refuse(field, "%s %s: %v", what, name, err)
	case ns != p.pod.Namespace:
		return refuse(field, "%s %s: references must stay in the pod's namespace %q", what, name, p.pod.Namespace)
	case !p.references()[kind+":"+obj]:
		return refuse(field, "%s %s: the pod spec does not reference %s %q (volumes, env, envFrom, imagePullSecrets)", what, name, kind, obj)
	}
	return nil
}

// references lists the config maps and secrets the pod spec names, in any
// volume, any container's env and envFrom, or imagePullSecrets.
func (p *policy) references() map[string]bool {
	if p.refs != nil {
		return p.refs
	}
	refs := make(map[string]bool)
	spec := &p.pod.Spec
	for i := range spec.Volumes {
		vs := &spec.Volumes[i].VolumeSource
		switch {
		case vs.ConfigMap != nil:
			refs[refConfigMap+":"+vs.ConfigMap.Name] = true
		case vs.Secret != nil:
			refs[refSecret+":"+vs.Secret.SecretName] = true
		case vs.Projected != nil:
			for _, s := range vs.Projected.Sources {
				if s.ConfigMap != nil {
					refs[refConfigMap+":"+s.ConfigMap.Name] = true
				}
				if s.Secret != nil {
					refs[refSecret+":"+s.Secret.Name] = true
				}
			}
		}
	}
	addEnv := func(env []corev1.EnvVar, from []corev1.EnvFromSource) {
		for _, e := range env {
			if vf := e.ValueFrom; vf != nil && vf.ConfigMapKeyRef != nil {
				refs[refConfigMap+":"+vf.ConfigMapKeyRef.Name] = true
			} else if vf != nil && vf.SecretKeyRef != nil {
				refs[refSecret+":"+vf.SecretKeyRef.Name] = true
			}
		}
		for _, f := range from {
			if f.ConfigMapRef != nil {
				refs[refConfigMap+":"+f.ConfigMapRef.Name] = true
			}
			if f.SecretRef != nil {
				refs[refSecret+":"+f.SecretRef.Name] = true
			}
		}
	}
	for i := range spec.InitContainers {
		addEnv(spec.InitContainers[i].Env, spec.InitContainers[i].EnvFrom)
	}
	for i := range spec.Containers {
		addEnv(spec.Containers[i].Env, spec.Containers[i].EnvFrom)
	}
	for i := range spec.EphemeralContainers {
		addEnv(spec.EphemeralContainers[i].Env, spec.EphemeralContainers[i].EnvFrom)
	}
	for _, s := range spec.ImagePullSecrets {
		refs[refSecret+":"+s.Name] = true
	}
	p.refs = refs
	return refs
}

// checkCommand: the user must be the spec's runAsUser, as the uid in
// decimal. A name is refused even when it may be that uid: names resolve on
// the agent, where any of them can be root. The fetcher's URIs are refused:
// the agent downloads them with its own network position and credentials.
func (p *policy) checkCommand(c *corev1.Container, cmd *mesos.CommandInfo) error {
	const field = fieldCmd + "user"
	uid := runAsUser(p.pod, c)
	switch {
	case cmd.User == nil && uid != nil:
		return refuse(field, "unset: the agent's default user would run container %q, but the pod spec sets runAsUser %d", c.Name, *uid)
	case cmd.User != nil && uid == nil:
		return refuse(field, "%q: the pod spec sets no runAsUser for container %q", *cmd.User, c.Name)
	case cmd.User != nil && *cmd.User != strconv.FormatInt(*uid, 10):
		return refuse(field, "%q: the pod spec runs container %q as runAsUser %d (the user must be that uid in decimal)", *cmd.User, c.Name, *uid)
	}
	if len(cmd.URIs) > 0 {
		return refuse(fieldCmd+"uris[0]", "%q: the agent's fetcher downloads with the agent's own network and credentials; the pod spec has no equivalent", cmd.URIs[0].Value)
	}
	for i, v := range cmd.GetEnvironment().GetVariables() {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			if err := p.checkSecret(fmt.Sprintf("%senvironment.variables[%d]", fieldCmd, i), v.Name, v.Secret); err != nil {
				return err
			}
		}
	}
	return nil
}
