package kube

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/translate"
)

func TestCreateBatchJob(t *testing.T) {
	b, client := newTestBackend(t)
	d := batchDescriptor()
	id, _ := create(t, b, d)
	if !strings.HasPrefix(id, legacyapi.KubePrefix) {
		t.Fatalf("id %q lacks the kube prefix", id)
	}
	jobs, err := client.BatchV1().Jobs(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("Jobs: %v, %v", jobs, err)
	}
	job := jobs.Items[0]
	if want := "my-app-v2-" + strings.TrimPrefix(id, legacyapi.KubePrefix)[:8]; job.Name != want {
		t.Errorf("name %q, want %q", job.Name, want)
	}
	wantLabels := map[string]string{LabelJobID: id, LabelApplication: "My_App.v2", LabelCapacityGroup: "Flex_Pool"}
	if !reflect.DeepEqual(job.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", job.Labels, wantLabels)
	}
	if a := job.Annotations; a[LabelApplication] != "My_App.v2" || a[LabelCapacityGroup] != "Flex_Pool." || a[AnnotationAcceptedAt] == "" {
		t.Errorf("annotations %v", a)
	}
	var stored legacyapi.JobDescriptor
	if err := json.Unmarshal([]byte(job.Annotations[AnnotationDescriptor]), &stored); err != nil || !reflect.DeepEqual(stored, d) {
		t.Errorf("descriptor annotation %s (%v), want %+v", job.Annotations[AnnotationDescriptor], err, d)
	}

	s := job.Spec
	if *s.Completions != 3 || *s.Parallelism != 3 || *s.CompletionMode != "Indexed" || *s.BackoffLimitPerIndex != 2 ||
		*s.BackoffLimit != math.MaxInt32 || *s.ActiveDeadlineSeconds != 600 || *s.PodReplacementPolicy != "Failed" {
		t.Errorf("job spec %+v", s)
	}
	ps := s.Template.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever || *ps.TerminationGracePeriodSeconds != 30 || *ps.AutomountServiceAccountToken {
		t.Errorf("pod spec %+v", ps)
	}
	if !reflect.DeepEqual(s.Template.Labels, wantLabels) {
		t.Errorf("template labels %v", s.Template.Labels)
	}
	wantTol := []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpEqual, Value: "titus"}}
	if !reflect.DeepEqual(ps.Tolerations, wantTol) {
		t.Errorf("tolerations %+v", ps.Tolerations)
	}
	if want := map[string]string{"type": "virtual-kubelet", "legacy.vk-titus.io/zone": "us-east-1a"}; !reflect.DeepEqual(ps.NodeSelector, want) {
		t.Errorf("node selector %v", ps.NodeSelector)
	}
	prefs := ps.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(prefs) != 2 || prefs[0].Preference.MatchExpressions[0].Key != "legacy.vk-titus.io/arch" ||
		prefs[1].Preference.MatchExpressions[0].Values[0] != "r-1" {
		t.Errorf("soft constraints %+v", prefs)
	}

	c := ps.Containers[0]
	if c.Name != "main" || c.Image != "registry.example.com/app:1.0" || !reflect.DeepEqual(c.Command, []string{"/bin/run"}) ||
		!reflect.DeepEqual(c.Args, []string{"--fast"}) {
		t.Errorf("container %+v", c)
	}
	if want := []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("env %v", c.Env)
	}
	wantRes := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("512Mi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"), GPUResource: resource.MustParse("1"),
	}
	for name, want := range wantRes {
		if got := c.Resources.Requests[name]; got.Cmp(want) != 0 {
			t.Errorf("request %s = %s, want %s", name, got.String(), want.String())
		}
		if got := c.Resources.Limits[name]; got.Cmp(want) != 0 {
			t.Errorf("limit %s = %s, want %s", name, got.String(), want.String())
		}
	}

	ci, err := translate.DecodeContainerInfo(s.Template.Annotations[translate.AnnotationContainerInfo])
	if err != nil {
		t.Fatal(err)
	}
	if img := ci.GetMesos().GetImage().GetDocker().GetName(); img != "registry.example.com/app:1.0" {
		t.Errorf("container-info image %q", img)
	}

	got, err := b.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.JobDescriptor, d) || got.Status.State != legacyapi.JobAccepted || len(got.StatusHistory) != 1 {
		t.Errorf("GetJob: %+v", got)
	}
}

func TestCreateServiceJob(t *testing.T) {
	b, client := newTestBackend(t)
	d := serviceDescriptor()
	id, o := create(t, b, d)
	dep, err := client.AppsV1().Deployments(testNS).Get(context.Background(), o.meta.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 || !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, map[string]string{LabelJobID: id}) {
		t.Errorf("deployment spec %+v", dep.Spec)
	}
	if a := dep.Annotations; a[AnnotationCapacityMin] != "1" || a[AnnotationCapacityMax] != "5" || a[AnnotationEnabled] != "true" {
		t.Errorf("annotations %v", a)
	}
	if dep.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || dep.Spec.Template.Labels[LabelJobID] != id {
		t.Errorf("template %+v", dep.Spec.Template)
	}
	got, err := b.GetJob(context.Background(), id)
	if err != nil || !reflect.DeepEqual(got.JobDescriptor, d) {
		t.Errorf("GetJob: %+v, %v", got, err)
	}
}

func TestCreateJobRefusals(t *testing.T) {
	b, _ := newTestBackend(t)
	d := batchDescriptor()
	d.Container.HardConstraints.Constraints["bad key!"] = "x"
	_, err := b.CreateJob(context.Background(), d)
	wantErr(t, err, legacyapi.ErrInvalid)

	d = batchDescriptor()
	d.Container = nil
	_, err = b.CreateJob(context.Background(), d)
	wantErr(t, err, legacyapi.ErrInvalid)
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"My_App.v2":              "my-app-v2-abcd1234",
		"---":                    "job-abcd1234",
		strings.Repeat("a", 100): strings.Repeat("a", 40) + "-abcd1234",
	} {
		if got := objectName(in, "abcd1234"); got != want {
			t.Errorf("objectName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"flex/pool":                   "flex-pool",
		"_x_":                         "x",
		strings.Repeat("b", 70):       strings.Repeat("b", 63),
		"a" + strings.Repeat("-", 70): "a",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.Namespace != "vk-titus-jobs" || c.Provider != "titus" || c.FinishedTaskMemory != 10000 {
		t.Errorf("defaults %+v, %v", c, err)
	}
	if _, err := (Config{Namespace: "Not_A_Namespace"}).withDefaults(); err == nil {
		t.Error("an invalid namespace was accepted")
	}
}
