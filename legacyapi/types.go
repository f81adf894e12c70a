package legacyapi

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// U32 is a proto3 uint32: written as a JSON number, read from a number or a
// string, as proto3 JSON parsers accept both.
type U32 uint32

// UnmarshalJSON implements json.Unmarshaler.
func (u *U32) UnmarshalJSON(b []byte) error {
	v, err := parseUint(b, 32)
	*u = U32(v)
	return err
}

// U64 is a proto3 uint64: written as a JSON string, read from either.
type U64 uint64

// MarshalJSON implements json.Marshaler.
func (u U64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(u), 10) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (u *U64) UnmarshalJSON(b []byte) error {
	v, err := parseUint(b, 64)
	*u = U64(v)
	return err
}

func parseUint(b []byte, bits int) (uint64, error) {
	s := string(b)
	if s == "null" {
		return 0, nil
	}
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("not an unsigned %d-bit integer: %s", bits, b)
	}
	return v, nil
}

// JobDescriptor is everything a job was submitted with. The fields typed
// here are the ones some world acts on; the json.RawMessage ones hold the
// proto3 JSON of their Titus message, kept and returned as given (see
// Validate for which of them must be empty).
type JobDescriptor struct {
	Owner           *Owner            `json:"owner,omitempty"`
	ApplicationName string            `json:"applicationName"`
	CapacityGroup   string            `json:"capacityGroup,omitempty"`
	JobGroupInfo    *JobGroupInfo     `json:"jobGroupInfo,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	Container       *Container        `json:"container,omitempty"`
	Batch           *BatchJobSpec     `json:"batch,omitempty"`
	Service         *ServiceJobSpec   `json:"service,omitempty"`
	// Kept and returned as given, not enforced: neither world has a
	// disruption budget or VPC settings to apply them to.
	DisruptionBudget     json.RawMessage `json:"disruptionBudget,omitempty"`
	NetworkConfiguration json.RawMessage `json:"networkConfiguration,omitempty"`
	// Accepted empty only (Validate): dropping them silently would run
	// something other than what was asked.
	ExtraContainers  json.RawMessage `json:"extraContainers,omitempty"`
	Volumes          json.RawMessage `json:"volumes,omitempty"`
	PlatformSidecars json.RawMessage `json:"platformSidecars,omitempty"`
}

// Owner of a job.
type Owner struct {
	TeamEmail string `json:"teamEmail"`
}

// JobGroupInfo makes up the job's full name: app-stack-detail-sequence.
type JobGroupInfo struct {
	Stack    string `json:"stack,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Sequence string `json:"sequence,omitempty"`
}

// Container is what each task runs.
type Container struct {
	Resources       *ContainerResources `json:"resources,omitempty"`
	SecurityProfile json.RawMessage     `json:"securityProfile,omitempty"` // kept, not enforced
	Image           *Image              `json:"image,omitempty"`
	Attributes      map[string]string   `json:"attributes,omitempty"`
	EntryPoint      []string            `json:"entryPoint,omitempty"`
	Command         []string            `json:"command,omitempty"`
	Env             map[string]string   `json:"env,omitempty"`
	SoftConstraints *Constraints        `json:"softConstraints,omitempty"`
	HardConstraints *Constraints        `json:"hardConstraints,omitempty"`
	Experimental    json.RawMessage     `json:"experimental,omitempty"` // kept, not enforced
	// Accepted empty only (Validate), like JobDescriptor.Volumes.
	VolumeMounts json.RawMessage `json:"volumeMounts,omitempty"`
}

// ContainerResources are one task's resources.
type ContainerResources struct {
	CPU         float64 `json:"cpu"`
	GPU         U32     `json:"gpu,omitempty"`
	MemoryMB    U32     `json:"memoryMB"`
	DiskMB      U32     `json:"diskMB,omitempty"`
	NetworkMbps U32     `json:"networkMbps,omitempty"`
	AllocateIP  bool    `json:"allocateIP,omitempty"` // deprecated in Titus; accepted
	ShmSizeMB   U32     `json:"shmSizeMB,omitempty"`  // kept, not enforced
	// Accepted empty only (Validate): no EFS and no VPC address service
	// here, and a task must not start without what it asked for.
	EfsMounts                json.RawMessage `json:"efsMounts,omitempty"`
	SignedAddressAllocations json.RawMessage `json:"signedAddressAllocations,omitempty"`
	Pool                     string          `json:"pool,omitempty"`
	StaticIPAddressIDs       json.RawMessage `json:"staticIPAddressIDs,omitempty"`
}

// Image is a name with a tag or a digest.
type Image struct {
	Name   string `json:"name"`
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Reference is the image as one string: name:tag or name@digest.
func (i Image) Reference() string {
	if i.Digest != "" {
		return i.Name + "@" + i.Digest
	}
	return i.Name + ":" + i.Tag
}

// Constraints are agent constraints: name → value, all must hold.
type Constraints struct {
	Constraints map[string]string `json:"constraints,omitempty"`
	Expression  string            `json:"expression,omitempty"` // accepted empty only: not supported by Titus either
}

// BatchJobSpec: run Size tasks to completion.
type BatchJobSpec struct {
	Size                U32          `json:"size"`
	RuntimeLimitSec     U64          `json:"runtimeLimitSec,omitempty"`
	RetryPolicy         *RetryPolicy `json:"retryPolicy,omitempty"`
	RetryOnRuntimeLimit bool         `json:"retryOnRuntimeLimit,omitempty"`
}

// ServiceJobSpec: keep Capacity.Desired tasks running.
type ServiceJobSpec struct {
	Capacity            *Capacity            `json:"capacity,omitempty"`
	Enabled             bool                 `json:"enabled"`
	RetryPolicy         *RetryPolicy         `json:"retryPolicy,omitempty"`
	MigrationPolicy     json.RawMessage      `json:"migrationPolicy,omitempty"` // kept, not enforced
	ServiceJobProcesses *ServiceJobProcesses `json:"serviceJobProcesses,omitempty"`
}

// ServiceJobProcesses forbid changes of a service job's desired size
// (JobUpdate.Apply enforces them); tasks that end are still replaced.
type ServiceJobProcesses struct {
	DisableIncreaseDesired bool `json:"disableIncreaseDesired,omitempty"`
	DisableDecreaseDesired bool `json:"disableDecreaseDesired,omitempty"`
}

// Capacity of a service job: Min ≤ Desired ≤ Max.
type Capacity struct {
	Min     U32 `json:"min"`
	Max     U32 `json:"max"`
	Desired U32 `json:"desired"`
}

// RetryPolicy holds exactly one of its kinds.
type RetryPolicy struct {
	Immediate          *ImmediateRetry   `json:"immediate,omitempty"`
	Delayed            *DelayedRetry     `json:"delayed,omitempty"`
	ExponentialBackOff *ExponentialRetry `json:"exponentialBackOff,omitempty"`
}

// ImmediateRetry retries at once.
type ImmediateRetry struct {
	Retries U32 `json:"retries"`
}

// DelayedRetry retries after a fixed delay.
type DelayedRetry struct {
	InitialDelayMs U64 `json:"initialDelayMs,omitempty"`
	DelayMs        U64 `json:"delayMs,omitempty"`
	Retries        U32 `json:"retries"`
}

// ExponentialRetry retries with a growing delay.
type ExponentialRetry struct {
	InitialDelayMs     U64 `json:"initialDelayMs,omitempty"`
	MaxDelayIntervalMs U64 `json:"maxDelayIntervalMs,omitempty"`
	Retries            U32 `json:"retries"`
}

// Retries is how many times a failed task is replaced (0 without a policy).
func (r *RetryPolicy) Retries() int {
	switch {
	case r == nil:
		return 0
	case r.Immediate != nil:
		return int(r.Immediate.Retries)
	case r.Delayed != nil:
		return int(r.Delayed.Retries)
	case r.ExponentialBackOff != nil:
		return int(r.ExponentialBackOff.Retries)
	}
	return 0
}

// Job states.
const (
	JobAccepted      = "Accepted"
	JobKillInitiated = "KillInitiated"
	JobFinished      = "Finished"
)

// Task states (the Titus names; statemachine maps every world onto them).
const (
	TaskAccepted       = "Accepted"
	TaskLaunched       = "Launched"
	TaskStartInitiated = "StartInitiated"
	TaskStarted        = "Started"
	TaskKillInitiated  = "KillInitiated"
	TaskDisconnected   = "Disconnected"
	TaskFinished       = "Finished"
)

// JobStatus is a job state with why and when (milliseconds since the epoch).
type JobStatus struct {
	State         string `json:"state"`
	ReasonCode    string `json:"reasonCode,omitempty"`
	ReasonMessage string `json:"reasonMessage,omitempty"`
	Timestamp     U64    `json:"timestamp"`
}

// Job is a job as queries return it.
type Job struct {
	ID            string        `json:"id"`
	JobDescriptor JobDescriptor `json:"jobDescriptor"`
	Status        JobStatus     `json:"status"`
	StatusHistory []JobStatus   `json:"statusHistory"`
}

// TaskStatus is a task state with why and when.
type TaskStatus struct {
	State         string `json:"state"`
	ReasonCode    string `json:"reasonCode,omitempty"`
	ReasonMessage string `json:"reasonMessage,omitempty"`
	Timestamp     U64    `json:"timestamp"`
}

// Task context keys this API fills in, beside Titus's own agent.* and task.*.
const (
	ContextAgentHost  = "agent.host"
	ContextAgentID    = "agent.id"
	ContextTaskIndex  = "task.index"
	ContextResubmitOf = "task.resubmitOf"
	ContextExitCode   = "task.exitCode" // once Finished with an exit code
	ContextBackend    = "task.backend"  // "legacy" or "kube"
	ContextPod        = "kube.pod"      // namespace/name
	ContextNode       = "kube.node"
)

// Task is one container run of a job.
type Task struct {
	ID            string            `json:"id"`
	JobID         string            `json:"jobId"`
	TaskContext   map[string]string `json:"taskContext"`
	Status        TaskStatus        `json:"status"`
	StatusHistory []TaskStatus      `json:"statusHistory"`
	Attributes    map[string]string `json:"attributes,omitempty"`
}

// Page asks for one page: PageSize items after Cursor.
type Page struct {
	PageNumber int    `json:"pageNumber"`
	PageSize   int    `json:"pageSize"`
	Cursor     string `json:"cursor,omitempty"`
}

// Pagination tells where a page stands.
type Pagination struct {
	CurrentPage Page   `json:"currentPage"`
	HasMore     bool   `json:"hasMore"`
	TotalPages  int    `json:"totalPages"`
	TotalItems  int    `json:"totalItems"`
	Cursor      string `json:"cursor,omitempty"`
	// CursorPosition is the cursor's index in the whole ordered list.
	CursorPosition int `json:"cursorPosition"`
}

// JobQueryResult is a page of jobs.
type JobQueryResult struct {
	Items      []Job      `json:"items"`
	Pagination Pagination `json:"pagination"`
}

// TaskQueryResult is a page of tasks.
type TaskQueryResult struct {
	Items      []Task     `json:"items"`
	Pagination Pagination `json:"pagination"`
}
