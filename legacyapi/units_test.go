package legacyapi

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vk-titus/vk-titus/api/titus"
)

func TestNumbersAsProto3JSON(t *testing.T) {
	var b BatchJobSpec
	if err := json.Unmarshal([]byte(`{"size":"3","runtimeLimitSec":60}`), &b); err != nil || b.Size != 3 || b.RuntimeLimitSec != 60 {
		t.Fatalf("%+v %v", b, err)
	}
	out, _ := json.Marshal(b)
	if !strings.Contains(string(out), `"runtimeLimitSec":"60"`) || !strings.Contains(string(out), `"size":3`) {
		t.Fatalf("encoded %s", out)
	}
}

func TestParseCriteria(t *testing.T) {
	c, err := ParseCriteria(map[string]string{
		"attributes": "k1, k2:v2,k2:v3,k3,k3:x", "attributes.op": "OR", "jobType": "SERVICE", "jobState": "killinitiated",
		"taskStates": "launched,StartInitiated,started", "appName": " app ", "skipSystemFailures": "TRUE",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Criteria{
		Attributes: map[string][]string{"k1": nil, "k2": {"v2", "v3"}, "k3": {"", "x"}}, AttributesOr: true,
		JobType: "service", JobState: JobKillInitiated, TaskStates: []string{TaskLaunched, TaskStartInitiated, TaskStarted},
		ApplicationName: "app", SkipSystemFailures: true,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if c, err := ParseCriteria(map[string]string{"taskStates": "Started,any"}); err != nil || c.TaskStates != nil {
		t.Errorf("any: %+v %v", c.TaskStates, err)
	}
	for k, v := range map[string]string{"bogus": "1", "jobType": "daemon", "taskStates": "Sleeping", "jobState": "Done", "attributes.op": "xor"} {
		q := map[string]string{k: v}
		if k == "attributes.op" {
			q["attributes"] = "a"
		}
		if _, err := ParseCriteria(q); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
	// Map writes back what ParseCriteria reads.
	back, err := ParseCriteria(want.Map())
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestMatchAttributesAsTitus(t *testing.T) {
	j := Job{JobDescriptor: JobDescriptor{Attributes: map[string]string{"source": "spinnaker", "name": "a"}}}
	for q, want := range map[string]bool{
		"source":                      true,
		"source:spinnaker,name:a":     true,
		"source:spinnaker,name:b":     false,
		"source:x,source:spinnaker":   true,
		"missing":                     false,
		"missing,source:spinnaker|or": true,
		"missing,name:b|or":           false,
	} {
		attrs, op, _ := strings.Cut(q, "|")
		c := Criteria{Attributes: parseAttributes(attrs), AttributesOr: op == "or"}
		if got := MatchJob(c, j, nil); got != want {
			t.Errorf("%s: %v", q, got)
		}
	}
	if MatchJob(Criteria{Attributes: map[string][]string{"a": nil}}, Job{}, nil) {
		t.Error("a job without attributes matched an attribute filter")
	}
}

func TestProjectAsTitus(t *testing.T) {
	job := &titus.Job{Id: "j", Status: &titus.JobStatus{State: titus.JobStatus_Finished, ReasonCode: "normal"},
		StatusHistory: []*titus.JobStatus{{ReasonCode: "a"}, {ReasonCode: "b"}},
		JobDescriptor: &titus.JobDescriptor{ApplicationName: "app", Attributes: map[string]string{"name": "n", "other": "o"},
			Container: &titus.Container{Image: &titus.Image{Name: "img"}}}}
	shared := job.JobDescriptor.Attributes // the Backend's own, in the gateway
	Project(job, []string{"status.state", "jobDescriptor.attributes.name", "statusHistory.reasonCode"})
	if len(shared) != 2 {
		t.Fatalf("projection changed the map it shares: %v", shared)
	}
	want := &titus.Job{Id: "j", Status: &titus.JobStatus{State: titus.JobStatus_Finished},
		StatusHistory: []*titus.JobStatus{{ReasonCode: "a"}, {ReasonCode: "b"}},
		JobDescriptor: &titus.JobDescriptor{Attributes: map[string]string{"name": "n"}}}
	if !proto.Equal(job, want) {
		t.Fatalf("projected %v\nwant %v", job, want)
	}
}

// A descriptor read from proto and written back is the same message, the
// fields no world uses included.
func TestDescriptorProtoRoundTrip(t *testing.T) {
	in := &titus.JobDescriptor{}
	err := protojson.Unmarshal([]byte(`{
	  "applicationName": "a", "owner": {"teamEmail": "t@x"}, "capacityGroup": "g", "attributes": {"k": "v"},
	  "jobGroupInfo": {"stack": "s", "detail": "d", "sequence": "v1"},
	  "container": {"resources": {"cpu": 1.5, "gpu": 1, "memoryMB": 1024, "diskMB": 100, "networkMbps": 10, "allocateIP": true, "shmSizeMB": 64, "pool": "p"},
	    "securityProfile": {"securityGroups": ["sg"], "iamRole": "r", "attributes": {"a": "b"}},
	    "image": {"name": "i", "digest": "sha256:ab"}, "attributes": {"c": "d"}, "entryPoint": ["e"], "command": ["c"], "env": {"E": "1"},
	    "softConstraints": {"constraints": {"zone": "a"}}, "hardConstraints": {"expression": "x"},
	    "volumeMounts": [{"mountPath": "/m", "volumeName": "v"}]},
	  "service": {"capacity": {"min": 1, "max": 3, "desired": 2}, "enabled": true, "retryPolicy": {"delayed": {"initialDelayMs": "1", "delayMs": "2", "retries": 3}},
	    "migrationPolicy": {"selfManaged": {}}, "serviceJobProcesses": {"disableDecreaseDesired": true}},
	  "disruptionBudget": {"relocationLimit": {"limit": 3}, "ratePerInterval": {"intervalMs": "100", "limitPerInterval": 2}, "timeWindows": [{"days": ["Monday"]}]},
	  "networkConfiguration": {"networkMode": "HighScale"},
	  "extraContainers": [{"name": "side", "image": {"name": "s"}}],
	  "volumes": [{"name": "v", "sharedContainerVolumeSource": {"sourceContainer": "main", "sourcePath": "/d"}}],
	  "platformSidecars": [{"name": "ps", "channel": "c", "arguments": {"x": 1}}]
	}`), in)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DescriptorFromProto(in)
	if err != nil {
		t.Fatal(err)
	}
	// Stored as JSON (the master's records, the kube annotation) and back.
	text, _ := json.Marshal(d)
	var stored JobDescriptor
	if err := json.Unmarshal(text, &stored); err != nil {
		t.Fatal(err)
	}
	out, err := DescriptorToProto(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip lost something:\n in %v\nout %v", in, out)
	}
	task := Task{ID: "t", JobID: "j", TaskContext: map[string]string{"a": "b"}, Attributes: map[string]string{"k": "v"},
		Status: TaskStatus{State: TaskStarted, Timestamp: 5}, StatusHistory: []TaskStatus{{State: TaskAccepted, Timestamp: 1}, {State: TaskStarted, Timestamp: 5}}}
	if back := TaskFromProto(TaskToProto(task)); !reflect.DeepEqual(back, task) {
		t.Fatalf("task round trip: %+v", back)
	}
}

func TestChangeLogCoalescesAndBounds(t *testing.T) {
	l := NewChangeLog(4)
	for _, id := range []string{"a", "b", "a"} {
		l.Add(ChangeKey{ID: id})
	}
	keys, rev, _, ok := l.since(0)
	if !ok || rev != 3 || len(keys) != 2 || keys[0].ID != "a" || keys[1].ID != "b" {
		t.Fatalf("since 0: %v %d %v", keys, rev, ok)
	}
	for _, id := range []string{"c", "d"} {
		l.Add(ChangeKey{ID: id})
	}
	if _, _, _, ok := l.since(0); ok {
		t.Fatal("a reader 5 behind a log of 4 must start over")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var sent []string
	err := ObserveLog(ctx, l, func() ([]Change, error) { return []Change{{Job: &Job{ID: "snap"}}}, nil },
		func(keys []ChangeKey) ([]Change, error) {
			var out []Change
			for _, k := range keys {
				out = append(out, Change{Job: &Job{ID: k.ID}})
			}
			return out, nil
		}, func(c Change) error {
			switch {
			case c.SnapshotEnd:
				sent = append(sent, "end")
				l.Add(ChangeKey{ID: "e"})
			case c.Job != nil:
				sent = append(sent, c.Job.ID)
				if c.Job.ID == "e" {
					cancel()
				}
			}
			return nil
		})
	if err != nil || strings.Join(sent, ",") != "snap,end,e" {
		t.Fatalf("observe: %v %v", sent, err)
	}
}
