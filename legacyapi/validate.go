package legacyapi

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Limits are the bounds a descriptor is held to, Titus's JobConfiguration:
// Sanitize raises resources below a minimum to it and fills a missing
// runtime limit; Validate refuses what is above a maximum.
type Limits struct {
	MinCPU         float64
	MinMemoryMB    uint32
	MinDiskMB      uint32
	MinNetworkMbps uint32
	MaxCPU         float64
	MaxGPU         uint32
	MaxMemoryMB    uint32
	MaxDiskMB      uint32
	MaxNetworkMbps uint32
	// DefaultRuntimeLimitSec is a batch job's runtime limit when it gives
	// none; MaxRuntimeLimitSec bounds what it may give.
	DefaultRuntimeLimitSec uint64
	MaxRuntimeLimitSec     uint64
	MaxBatchSize           uint32
	MaxServiceSize         uint32
}

// TitusLimits are current Titus's defaults.
func TitusLimits() Limits {
	return Limits{
		MinCPU: 1, MinMemoryMB: 512, MinDiskMB: 10000, MinNetworkMbps: 128,
		MaxCPU: 64, MaxGPU: 16, MaxMemoryMB: 524288, MaxDiskMB: 1000000, MaxNetworkMbps: 40000,
		DefaultRuntimeLimitSec: 432000, MaxRuntimeLimitSec: 864000,
		MaxBatchSize: 1000, MaxServiceSize: 2500,
	}
}

// Check refuses limits that contradict themselves.
func (l Limits) Check() error {
	switch {
	case l.MinCPU < 0 || l.MaxCPU < l.MinCPU || l.MaxCPU <= 0:
		return fieldErr("cpu limits", "min %v, max %v: want 0 ≤ min ≤ max, max > 0", l.MinCPU, l.MaxCPU)
	case l.MaxMemoryMB < l.MinMemoryMB || l.MaxMemoryMB == 0:
		return fieldErr("memoryMB limits", "min %d, max %d", l.MinMemoryMB, l.MaxMemoryMB)
	case l.MaxDiskMB < l.MinDiskMB:
		return fieldErr("diskMB limits", "min %d, max %d", l.MinDiskMB, l.MaxDiskMB)
	case l.MaxNetworkMbps < l.MinNetworkMbps:
		return fieldErr("networkMbps limits", "min %d, max %d", l.MinNetworkMbps, l.MaxNetworkMbps)
	case l.MaxRuntimeLimitSec < l.DefaultRuntimeLimitSec:
		return fieldErr("runtime limits", "default %d above max %d", l.DefaultRuntimeLimitSec, l.MaxRuntimeLimitSec)
	case l.MaxBatchSize == 0 || l.MaxServiceSize == 0:
		return fieldErr("job size limits", "batch %d, service %d: must be > 0", l.MaxBatchSize, l.MaxServiceSize)
	}
	return nil
}

// Names and defaults Titus applies.
const (
	MaxRetries    = 1000
	MaxNameLength = 100
	maxEnvBytes   = 128 << 10
	DefaultCapGrp = "DEFAULT"
	DefaultTag    = "latest"
)

var appName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Sanitize fills what Titus fills when a submitter leaves it out or asks
// for less than the minimum: the capacity group, the image tag, resources
// raised to l's minimums (a missing resources block included), a batch
// job's runtime limit. It leaves what is above a maximum to Validate.
func (l Limits) Sanitize(d *JobDescriptor) {
	if d.CapacityGroup == "" {
		d.CapacityGroup = DefaultCapGrp
	}
	if d.Container == nil {
		return // Validate names it
	}
	c := *d.Container // the caller's maps and pointers stay untouched
	d.Container = &c
	if c.Image != nil && c.Image.Tag == "" && c.Image.Digest == "" {
		img := *c.Image
		img.Tag = DefaultTag
		c.Image = &img
	}
	r := ContainerResources{}
	if c.Resources != nil {
		r = *c.Resources
	}
	// Negative cpu is an error, not a request for the minimum.
	if r.CPU >= 0 {
		r.CPU = max(r.CPU, l.MinCPU)
	}
	r.MemoryMB = max(r.MemoryMB, U32(l.MinMemoryMB))
	r.DiskMB = max(r.DiskMB, U32(l.MinDiskMB))
	r.NetworkMbps = max(r.NetworkMbps, U32(l.MinNetworkMbps))
	c.Resources = &r
	if b := d.Batch; b != nil && b.RuntimeLimitSec == 0 {
		batch := *b
		batch.RuntimeLimitSec = U64(l.DefaultRuntimeLimitSec)
		d.Batch = &batch
	}
}

// Validate checks a descriptor and names the first field at fault
// (a *FieldError). Fields that only some other platform could honour are
// accepted when empty (as every current Titus client sends them) and
// refused with a message when set: running a task without its volumes,
// sidecars or addresses would run something other than what was asked.
func (l Limits) Validate(d JobDescriptor) error {
	if d.ApplicationName == "" {
		return fieldErr("applicationName", "required")
	}
	if len(d.ApplicationName) > MaxNameLength || !appName.MatchString(d.ApplicationName) {
		return fieldErr("applicationName", "%q: letters, digits, '_', '.', '-', at most %d characters", d.ApplicationName, MaxNameLength)
	}
	if d.Owner == nil || d.Owner.TeamEmail == "" {
		return fieldErr("owner.teamEmail", "required")
	}
	if !strings.Contains(d.Owner.TeamEmail, "@") {
		return fieldErr("owner.teamEmail", "%q is not an email address", d.Owner.TeamEmail)
	}
	if len(d.CapacityGroup) > MaxNameLength || (d.CapacityGroup != "" && !appName.MatchString(d.CapacityGroup)) {
		return fieldErr("capacityGroup", "%q: letters, digits, '_', '.', '-', at most %d characters", d.CapacityGroup, MaxNameLength)
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"extraContainers", d.ExtraContainers}, {"volumes", d.Volumes}, {"platformSidecars", d.PlatformSidecars}} {
		if !emptyRaw(f.v) {
			return fieldErr(f.name, "not supported yet")
		}
	}
	if err := validateAttributes("attributes", d.Attributes); err != nil {
		return err
	}
	if err := l.validateContainer(d.Container); err != nil {
		return err
	}
	switch {
	case d.Batch != nil && d.Service != nil:
		return fieldErr("batch", "a job is batch or service, not both")
	case d.Batch != nil:
		return l.validateBatch(d.Batch)
	case d.Service != nil:
		return l.validateService(d.Service)
	}
	return fieldErr("batch", "one of batch or service is required")
}

// emptyRaw tells whether a kept proto3 JSON value says nothing: absent,
// null, an empty list or an empty object.
func emptyRaw(v json.RawMessage) bool {
	switch strings.TrimSpace(string(v)) {
	case "", "null", "[]", "{}":
		return true
	}
	return false
}

func (l Limits) validateContainer(c *Container) error {
	if c == nil {
		return fieldErr("container", "required")
	}
	r := c.Resources
	switch {
	case r == nil:
		return fieldErr("container.resources", "required")
	case !(r.CPU > 0) || r.CPU > l.MaxCPU:
		return fieldErr("container.resources.cpu", "%v: must be > 0 and ≤ %v", r.CPU, l.MaxCPU)
	case r.MemoryMB == 0 || uint32(r.MemoryMB) > l.MaxMemoryMB:
		return fieldErr("container.resources.memoryMB", "%d: must be > 0 and ≤ %d", r.MemoryMB, l.MaxMemoryMB)
	case uint32(r.DiskMB) > l.MaxDiskMB:
		return fieldErr("container.resources.diskMB", "%d: at most %d", r.DiskMB, l.MaxDiskMB)
	case uint32(r.NetworkMbps) > l.MaxNetworkMbps:
		return fieldErr("container.resources.networkMbps", "%d: at most %d", r.NetworkMbps, l.MaxNetworkMbps)
	case uint32(r.GPU) > l.MaxGPU:
		return fieldErr("container.resources.gpu", "%d: at most %d", r.GPU, l.MaxGPU)
	case r.ShmSizeMB > r.MemoryMB:
		return fieldErr("container.resources.shmSizeMB", "%d: larger than memoryMB", r.ShmSizeMB)
	case !emptyRaw(r.EfsMounts):
		return fieldErr("container.resources.efsMounts", "not supported yet")
	case !emptyRaw(r.SignedAddressAllocations):
		return fieldErr("container.resources.signedAddressAllocations", "not supported yet: no VPC address service here")
	case r.Pool != "" || !emptyRaw(r.StaticIPAddressIDs):
		return fieldErr("container.resources.staticIPAddresses", "not supported yet: no static IP addresses here")
	}
	img := c.Image
	switch {
	case img == nil || img.Name == "":
		return fieldErr("container.image.name", "required")
	case img.Tag != "" && img.Digest != "":
		return fieldErr("container.image", "give a tag or a digest, not both")
	case img.Digest != "" && !strings.Contains(img.Digest, ":"):
		return fieldErr("container.image.digest", "%q is not algorithm:hex", img.Digest)
	}
	if !emptyRaw(c.VolumeMounts) {
		return fieldErr("container.volumeMounts", "not supported yet")
	}
	size := 0
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fieldErr("container.env", "%q is not a variable name", k)
		}
		size += len(k) + len(v)
	}
	if size > maxEnvBytes {
		return fieldErr("container.env", "%d bytes, more than %d", size, maxEnvBytes)
	}
	if err := validateAttributes("container.attributes", c.Attributes); err != nil {
		return err
	}
	for name, cs := range map[string]*Constraints{"container.hardConstraints": c.HardConstraints, "container.softConstraints": c.SoftConstraints} {
		if cs != nil && cs.Expression != "" {
			return fieldErr(name+".expression", "not supported yet; use constraints")
		}
	}
	return nil
}

func validateAttributes(field string, attrs map[string]string) error {
	for k := range attrs {
		if k == "" {
			return fieldErr(field, "empty key")
		}
	}
	return nil
}

func validateRetry(field string, r *RetryPolicy) error {
	if r == nil {
		return nil
	}
	kinds := 0
	for _, set := range []bool{r.Immediate != nil, r.Delayed != nil, r.ExponentialBackOff != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return fieldErr(field, "exactly one of immediate, delayed, exponentialBackOff")
	}
	if r.Retries() > MaxRetries {
		return fieldErr(field+".retries", "%d: at most %d", r.Retries(), MaxRetries)
	}
	return nil
}

func (l Limits) validateBatch(b *BatchJobSpec) error {
	if b.Size == 0 || uint32(b.Size) > l.MaxBatchSize {
		return fieldErr("batch.size", "%d: must be between 1 and %d", b.Size, l.MaxBatchSize)
	}
	if uint64(b.RuntimeLimitSec) > l.MaxRuntimeLimitSec {
		return fieldErr("batch.runtimeLimitSec", "%d: at most %d", b.RuntimeLimitSec, l.MaxRuntimeLimitSec)
	}
	return validateRetry("batch.retryPolicy", b.RetryPolicy)
}

func (l Limits) validateService(s *ServiceJobSpec) error {
	c := s.Capacity
	switch {
	case c == nil:
		return fieldErr("service.capacity", "required")
	case uint32(c.Max) > l.MaxServiceSize:
		return fieldErr("service.capacity.max", "%d: at most %d", c.Max, l.MaxServiceSize)
	}
	if err := ValidateCapacity("service.capacity", *c); err != nil {
		return err
	}
	return validateRetry("service.retryPolicy", s.RetryPolicy)
}

// ValidateCapacity checks min ≤ desired ≤ max.
func ValidateCapacity(field string, c Capacity) error {
	if c.Min > c.Desired || c.Desired > c.Max {
		return fieldErr(field, "min %d ≤ desired %d ≤ max %d does not hold", c.Min, c.Desired, c.Max)
	}
	return nil
}
