package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/translate"
)

// MainContainer is the one container of every pod: the task's container.
const MainContainer = "main"

// GPUResource is the extended resource the virtual nodes offer GPUs as.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// terminationGrace is Kubernetes' default, which the bridge also applies.
const terminationGrace = 30

// softConstraintWeight is the same for every soft constraint: Titus gave
// them no order.
const softConstraintWeight = 100

// newJob is a job about to be created.
type newJob struct {
	id, name string
	d        legacyapi.JobDescriptor
	accepted time.Time
}

// batchJob is an Indexed Job: one completion index per task slot, and a
// retry is a new pod of the same index, as a Titus retry is a new task.
// Retries are counted per index (backoffLimitPerIndex), so the job-wide
// backoffLimit is set out of the way; a replacement starts only once the
// failed pod has ended (podReplacementPolicy Failed), as a Titus retry
// follows a Finished task. runtimeLimitSec bounds the whole Job
// (activeDeadlineSeconds): Kubernetes has no per-pod limit that a virtual
// node enforces.
func (b *Backend) batchJob(j newJob) (*batchv1.Job, error) {
	tmpl, err := b.podTemplate(j, corev1.RestartPolicyNever)
	if err != nil {
		return nil, err
	}
	size := int32(j.d.Batch.Size)
	spec := batchv1.JobSpec{
		Parallelism:          ptr.To(size),
		Completions:          ptr.To(size),
		CompletionMode:       ptr.To(batchv1.IndexedCompletion),
		BackoffLimitPerIndex: ptr.To(int32(j.d.Batch.RetryPolicy.Retries())),
		BackoffLimit:         ptr.To(int32(math.MaxInt32)),
		PodReplacementPolicy: ptr.To(batchv1.Failed),
		Template:             tmpl,
	}
	if limit := uint64(j.d.Batch.RuntimeLimitSec); limit > 0 {
		spec.ActiveDeadlineSeconds = ptr.To(int64(min(limit, math.MaxInt64)))
	}
	meta, err := b.objectMeta(j)
	if err != nil {
		return nil, err
	}
	return &batchv1.Job{ObjectMeta: meta, Spec: spec}, nil
}

// deployment keeps Desired pods; min, max and enablement have no
// Kubernetes field and are kept in annotations for the job API.
func (b *Backend) deployment(j newJob) (*appsv1.Deployment, error) {
	tmpl, err := b.podTemplate(j, corev1.RestartPolicyAlways)
	if err != nil {
		return nil, err
	}
	meta, err := b.objectMeta(j)
	if err != nil {
		return nil, err
	}
	c := j.d.Service.Capacity
	meta.Annotations[AnnotationCapacityMin] = strconv.FormatUint(uint64(c.Min), 10)
	meta.Annotations[AnnotationCapacityMax] = strconv.FormatUint(uint64(c.Max), 10)
	meta.Annotations[AnnotationEnabled] = strconv.FormatBool(j.d.Service.Enabled)
	return &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(int32(c.Desired)),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelJobID: j.id}},
		Template: tmpl,
	}}, nil
}

func (b *Backend) objectMeta(j newJob) (metav1.ObjectMeta, error) {
	desc, err := json.Marshal(j.d)
	if err != nil {
		return metav1.ObjectMeta{}, fmt.Errorf("encode descriptor: %w", err)
	}
	annotations := identity(j.d)
	annotations[AnnotationDescriptor] = string(desc)
	annotations[AnnotationAcceptedAt] = stamp(j.accepted)
	return metav1.ObjectMeta{Name: j.name, Namespace: b.cfg.Namespace, Labels: labels(j), Annotations: annotations}, nil
}

// labels select a job's objects and pods (values sanitised) ...
func labels(j newJob) map[string]string {
	return map[string]string{
		LabelJobID:         j.id,
		LabelApplication:   labelValue(j.d.ApplicationName),
		LabelCapacityGroup: labelValue(j.d.CapacityGroup),
	}
}

// ... and identity keeps their exact strings.
func identity(d legacyapi.JobDescriptor) map[string]string {
	return map[string]string{LabelApplication: d.ApplicationName, LabelCapacityGroup: d.CapacityGroup}
}

// podTemplate is one task: the descriptor's container, on a virtual node
// whose agent satisfies the constraints, with the legacy container spec
// in the annotation the bridge launches from.
func (b *Backend) podTemplate(j newJob, restart corev1.RestartPolicy) (corev1.PodTemplateSpec, error) {
	c := j.d.Container
	selector, err := nodeSelector(c.HardConstraints)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	affinity, err := softAffinity(c.SoftConstraints)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	res := resources(c.Resources)
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels(j), Annotations: identity(j.d)},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:      MainContainer,
				Image:     c.Image.Reference(),
				Command:   c.EntryPoint,
				Args:      c.Command,
				Env:       env(c.Env),
				Resources: corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()},
			}},
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To(int64(terminationGrace)),
			NodeSelector:                  selector,
			Affinity:                      affinity,
			Tolerations: []corev1.Toleration{{
				// No effect: whichever the nodes were registered with.
				Key: b.cfg.TaintKey, Operator: corev1.TolerationOpEqual, Value: b.cfg.Provider,
			}},
			// A legacy task never had a Kubernetes identity, and the
			// annotation (authoritative for the main container) carries no
			// token volume.
			AutomountServiceAccountToken: ptr.To(false),
		},
	}
	info, err := containerInfo(b.cfg.Namespace, tmpl)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	tmpl.Annotations[translate.AnnotationContainerInfo] = info
	return tmpl, nil
}

// containerInfo is the annotation the bridge would derive for a pod of the
// template, derived here by the same code so that every pod of the job
// carries (and launches with) the same legacy spec.
func containerInfo(namespace string, tmpl corev1.PodTemplateSpec) (string, error) {
	pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: tmpl.Spec}
	pod.Namespace = namespace
	_, info, err := translate.PodLaunches(pod, nil)
	if err != nil {
		return "", &legacyapi.FieldError{Field: "container", Msg: err.Error()}
	}
	return info, nil
}

func resources(r *legacyapi.ContainerResources) corev1.ResourceList {
	mi := func(mb legacyapi.U32) resource.Quantity {
		return *resource.NewQuantity(int64(mb)<<20, resource.BinarySI)
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(math.Round(r.CPU*1000)), resource.DecimalSI),
		corev1.ResourceMemory: mi(r.MemoryMB),
	}
	if r.DiskMB > 0 {
		res[corev1.ResourceEphemeralStorage] = mi(r.DiskMB)
	}
	if r.GPU > 0 {
		res[GPUResource] = *resource.NewQuantity(int64(r.GPU), resource.DecimalSI)
	}
	return res
}

// env is sorted: a map has no order, and a stable spec means a stable pod.
func env(vars map[string]string) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		out = append(out, corev1.EnvVar{Name: k, Value: vars[k]})
	}
	return out
}

// nodeSelector pins pods to virtual nodes whose agents carry the hard
// constraints' attributes, as the provider labels them.
func nodeSelector(hard *legacyapi.Constraints) (map[string]string, error) {
	sel := map[string]string{"type": "virtual-kubelet"}
	if hard == nil {
		return sel, nil
	}
	for k, v := range hard.Constraints {
		key, err := attributeLabel("container.hardConstraints", k)
		if err != nil {
			return nil, err
		}
		sel[key] = labelValue(v)
	}
	return sel, nil
}

// softAffinity prefers, equally, nodes that meet each soft constraint.
func softAffinity(soft *legacyapi.Constraints) (*corev1.Affinity, error) {
	if soft == nil || len(soft.Constraints) == 0 {
		return nil, nil
	}
	var terms []corev1.PreferredSchedulingTerm
	for _, k := range slices.Sorted(maps.Keys(soft.Constraints)) {
		key, err := attributeLabel("container.softConstraints", k)
		if err != nil {
			return nil, err
		}
		terms = append(terms, corev1.PreferredSchedulingTerm{Weight: softConstraintWeight, Preference: corev1.NodeSelectorTerm{
			MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{labelValue(soft.Constraints[k])},
			}},
		}})
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: terms}}, nil
}

func attributeLabel(field, attribute string) (string, error) {
	key := translate.AttributeLabelPrefix + attribute
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return "", &legacyapi.FieldError{Field: field, Msg: fmt.Sprintf("%q cannot be an agent attribute label: %s", attribute, strings.Join(errs, "; "))}
	}
	return key, nil
}
