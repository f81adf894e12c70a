package master

import (
	"strings"
	"time"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// taskSpecOf is what every task of a job runs. The descriptor passed
// legacyapi.Validate, so container, resources and image are there.
//
// Hard constraints are agent attribute equalities, as the reference agents
// advertise attributes (zone, instance_type, ...); soft constraints are the
// same, preferred rather than required. networkMbps is not placed: agents
// advertise no network bandwidth.
func taskSpecOf(d legacyapi.JobDescriptor) TaskSpec {
	c := d.Container
	r := c.Resources
	res := Resources{"cpus": r.CPU, "mem": float64(r.MemoryMB)}
	if r.DiskMB > 0 {
		res["disk"] = float64(r.DiskMB)
	}
	if r.GPU > 0 {
		res["gpus"] = float64(r.GPU)
	}
	spec := TaskSpec{
		Name:       jobName(d),
		Image:      c.Image.Reference(),
		Entrypoint: c.EntryPoint,
		Args:       c.Command,
		Env:        c.Env,
		Resources:  res,
	}
	if c.HardConstraints != nil {
		spec.Constraints = c.HardConstraints.Constraints
	}
	if c.SoftConstraints != nil {
		spec.Preferences = c.SoftConstraints.Constraints
	}
	return spec
}

// jobName is Titus's full job name, app-stack-detail-sequence without the
// empty parts: the stem of the job's task ids.
func jobName(d legacyapi.JobDescriptor) string {
	parts := []string{d.ApplicationName}
	if g := d.JobGroupInfo; g != nil {
		for _, p := range []string{g.Stack, g.Detail, g.Sequence} {
			if p != "" {
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(parts, "-")
}

// retryDelay is how long the n-th retry (n ≥ 1) waits under p.
func retryDelay(p *legacyapi.RetryPolicy, n int) time.Duration {
	ms := func(v legacyapi.U64) time.Duration { return time.Duration(v) * time.Millisecond }
	switch {
	case p == nil || n < 1:
		return 0
	case p.Delayed != nil:
		if n == 1 {
			return ms(p.Delayed.InitialDelayMs)
		}
		return ms(p.Delayed.DelayMs)
	case p.ExponentialBackOff != nil:
		e := p.ExponentialBackOff
		d, limit := ms(e.InitialDelayMs), ms(e.MaxDelayIntervalMs)
		if limit <= 0 {
			limit = 24 * time.Hour // no limit given: a day is as good as forever
		}
		for i := 1; i < n && d < limit; i++ {
			d *= 2
		}
		return min(d, limit)
	}
	return 0
}

// retryable tells whether a batch task that ended with reason code is
// replaced while its index has retries left: failures, losses and kills
// are; a success is not, nor a request the agent refused (it would be
// refused again), nor a runtime limit unless the job asks.
func retryable(code string, b *legacyapi.BatchJobSpec) bool {
	switch code {
	case reasonNormal, reasonInvalidRequest, reasonScaledDown:
		return false
	case reasonRuntimeLimit:
		return b.RetryOnRuntimeLimit
	}
	return true
}
