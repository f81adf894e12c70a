package translate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// defaultKillGrace is Kubernetes' default terminationGracePeriodSeconds.
// (Mesos' own KillPolicy default, 3 s, would be a surprise to pod authors.)
const defaultKillGrace = 30 * time.Second

// Launch is one pod container as the agent will run it. The mesos-go
// messages are meant to be passed through, untouched, to the agent client.
type Launch struct {
	ContainerName string
	ContainerID   string // ContainerID(pod.UID, name)
	Init          bool   // from spec.initContainers
	Command       *mesos.CommandInfo
	Container     *mesos.ContainerInfo // secret references already resolved
	Resources     []mesos.Resource
	KillGrace     time.Duration // from terminationGracePeriodSeconds (default 30s, as Kubernetes)
}

// Resolver supplies what the pod references by name: the bridge's resolver
// reads informer listers. A missing object must be reported with an error
// for which k8s.io/apimachinery/pkg/api/errors.IsNotFound is true (what a
// lister returns), so that optional volumes can be told apart from failures.
type Resolver interface {
	ConfigMap(namespace, name string) (map[string][]byte, error) // Data+BinaryData
	Secret(namespace, name string) (map[string][]byte, error)
}

// PodLaunches translates every init and app container of pod, init
// containers first, each group in spec order.
//
// The annotation, when present and valid, is authoritative for the main
// container (the first app container): the decoded ContainerInfo is used as
// is, only its secret references are resolved, in a copy. When it is absent
// the ContainerInfo is derived from the pod spec, and its encoding is
// returned so the caller can record it on the pod; when it is present the
// returned annotation is "". Commands, resources and the kill grace always
// come from the pod spec.
//
// Every launch, annotated or derived, passes the policy (policy.go) before
// any secret is read: it never grants its container more than the pod spec
// does, and a field that would is refused with a *PolicyError.
//
// Errors wrapping ErrInvalidSpec mean the pod can never run as written (an
// invalid annotation, a field the policy refuses, an unsupported volume):
// fail it. Other errors (a config map not found yet, a resolver failure)
// may heal: retry.
func PodLaunches(pod *corev1.Pod, r Resolver) (launches []Launch, annotation string, err error) {
	if pod == nil {
		return nil, "", invalidf("pod is nil")
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, "", invalidf("pod %s/%s has no containers", pod.Namespace, pod.Name)
	}
	if err := checkNames(pod); err != nil {
		return nil, "", err
	}
	vols, err := checkPodVolumes(pod)
	if err != nil {
		return nil, "", err
	}
	mainCI, present, err := ContainerInfoFromAnnotation(pod)
	if err != nil {
		return nil, "", err
	}

	grace := KillGrace(pod)
	pol := &policy{pod: pod, vols: vols}
	rs := &resolver{pod: pod, r: r}
	launches = make([]Launch, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	add := func(c *corev1.Container, init bool, ci *mesos.ContainerInfo) error {
		cmd, err := commandInfo(pod, c)
		if err != nil {
			return err
		}
		if err := pol.check(c, ci, cmd); err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
		resolved, err := rs.resolveVolumes(ci)
		if err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
		launches = append(launches, Launch{
			ContainerName: c.Name,
			ContainerID:   ContainerID(pod.UID, c.Name),
			Init:          init,
			Command:       cmd,
			Container:     resolved,
			Resources:     amountsOf(c).resources(),
			KillGrace:     grace,
		})
		return nil
	}

	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		ci, err := deriveContainerInfo(pod, c, vols)
		if err != nil {
			return nil, "", err
		}
		if err := add(c, true, ci); err != nil {
			return nil, "", err
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		var ci *mesos.ContainerInfo
		if i == 0 && present {
			ci = mainCI
		} else {
			if ci, err = deriveContainerInfo(pod, c, vols); err != nil {
				return nil, "", err
			}
			if i == 0 {
				if annotation, err = EncodeContainerInfo(ci); err != nil {
					return nil, "", fmt.Errorf("container %q: %w", c.Name, err)
				}
			}
		}
		if err := add(c, false, ci); err != nil {
			return nil, "", err
		}
	}
	return launches, annotation, nil
}

// deriveContainerInfo builds the ContainerInfo the spec implies: a Mesos
// (unified) container from a Docker image, with the pod's hostname. Every
// container of the pod gets the hostname, as every container of a
// Kubernetes pod sees it. securityContext beyond runAsUser (privileged,
// capabilities, seccomp, ...) is not translated.
func deriveContainerInfo(pod *corev1.Pod, c *corev1.Container, vols map[string]*corev1.Volume) (*mesos.ContainerInfo, error) {
	if strings.TrimSpace(c.Image) == "" {
		return nil, invalidf("container %q has no image", c.Name)
	}
	volumes, err := containerVolumes(pod, c, vols)
	if err != nil {
		return nil, err
	}
	host := podHostname(pod)
	ci := &mesos.ContainerInfo{
		Type: mesos.ContainerInfo_MESOS.Enum(),
		Mesos: &mesos.ContainerInfo_MesosInfo{
			Image: &mesos.Image{
				Type:   mesos.Image_DOCKER.Enum(),
				Docker: &mesos.Image_Docker{Name: c.Image},
			},
		},
		Volumes: volumes,
	}
	if host != "" {
		ci.Hostname = &host
	}
	if c.TTY {
		ci.TTYInfo = &mesos.TTYInfo{}
	}
	// The same rules as for an annotation, so that no container, annotated
	// or not, reaches the agent in a shape the master would refuse.
	if err := validateContainerInfo(ci); err != nil {
		return nil, fmt.Errorf("container %q: %w", c.Name, err)
	}
	return ci, nil
}

// checkNames holds container and volume names to the API server's rule
// (DNS-1123 labels, unique): container ids and sandbox paths are built from
// them, so a name with '/' or '..' in it, or a second container of the same
// name, would alias another container's or another volume's.
func checkNames(pod *corev1.Pod) error {
	seen := make(map[string]bool, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			name := cs[i].Name
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				return invalidf("container name %q: %s", name, strings.Join(errs, "; "))
			}
			if seen[name] {
				return invalidf("container name %q is used twice", name)
			}
			seen[name] = true
		}
	}
	vols := make(map[string]bool, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		name := pod.Spec.Volumes[i].Name
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return invalidf("volume name %q: %s", name, strings.Join(errs, "; "))
		}
		if vols[name] {
			return invalidf("volume name %q is used twice", name)
		}
		vols[name] = true
	}
	return nil
}

// podHostname is the kubelet's rule: spec.hostname, else the pod name cut
// to a DNS label (63 characters, no trailing '-' or '.').
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	h := pod.Name
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// workdirScript changes into $1, drops it, and execs the real command line,
// so the process keeps its argv and PID of a direct exec.
const workdirScript = `cd -- "$1" && shift && exec "$@"`

// commandInfo maps Kubernetes' command/args onto Mesos' CommandInfo, which
// with a container image follows the Docker rules (Mesos docker/runtime
// isolator), always with shell=false (Mesos defaults shell to true):
//
//   - command set: value = command[0], arguments = command + args (Mesos
//     arguments[0] is argv[0]); the image entrypoint and cmd are ignored.
//   - only args set: value unset, arguments = args; Mesos then runs the
//     image entrypoint with these arguments in place of the image cmd,
//     exactly Kubernetes' rule.
//   - neither: value unset, no arguments: the image's entrypoint + cmd.
//
// $(VAR) references in command and args are expanded with the container's
// environment, as the kubelet does.
//
// Mesos has no working-directory field (the docker/runtime isolator applies
// the image's WorkingDir). A workingDir is therefore carried by running the
// command through /bin/sh (see workdirScript): value = "/bin/sh",
// arguments = [sh, -c, script, vk-titus-workdir, workingDir, command...,
// args...]. This needs /bin/sh in the image and, unlike a container runtime,
// does not create a missing directory. Without a command the entrypoint is
// unknown here and cannot be wrapped, so workingDir without command is
// refused with ErrInvalidSpec.
//
// User is securityContext.runAsUser (container, else pod) as a decimal
// string; Mesos resolves it as a user name on the agent. runAsGroup and
// supplementalGroups have no Mesos field and are ignored.
func commandInfo(pod *corev1.Pod, c *corev1.Container) (*mesos.CommandInfo, error) {
	env := make(map[string]string, len(c.Env))
	vars := make([]mesos.Environment_Variable, 0, len(c.Env))
	for _, e := range c.Env {
		// The virtual-kubelet pod controller has already resolved valueFrom
		// and envFrom into plain values; what is left unresolved is dropped.
		if e.ValueFrom != nil {
			continue
		}
		if _, dup := env[e.Name]; dup {
			// Kubernetes: the later entry wins.
			for i := range vars {
				if vars[i].Name == e.Name {
					vars = append(vars[:i], vars[i+1:]...)
					break
				}
			}
		}
		env[e.Name] = e.Value
		vars = append(vars, mesos.Environment_Variable{
			Name:  e.Name,
			Type:  mesos.Environment_Variable_VALUE.Enum(),
			Value: strPtr(e.Value),
		})
	}
	// The controller hands env over in map order; sort for a stable launch.
	sort.SliceStable(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })

	argv := make([]string, 0, len(c.Command)+len(c.Args))
	for _, s := range c.Command {
		argv = append(argv, expandVars(s, env))
	}
	for _, s := range c.Args {
		argv = append(argv, expandVars(s, env))
	}

	cmd := &mesos.CommandInfo{Shell: boolPtr(false)}
	switch {
	case c.WorkingDir != "" && len(c.Command) == 0:
		return nil, invalidf("container %q: workingDir %q needs an explicit command on this platform (Mesos has no working-directory field)", c.Name, c.WorkingDir)
	case c.WorkingDir != "":
		cmd.Value = strPtr("/bin/sh")
		cmd.Arguments = append([]string{"sh", "-c", workdirScript, "vk-titus-workdir", c.WorkingDir}, argv...)
	case len(c.Command) > 0:
		cmd.Value = strPtr(argv[0])
		cmd.Arguments = argv
	case len(argv) > 0:
		cmd.Arguments = argv
	}
	if len(vars) > 0 {
		cmd.Environment = &mesos.Environment{Variables: vars}
	}
	if uid := runAsUser(pod, c); uid != nil {
		cmd.User = strPtr(strconv.FormatInt(*uid, 10))
	}
	return cmd, nil
}

func runAsUser(pod *corev1.Pod, c *corev1.Container) *int64 {
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	return nil
}

// KillGrace is the pod's termination grace period, with Kubernetes' default.
func KillGrace(pod *corev1.Pod) time.Duration {
	s := pod.Spec.TerminationGracePeriodSeconds
	if s == nil {
		return defaultKillGrace
	}
	if *s <= 0 {
		return 0
	}
	return time.Duration(*s) * time.Second
}

func strPtr(s string) *string { return &s }
func boolPtr(b bool) *bool    { return &b }
