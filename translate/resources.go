package translate

import (
	"math"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resourceNvidiaGPU is the extended resource that maps to Mesos "gpus".
const resourceNvidiaGPU corev1.ResourceName = "nvidia.com/gpu"

// Defaults for a container that states neither a limit nor a request. Mesos
// has no best-effort class: every container must hold some cpus and mem.
const (
	defaultCPUs  = 0.1
	defaultMemMB = 32
)

const mib = 1 << 20

// containerAmounts is what a container holds on the agent. A limit wins over
// a request because the agent enforces what it is given as a hard cap, which
// is the meaning of a Kubernetes limit.
type containerAmounts struct {
	cpus, memMB, diskMB, gpus float64
}

func amountsOf(c *corev1.Container) containerAmounts {
	a := containerAmounts{cpus: defaultCPUs, memMB: defaultMemMB}
	if q, ok := pick(c.Resources, corev1.ResourceCPU); ok {
		a.cpus = toCPUs(q)
	}
	if q, ok := pick(c.Resources, corev1.ResourceMemory); ok {
		a.memMB = toMB(q)
	}
	if q, ok := pick(c.Resources, corev1.ResourceEphemeralStorage); ok {
		a.diskMB = toMB(q)
	}
	if q, ok := pick(c.Resources, resourceNvidiaGPU); ok {
		a.gpus = float64(scaled(q, 0))
	}
	return a
}

// pick returns the limit, else the request, ignoring zero amounts (which
// would make Mesos refuse the launch).
func pick(rr corev1.ResourceRequirements, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := rr.Limits[name]; ok && q.Sign() > 0 {
		return q, true
	}
	if q, ok := rr.Requests[name]; ok && q.Sign() > 0 {
		return q, true
	}
	return resource.Quantity{}, false
}

// toMB rounds up to whole MiB: Mesos counts mem and disk in megabytes, and
// rounding down could leave a container below what it asked for.
func toMB(q resource.Quantity) float64 {
	return math.Ceil(float64(scaled(q, 0)) / mib)
}

// toCPUs counts cores to the millicore, rounded up as Kubernetes does.
func toCPUs(q resource.Quantity) float64 {
	return float64(scaled(q, resource.Milli)) / 1000
}

// scaled is q in units of 10^scale, rounded up, held at MaxInt64 for
// quantities beyond it: ScaledValue overflows there, and a huge limit
// must not turn negative (Mesos refuses what no agent has; that is the
// agent's answer to give).
func scaled(q resource.Quantity, scale resource.Scale) int64 {
	if q.Cmp(*resource.NewScaledQuantity(math.MaxInt64, scale)) >= 0 {
		return math.MaxInt64
	}
	return q.ScaledValue(scale)
}

func (a containerAmounts) resources() []mesos.Resource {
	out := make([]mesos.Resource, 0, 4)
	out = append(out, resources.NewCPUs(a.cpus).Resource, resources.NewMemory(a.memMB).Resource)
	if a.diskMB > 0 {
		out = append(out, resources.NewDisk(a.diskMB).Resource)
	}
	if a.gpus > 0 {
		out = append(out, resources.NewGPUs(uint(a.gpus)).Resource)
	}
	return out
}

func (a containerAmounts) plus(b containerAmounts) containerAmounts {
	return containerAmounts{a.cpus + b.cpus, a.memMB + b.memMB, a.diskMB + b.diskMB, a.gpus + b.gpus}
}

func (a containerAmounts) max(b containerAmounts) containerAmounts {
	return containerAmounts{math.Max(a.cpus, b.cpus), math.Max(a.memMB, b.memMB), math.Max(a.diskMB, b.diskMB), math.Max(a.gpus, b.gpus)}
}

// PodResources is what the whole pod holds on an agent at its peak, by the
// scheduler's rule: app containers (and restartable "sidecar" init
// containers) run together and add up; ordinary init containers run one at a
// time, each next to the sidecars started before it; the pod needs the
// larger of the two, plus its declared overhead. Amounts per container are
// those of its Launch, defaults included, so the node status and the
// launches agree.
func PodResources(pod *corev1.Pod) (cpus, memMB, diskMB, gpus float64) {
	if pod == nil {
		return 0, 0, 0, 0
	}
	var apps, sidecars, peakInit containerAmounts
	for i := range pod.Spec.Containers {
		apps = apps.plus(amountsOf(&pod.Spec.Containers[i]))
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		a := amountsOf(c)
		if isSidecar(c) {
			apps = apps.plus(a)
			sidecars = sidecars.plus(a)
			peakInit = peakInit.max(sidecars)
			continue
		}
		peakInit = peakInit.max(a.plus(sidecars))
	}
	total := apps.max(peakInit)
	if oh := pod.Spec.Overhead; oh != nil {
		if q, ok := oh[corev1.ResourceCPU]; ok {
			total.cpus += toCPUs(q)
		}
		if q, ok := oh[corev1.ResourceMemory]; ok {
			total.memMB += toMB(q)
		}
		if q, ok := oh[corev1.ResourceEphemeralStorage]; ok {
			total.diskMB += toMB(q)
		}
	}
	// Mesos keeps scalars to three decimals; so do we, instead of handing
	// out sums like 0.30000000000000004.
	return roundMilli(total.cpus), total.memMB, total.diskMB, total.gpus
}

func roundMilli(x float64) float64 { return math.Round(x*1000) / 1000 }

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
