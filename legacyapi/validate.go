package legacyapi

import (
	"regexp"
	"strings"
)

// Limits beyond which a descriptor is refused: far above what one job on
// this platform asks, low enough that a typo cannot ask for a data centre.
const (
	MaxCPU        = 256
	MaxGPU        = 16
	MaxMemoryMB   = 1 << 20 // 1 TiB
	MaxTasks      = 10000   // batch size and service max
	MaxRetries    = 1000
	MaxNameLength = 100
	maxEnvBytes   = 128 << 10
	DefaultCapGrp = "DEFAULT"
	DefaultTag    = "latest"
)

var appName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Normalize fills what Titus fills when a submitter leaves it out.
func Normalize(d *JobDescriptor) {
	if d.CapacityGroup == "" {
		d.CapacityGroup = DefaultCapGrp
	}
	if d.Container != nil && d.Container.Image != nil && d.Container.Image.Tag == "" && d.Container.Image.Digest == "" {
		d.Container.Image.Tag = DefaultTag
	}
}

// Validate checks a descriptor and names the first field at fault
// (a *FieldError).
func Validate(d JobDescriptor) error {
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
		v    []byte
	}{{"extraContainers", d.ExtraContainers}, {"volumes", d.Volumes}, {"platformSidecars", d.PlatformSidecars}} {
		if len(f.v) > 0 && string(f.v) != "null" && string(f.v) != "[]" {
			return fieldErr(f.name, "not supported yet")
		}
	}
	if err := validateAttributes("attributes", d.Attributes); err != nil {
		return err
	}
	if err := validateContainer(d.Container); err != nil {
		return err
	}
	switch {
	case d.Batch != nil && d.Service != nil:
		return fieldErr("batch", "a job is batch or service, not both")
	case d.Batch != nil:
		return validateBatch(d.Batch)
	case d.Service != nil:
		return validateService(d.Service)
	}
	return fieldErr("batch", "one of batch or service is required")
}

func validateContainer(c *Container) error {
	if c == nil {
		return fieldErr("container", "required")
	}
	r := c.Resources
	switch {
	case r == nil:
		return fieldErr("container.resources", "required")
	case !(r.CPU > 0) || r.CPU > MaxCPU:
		return fieldErr("container.resources.cpu", "%v: must be > 0 and ≤ %d", r.CPU, MaxCPU)
	case r.MemoryMB == 0 || r.MemoryMB > MaxMemoryMB:
		return fieldErr("container.resources.memoryMB", "%d: must be > 0 and ≤ %d", r.MemoryMB, MaxMemoryMB)
	case r.GPU > MaxGPU:
		return fieldErr("container.resources.gpu", "%d: at most %d", r.GPU, MaxGPU)
	case r.ShmSizeMB > r.MemoryMB:
		return fieldErr("container.resources.shmSizeMB", "%d: larger than memoryMB", r.ShmSizeMB)
	case len(r.EfsMounts) > 0 && string(r.EfsMounts) != "[]" && string(r.EfsMounts) != "null":
		return fieldErr("container.resources.efsMounts", "not supported yet")
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
	if len(c.VolumeMounts) > 0 && string(c.VolumeMounts) != "[]" && string(c.VolumeMounts) != "null" {
		return fieldErr("container.volumeMounts", "not supported yet")
	}
	if len(c.ContainerCapabilities) > 0 && string(c.ContainerCapabilities) != "{}" && string(c.ContainerCapabilities) != "null" {
		return fieldErr("container.containerCapabilities", "not supported yet")
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

func validateBatch(b *BatchJobSpec) error {
	if b.Size == 0 || b.Size > MaxTasks {
		return fieldErr("batch.size", "%d: must be between 1 and %d", b.Size, MaxTasks)
	}
	return validateRetry("batch.retryPolicy", b.RetryPolicy)
}

func validateService(s *ServiceJobSpec) error {
	c := s.Capacity
	switch {
	case c == nil:
		return fieldErr("service.capacity", "required")
	case c.Max > MaxTasks:
		return fieldErr("service.capacity.max", "%d: at most %d", c.Max, MaxTasks)
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
	if c.Max > MaxTasks {
		return fieldErr(field+".max", "%d: at most %d", c.Max, MaxTasks)
	}
	return nil
}
