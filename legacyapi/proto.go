package legacyapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-titus/vk-titus/api/titus"
)

// The conversions between this package's types and the generated Titus
// messages: the gRPC server speaks the messages, the REST handler reads and
// writes them as proto3 JSON, and the Backends work on the types here. The
// fields no world acts on are kept as the proto3 JSON of their message
// (json.RawMessage), so they go back out exactly as they came in.

// keptJSON writes kept messages compactly; keptParse reads them back, and
// leaves out fields a newer writer may have added.
var (
	keptJSON  = protojson.MarshalOptions{}
	keptParse = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// rawOf is m's proto3 JSON, nil for a nil message.
func rawOf[P interface {
	comparable
	proto.Message
}](field string, m P) (json.RawMessage, error) {
	var zero P
	if m == zero {
		return nil, nil
	}
	b, err := keptJSON.Marshal(m)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	return compact(b), nil
}

// rawListOf is a repeated message field's proto3 JSON, nil when empty.
func rawListOf[P proto.Message](field string, ms []P) (json.RawMessage, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	items := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		b, err := keptJSON.Marshal(m)
		if err != nil {
			return nil, fieldErr(field, "%v", err)
		}
		items[i] = compact(b)
	}
	b, err := json.Marshal(items)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	return b, nil
}

// compact drops the whitespace protojson varies from run to run, so that
// the same message always keeps the same bytes.
func compact(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// parseKept reads a kept message into m; emptyRaw values leave it unset
// (false).
func parseKept(field string, raw json.RawMessage, m proto.Message) (bool, error) {
	if emptyRaw(raw) && string(bytes.TrimSpace(raw)) != "{}" {
		return false, nil
	}
	if err := keptParse.Unmarshal(raw, m); err != nil {
		return false, fmt.Errorf("kept field %s: %w", field, err)
	}
	return true, nil
}

// parseKeptList reads a kept repeated field.
func parseKeptList[T any, P interface {
	*T
	proto.Message
}](field string, raw json.RawMessage) ([]P, error) {
	if emptyRaw(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("kept field %s: %w", field, err)
	}
	out := make([]P, len(items))
	for i, it := range items {
		out[i] = new(T)
		if err := keptParse.Unmarshal(it, out[i]); err != nil {
			return nil, fmt.Errorf("kept field %s[%d]: %w", field, i, err)
		}
	}
	return out, nil
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// DescriptorFromProto reads a submitted descriptor. It fails only on an
// experimental field whose type is unknown here.
func DescriptorFromProto(p *titus.JobDescriptor) (JobDescriptor, error) {
	d := JobDescriptor{
		ApplicationName: p.GetApplicationName(),
		CapacityGroup:   p.GetCapacityGroup(),
		Attributes:      nonEmpty(p.GetAttributes()),
	}
	if o := p.GetOwner(); o != nil {
		d.Owner = &Owner{TeamEmail: o.GetTeamEmail()}
	}
	if g := p.GetJobGroupInfo(); g != nil {
		d.JobGroupInfo = &JobGroupInfo{Stack: g.GetStack(), Detail: g.GetDetail(), Sequence: g.GetSequence()}
	}
	var err error
	if c := p.GetContainer(); c != nil {
		if d.Container, err = containerFromProto(c); err != nil {
			return d, err
		}
	}
	switch s := p.GetJobSpec().(type) {
	case *titus.JobDescriptor_Batch:
		if b := s.Batch; b != nil {
			d.Batch = &BatchJobSpec{Size: U32(b.GetSize()), RuntimeLimitSec: U64(b.GetRuntimeLimitSec()),
				RetryPolicy: retryFromProto(b.GetRetryPolicy()), RetryOnRuntimeLimit: b.GetRetryOnRuntimeLimit()}
		}
	case *titus.JobDescriptor_Service:
		if s := s.Service; s != nil {
			d.Service = &ServiceJobSpec{Enabled: s.GetEnabled(), RetryPolicy: retryFromProto(s.GetRetryPolicy())}
			if c := s.GetCapacity(); c != nil {
				cp := CapacityFromProto(c)
				d.Service.Capacity = &cp
			}
			if p := s.GetServiceJobProcesses(); p != nil {
				d.Service.ServiceJobProcesses = ProcessesFromProto(p)
			}
			if d.Service.MigrationPolicy, err = rawOf("service.migrationPolicy", s.GetMigrationPolicy()); err != nil {
				return d, err
			}
		}
	}
	for _, f := range []struct {
		into *json.RawMessage
		get  func() (json.RawMessage, error)
	}{
		{&d.DisruptionBudget, func() (json.RawMessage, error) { return rawOf("disruptionBudget", p.GetDisruptionBudget()) }},
		{&d.NetworkConfiguration, func() (json.RawMessage, error) {
			return rawOf("networkConfiguration", p.GetNetworkConfiguration())
		}},
		{&d.ExtraContainers, func() (json.RawMessage, error) { return rawListOf("extraContainers", p.GetExtraContainers()) }},
		{&d.Volumes, func() (json.RawMessage, error) { return rawListOf("volumes", p.GetVolumes()) }},
		{&d.PlatformSidecars, func() (json.RawMessage, error) { return rawListOf("platformSidecars", p.GetPlatformSidecars()) }},
	} {
		if *f.into, err = f.get(); err != nil {
			return d, err
		}
	}
	return d, nil
}

func containerFromProto(p *titus.Container) (*Container, error) {
	c := &Container{
		Attributes: nonEmpty(p.GetAttributes()),
		EntryPoint: p.GetEntryPoint(),
		Command:    p.GetCommand(),
		Env:        nonEmpty(p.GetEnv()),
	}
	var err error
	if r := p.GetResources(); r != nil {
		res := &ContainerResources{
			CPU: r.GetCpu(), GPU: U32(r.GetGpu()), MemoryMB: U32(r.GetMemoryMB()), DiskMB: U32(r.GetDiskMB()),
			NetworkMbps: U32(r.GetNetworkMbps()), AllocateIP: r.GetAllocateIP(), ShmSizeMB: U32(r.GetShmSizeMB()),
			Pool: r.GetPool(),
		}
		if res.EfsMounts, err = rawListOf("container.resources.efsMounts", r.GetEfsMounts()); err != nil {
			return nil, err
		}
		if res.SignedAddressAllocations, err = rawListOf("container.resources.signedAddressAllocations", r.GetSignedAddressAllocations()); err != nil {
			return nil, err
		}
		if res.StaticIPAddressIDs, err = rawOf("container.resources.staticIPAddressIDs", r.GetStaticIPAddressIDs()); err != nil {
			return nil, err
		}
		c.Resources = res
	}
	if c.SecurityProfile, err = rawOf("container.securityProfile", p.GetSecurityProfile()); err != nil {
		return nil, err
	}
	if img := p.GetImage(); img != nil {
		c.Image = &Image{Name: img.GetName(), Tag: img.GetTag(), Digest: img.GetDigest()}
	}
	c.SoftConstraints = constraintsFromProto(p.GetSoftConstraints())
	c.HardConstraints = constraintsFromProto(p.GetHardConstraints())
	if c.Experimental, err = rawOf("container.experimental", p.GetExperimental()); err != nil {
		return nil, err
	}
	if c.VolumeMounts, err = rawListOf("container.volumeMounts", p.GetVolumeMounts()); err != nil {
		return nil, err
	}
	return c, nil
}

func constraintsFromProto(p *titus.Constraints) *Constraints {
	if p == nil {
		return nil
	}
	return &Constraints{Constraints: nonEmpty(p.GetConstraints()), Expression: p.GetExpression()}
}

func retryFromProto(p *titus.RetryPolicy) *RetryPolicy {
	if p == nil {
		return nil
	}
	r := &RetryPolicy{}
	switch k := p.GetPolicy().(type) {
	case *titus.RetryPolicy_Immediate_:
		r.Immediate = &ImmediateRetry{Retries: U32(k.Immediate.GetRetries())}
	case *titus.RetryPolicy_Delayed_:
		r.Delayed = &DelayedRetry{InitialDelayMs: U64(k.Delayed.GetInitialDelayMs()), DelayMs: U64(k.Delayed.GetDelayMs()),
			Retries: U32(k.Delayed.GetRetries())}
	case *titus.RetryPolicy_ExponentialBackOff_:
		e := k.ExponentialBackOff
		r.ExponentialBackOff = &ExponentialRetry{InitialDelayMs: U64(e.GetInitialDelayMs()),
			MaxDelayIntervalMs: U64(e.GetMaxDelayIntervalMs()), Retries: U32(e.GetRetries())}
	}
	return r
}

// CapacityFromProto reads a capacity.
func CapacityFromProto(p *titus.Capacity) Capacity {
	return Capacity{Min: U32(p.GetMin()), Max: U32(p.GetMax()), Desired: U32(p.GetDesired())}
}

// CapacityUpdateFromProto reads UpdateJobCapacityWithOptionalAttributes's
// capacity: only the fields given change.
func CapacityUpdateFromProto(p *titus.JobCapacityWithOptionalAttributes) *CapacityUpdate {
	opt := func(w *wrapperspb.UInt32Value) *U32 {
		if w == nil {
			return nil
		}
		v := U32(w.GetValue())
		return &v
	}
	return &CapacityUpdate{Min: opt(p.GetMin()), Max: opt(p.GetMax()), Desired: opt(p.GetDesired())}
}

// ProcessesFromProto reads a service job's processes.
func ProcessesFromProto(p *titus.ServiceJobSpec_ServiceJobProcesses) *ServiceJobProcesses {
	return &ServiceJobProcesses{DisableIncreaseDesired: p.GetDisableIncreaseDesired(), DisableDecreaseDesired: p.GetDisableDecreaseDesired()}
}

// DescriptorToProto writes a descriptor; it fails only when a kept field
// does not parse (a record damaged outside this API).
func DescriptorToProto(d JobDescriptor) (*titus.JobDescriptor, error) {
	p := &titus.JobDescriptor{
		ApplicationName: d.ApplicationName,
		CapacityGroup:   d.CapacityGroup,
		Attributes:      d.Attributes,
	}
	if d.Owner != nil {
		p.Owner = &titus.Owner{TeamEmail: d.Owner.TeamEmail}
	}
	if g := d.JobGroupInfo; g != nil {
		p.JobGroupInfo = &titus.JobGroupInfo{Stack: g.Stack, Detail: g.Detail, Sequence: g.Sequence}
	}
	var err error
	if d.Container != nil {
		if p.Container, err = containerToProto(d.Container); err != nil {
			return nil, err
		}
	}
	switch {
	case d.Batch != nil:
		b := d.Batch
		p.JobSpec = &titus.JobDescriptor_Batch{Batch: &titus.BatchJobSpec{Size: uint32(b.Size), RuntimeLimitSec: uint64(b.RuntimeLimitSec),
			RetryPolicy: retryToProto(b.RetryPolicy), RetryOnRuntimeLimit: b.RetryOnRuntimeLimit}}
	case d.Service != nil:
		s := d.Service
		ps := &titus.ServiceJobSpec{Enabled: s.Enabled, RetryPolicy: retryToProto(s.RetryPolicy)}
		if s.Capacity != nil {
			ps.Capacity = CapacityToProto(*s.Capacity)
		}
		if s.ServiceJobProcesses != nil {
			ps.ServiceJobProcesses = &titus.ServiceJobSpec_ServiceJobProcesses{
				DisableIncreaseDesired: s.ServiceJobProcesses.DisableIncreaseDesired,
				DisableDecreaseDesired: s.ServiceJobProcesses.DisableDecreaseDesired,
			}
		}
		mp := &titus.MigrationPolicy{}
		if ok, err := parseKept("service.migrationPolicy", s.MigrationPolicy, mp); err != nil {
			return nil, err
		} else if ok {
			ps.MigrationPolicy = mp
		}
		p.JobSpec = &titus.JobDescriptor_Service{Service: ps}
	}
	budget, network := &titus.JobDisruptionBudget{}, &titus.NetworkConfiguration{}
	if ok, err := parseKept("disruptionBudget", d.DisruptionBudget, budget); err != nil {
		return nil, err
	} else if ok {
		p.DisruptionBudget = budget
	}
	if ok, err := parseKept("networkConfiguration", d.NetworkConfiguration, network); err != nil {
		return nil, err
	} else if ok {
		p.NetworkConfiguration = network
	}
	if p.ExtraContainers, err = parseKeptList[titus.BasicContainer]("extraContainers", d.ExtraContainers); err != nil {
		return nil, err
	}
	if p.Volumes, err = parseKeptList[titus.Volume]("volumes", d.Volumes); err != nil {
		return nil, err
	}
	if p.PlatformSidecars, err = parseKeptList[titus.PlatformSidecar]("platformSidecars", d.PlatformSidecars); err != nil {
		return nil, err
	}
	return p, nil
}

func containerToProto(c *Container) (*titus.Container, error) {
	p := &titus.Container{Attributes: c.Attributes, EntryPoint: c.EntryPoint, Command: c.Command, Env: c.Env}
	var err error
	if r := c.Resources; r != nil {
		pr := &titus.ContainerResources{Cpu: r.CPU, Gpu: uint32(r.GPU), MemoryMB: uint32(r.MemoryMB), DiskMB: uint32(r.DiskMB),
			NetworkMbps: uint32(r.NetworkMbps), AllocateIP: r.AllocateIP, ShmSizeMB: uint32(r.ShmSizeMB)}
		if pr.EfsMounts, err = parseKeptList[titus.ContainerResources_EfsMount]("container.resources.efsMounts", r.EfsMounts); err != nil {
			return nil, err
		}
		if pr.SignedAddressAllocations, err = parseKeptList[titus.SignedAddressAllocation]("container.resources.signedAddressAllocations", r.SignedAddressAllocations); err != nil {
			return nil, err
		}
		ids := &titus.StaticIPAddressIDs{}
		switch ok, err := parseKept("container.resources.staticIPAddressIDs", r.StaticIPAddressIDs, ids); {
		case err != nil:
			return nil, err
		case ok:
			pr.StaticIPAddresses = &titus.ContainerResources_StaticIPAddressIDs{StaticIPAddressIDs: ids}
		case r.Pool != "":
			pr.StaticIPAddresses = &titus.ContainerResources_Pool{Pool: r.Pool}
		}
		p.Resources = pr
	}
	sp := &titus.SecurityProfile{}
	if ok, err := parseKept("container.securityProfile", c.SecurityProfile, sp); err != nil {
		return nil, err
	} else if ok {
		p.SecurityProfile = sp
	}
	if img := c.Image; img != nil {
		p.Image = &titus.Image{Name: img.Name, Tag: img.Tag, Digest: img.Digest}
	}
	p.SoftConstraints = constraintsToProto(c.SoftConstraints)
	p.HardConstraints = constraintsToProto(c.HardConstraints)
	if len(c.Experimental) > 0 {
		p.Experimental = new(anypb.Any)
		if ok, err := parseKept("container.experimental", c.Experimental, p.Experimental); err != nil {
			return nil, err
		} else if !ok {
			p.Experimental = nil
		}
	}
	if p.VolumeMounts, err = parseKeptList[titus.VolumeMount]("container.volumeMounts", c.VolumeMounts); err != nil {
		return nil, err
	}
	return p, nil
}

func constraintsToProto(c *Constraints) *titus.Constraints {
	if c == nil {
		return nil
	}
	return &titus.Constraints{Constraints: c.Constraints, Expression: c.Expression}
}

func retryToProto(r *RetryPolicy) *titus.RetryPolicy {
	switch {
	case r == nil:
		return nil
	case r.Immediate != nil:
		return &titus.RetryPolicy{Policy: &titus.RetryPolicy_Immediate_{Immediate: &titus.RetryPolicy_Immediate{Retries: uint32(r.Immediate.Retries)}}}
	case r.Delayed != nil:
		d := r.Delayed
		return &titus.RetryPolicy{Policy: &titus.RetryPolicy_Delayed_{Delayed: &titus.RetryPolicy_Delayed{
			InitialDelayMs: uint64(d.InitialDelayMs), DelayMs: uint64(d.DelayMs), Retries: uint32(d.Retries)}}}
	case r.ExponentialBackOff != nil:
		e := r.ExponentialBackOff
		return &titus.RetryPolicy{Policy: &titus.RetryPolicy_ExponentialBackOff_{ExponentialBackOff: &titus.RetryPolicy_ExponentialBackOff{
			InitialDelayMs: uint64(e.InitialDelayMs), MaxDelayIntervalMs: uint64(e.MaxDelayIntervalMs), Retries: uint32(e.Retries)}}}
	}
	return &titus.RetryPolicy{}
}

// CapacityToProto writes a capacity.
func CapacityToProto(c Capacity) *titus.Capacity {
	return &titus.Capacity{Min: uint32(c.Min), Max: uint32(c.Max), Desired: uint32(c.Desired)}
}

// JobToProto writes a job. Its version is its last status's time: the
// last change of anything the API shows but its capacity or attributes.
func JobToProto(j Job) (*titus.Job, error) {
	d, err := DescriptorToProto(j.JobDescriptor)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	p := &titus.Job{Id: j.ID, JobDescriptor: d, Status: jobStatusToProto(j.Status),
		StatusHistory: make([]*titus.JobStatus, len(j.StatusHistory)), Version: &titus.Version{Timestamp: uint64(j.Status.Timestamp)}}
	for i, s := range j.StatusHistory {
		p.StatusHistory[i] = jobStatusToProto(s)
	}
	return p, nil
}

func jobStatusToProto(s JobStatus) *titus.JobStatus {
	return &titus.JobStatus{State: titus.JobStatus_JobState(titus.JobStatus_JobState_value[s.State]),
		ReasonCode: s.ReasonCode, ReasonMessage: s.ReasonMessage, Timestamp: uint64(s.Timestamp)}
}

// JobFromProto reads a job another server of this API answered.
func JobFromProto(p *titus.Job) (Job, error) {
	d, err := DescriptorFromProto(p.GetJobDescriptor())
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", p.GetId(), err)
	}
	j := Job{ID: p.GetId(), JobDescriptor: d, Status: jobStatusFromProto(p.GetStatus()),
		StatusHistory: make([]JobStatus, len(p.GetStatusHistory()))}
	for i, s := range p.GetStatusHistory() {
		j.StatusHistory[i] = jobStatusFromProto(s)
	}
	return j, nil
}

func jobStatusFromProto(s *titus.JobStatus) JobStatus {
	return JobStatus{State: s.GetState().String(), ReasonCode: s.GetReasonCode(), ReasonMessage: s.GetReasonMessage(), Timestamp: U64(s.GetTimestamp())}
}

// TaskToProto writes a task. No task here needs migrating, and logs are
// read through the platform's own tools (no log location).
func TaskToProto(t Task) *titus.Task {
	p := &titus.Task{Id: t.ID, JobId: t.JobID, TaskContext: t.TaskContext, Status: taskStatusToProto(t.Status),
		StatusHistory: make([]*titus.TaskStatus, len(t.StatusHistory)), MigrationDetails: &titus.MigrationDetails{},
		Attributes: t.Attributes, Version: &titus.Version{Timestamp: uint64(t.Status.Timestamp)}}
	for i, s := range t.StatusHistory {
		p.StatusHistory[i] = taskStatusToProto(s)
	}
	return p
}

func taskStatusToProto(s TaskStatus) *titus.TaskStatus {
	return &titus.TaskStatus{State: titus.TaskStatus_TaskState(titus.TaskStatus_TaskState_value[s.State]),
		ReasonCode: s.ReasonCode, ReasonMessage: s.ReasonMessage, Timestamp: uint64(s.Timestamp)}
}

// TaskFromProto reads a task another server of this API answered.
func TaskFromProto(p *titus.Task) Task {
	t := Task{ID: p.GetId(), JobID: p.GetJobId(), TaskContext: maps.Clone(p.GetTaskContext()), Status: taskStatusFromProto(p.GetStatus()),
		StatusHistory: make([]TaskStatus, len(p.GetStatusHistory())), Attributes: nonEmpty(p.GetAttributes())}
	if t.TaskContext == nil {
		t.TaskContext = map[string]string{}
	}
	for i, s := range p.GetStatusHistory() {
		t.StatusHistory[i] = taskStatusFromProto(s)
	}
	return t
}

func taskStatusFromProto(s *titus.TaskStatus) TaskStatus {
	return TaskStatus{State: s.GetState().String(), ReasonCode: s.GetReasonCode(), ReasonMessage: s.GetReasonMessage(), Timestamp: U64(s.GetTimestamp())}
}

// PageFromProto reads a requested page; a page size below 1 is refused,
// as Titus's gRPC API does (REST fills its default before).
func PageFromProto(p *titus.Page) (Page, error) {
	pg := Page{PageNumber: int(p.GetPageNumber()), PageSize: int(p.GetPageSize()), Cursor: p.GetCursor()}
	if pg.PageSize < 1 {
		return pg, fieldErr("page.pageSize", "%d: must be between 1 and %d", pg.PageSize, MaxPageSize)
	}
	return pg, CheckPage(&pg)
}

func pageToProto(p Page) *titus.Page {
	return &titus.Page{PageNumber: int32(p.PageNumber), PageSize: int32(p.PageSize), Cursor: p.Cursor}
}

// PaginationToProto writes where a page stands.
func PaginationToProto(p Pagination) *titus.Pagination {
	return &titus.Pagination{CurrentPage: pageToProto(p.CurrentPage), HasMore: p.HasMore, TotalPages: int32(p.TotalPages),
		TotalItems: int32(p.TotalItems), Cursor: p.Cursor, CursorPosition: int32(p.CursorPosition)}
}

func paginationFromProto(p *titus.Pagination) Pagination {
	c := p.GetCurrentPage()
	return Pagination{CurrentPage: Page{PageNumber: int(c.GetPageNumber()), PageSize: int(c.GetPageSize()), Cursor: c.GetCursor()},
		HasMore: p.GetHasMore(), TotalPages: int(p.GetTotalPages()), TotalItems: int(p.GetTotalItems()), Cursor: p.GetCursor(),
		CursorPosition: int(p.GetCursorPosition())}
}

// JobsToProto writes a page of jobs, projected on fields.
func JobsToProto(r JobQueryResult, fields []string) (*titus.JobQueryResult, error) {
	out := &titus.JobQueryResult{Items: make([]*titus.Job, len(r.Items)), Pagination: PaginationToProto(r.Pagination)}
	for i, j := range r.Items {
		p, err := JobToProto(j)
		if err != nil {
			return nil, err
		}
		Project(p, fields)
		out.Items[i] = p
	}
	return out, nil
}

// TasksToProto writes a page of tasks, projected on fields.
func TasksToProto(r TaskQueryResult, fields []string) *titus.TaskQueryResult {
	out := &titus.TaskQueryResult{Items: make([]*titus.Task, len(r.Items)), Pagination: PaginationToProto(r.Pagination)}
	for i, t := range r.Items {
		p := TaskToProto(t)
		Project(p, fields)
		out.Items[i] = p
	}
	return out
}
