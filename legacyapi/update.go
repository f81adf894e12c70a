package legacyapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// JobUpdate is one of Titus's job update calls: exactly one field is set.
type JobUpdate struct {
	Capacity         *CapacityUpdate      // UpdateJobCapacity(WithOptionalAttributes)
	Enabled          *bool                // UpdateJobStatus
	Processes        *ServiceJobProcesses // UpdateJobProcesses
	DisruptionBudget json.RawMessage      // UpdateJobDisruptionBudget: proto3 JSON, kept
	Attributes       map[string]string    // UpdateJobAttributes: set or replace these
	DeleteAttributes []string             // DeleteJobAttributes
}

// CapacityUpdate sets the capacity fields that are not nil.
type CapacityUpdate struct {
	Min, Max, Desired *U32
}

// FullCapacity is the update that sets all of c.
func FullCapacity(c Capacity) *CapacityUpdate {
	return &CapacityUpdate{Min: &c.Min, Max: &c.Max, Desired: &c.Desired}
}

// Check validates what u says on its own, before any job is read.
func (u JobUpdate) Check(l Limits) error {
	set := 0
	for _, ok := range []bool{u.Capacity != nil, u.Enabled != nil, u.Processes != nil,
		len(u.DisruptionBudget) > 0, u.Attributes != nil, u.DeleteAttributes != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("a job update changes exactly one thing, this one %d: %w", set, ErrInvalid)
	}
	switch {
	case u.Capacity != nil:
		c := u.Capacity
		if c.Min == nil && c.Max == nil && c.Desired == nil {
			return fieldErr("capacity", "none of min, max, desired is set")
		}
		if c.Max != nil && uint32(*c.Max) > l.MaxServiceSize {
			return fieldErr("capacity.max", "%d: at most %d", *c.Max, l.MaxServiceSize)
		}
		if c.Min != nil && c.Max != nil && c.Desired != nil {
			return ValidateCapacity("capacity", Capacity{Min: *c.Min, Max: *c.Max, Desired: *c.Desired})
		}
	case u.Attributes != nil:
		if len(u.Attributes) == 0 {
			return fieldErr("attributes", "no attribute to set")
		}
		return validateAttributes("attributes", u.Attributes)
	case u.DeleteAttributes != nil:
		return checkKeys(u.DeleteAttributes)
	}
	return nil
}

func checkKeys(keys []string) error {
	if len(keys) == 0 {
		return fieldErr("keys", "no attribute key to delete")
	}
	if slices.Contains(keys, "") {
		return fieldErr("keys", "empty key")
	}
	return nil
}

// Apply makes the update on d, the current descriptor of job id. d is the
// caller's copy, but its maps and pointers may be shared: Apply replaces
// what it changes instead of writing through them. It checks what depends
// on the job: capacity and processes apply to service jobs, a new capacity
// must hold min ≤ desired ≤ max and respect the job's processes.
func (u JobUpdate) Apply(id string, d *JobDescriptor) error {
	needsService := u.Capacity != nil || u.Enabled != nil || u.Processes != nil
	if needsService && d.Service == nil {
		return fmt.Errorf("job %s is not a service job: %w", id, ErrInvalid)
	}
	switch {
	case u.Capacity != nil:
		cur := Capacity{}
		if d.Service.Capacity != nil {
			cur = *d.Service.Capacity
		}
		next := u.Capacity.merge(cur)
		if err := ValidateCapacity("capacity", next); err != nil {
			return err
		}
		if p := d.Service.ServiceJobProcesses; p != nil &&
			(p.DisableIncreaseDesired && next.Desired > cur.Desired || p.DisableDecreaseDesired && next.Desired < cur.Desired) {
			return fmt.Errorf("job %s can not be updated to desired capacity of %d, disableIncreaseDesired %t, disableDecreaseDesired %t: %w",
				id, next.Desired, p.DisableIncreaseDesired, p.DisableDecreaseDesired, ErrInvalid)
		}
		setService(d, func(s *ServiceJobSpec) { s.Capacity = &next })
	case u.Enabled != nil:
		setService(d, func(s *ServiceJobSpec) { s.Enabled = *u.Enabled })
	case u.Processes != nil:
		p := *u.Processes
		setService(d, func(s *ServiceJobSpec) { s.ServiceJobProcesses = &p })
	case len(u.DisruptionBudget) > 0:
		d.DisruptionBudget = u.DisruptionBudget
	case u.Attributes != nil:
		d.Attributes = mergeAttributes(d.Attributes, u.Attributes)
	case u.DeleteAttributes != nil:
		d.Attributes = deleteAttributes(d.Attributes, u.DeleteAttributes)
	}
	return nil
}

func (c CapacityUpdate) merge(cur Capacity) Capacity {
	if c.Min != nil {
		cur.Min = *c.Min
	}
	if c.Max != nil {
		cur.Max = *c.Max
	}
	if c.Desired != nil {
		cur.Desired = *c.Desired
	}
	return cur
}

func setService(d *JobDescriptor, f func(*ServiceJobSpec)) {
	s := *d.Service
	f(&s)
	d.Service = &s
}

// Shrink is the capacity after a kill with shrink, as Titus makes it:
// desired one lower (not below 0) and min lowered with it, or, with
// preventMinSizeUpdate, ErrConflict when desired is at min already.
func Shrink(id string, c Capacity, preventMinSizeUpdate bool) (Capacity, error) {
	if preventMinSizeUpdate && c.Desired <= c.Min {
		return c, fmt.Errorf("job %s: terminate and shrink would go below its minimum of %d tasks: %w", id, c.Min, ErrConflict)
	}
	if c.Desired > 0 {
		c.Desired--
	}
	c.Min = min(c.Min, c.Desired)
	return c, nil
}

// TaskUpdate is one of Titus's task attribute calls: exactly one field is
// set.
type TaskUpdate struct {
	Attributes       map[string]string // UpdateTaskAttributes
	DeleteAttributes []string          // DeleteTaskAttributes
}

// Check validates u on its own.
func (u TaskUpdate) Check() error {
	switch {
	case (u.Attributes != nil) == (u.DeleteAttributes != nil):
		return fmt.Errorf("a task update sets or deletes attributes: %w", ErrInvalid)
	case u.Attributes != nil && len(u.Attributes) == 0:
		return fieldErr("attributes", "no attribute to set")
	case u.Attributes != nil:
		return validateAttributes("attributes", u.Attributes)
	}
	return checkKeys(u.DeleteAttributes)
}

// Apply returns attrs as u leaves them, a new map (attrs may be shared).
func (u TaskUpdate) Apply(attrs map[string]string) map[string]string {
	if u.Attributes != nil {
		return mergeAttributes(attrs, u.Attributes)
	}
	return deleteAttributes(attrs, u.DeleteAttributes)
}

func mergeAttributes(cur, set map[string]string) map[string]string {
	out := maps.Clone(cur)
	if out == nil {
		out = make(map[string]string, len(set))
	}
	maps.Copy(out, set)
	return out
}

func deleteAttributes(cur map[string]string, keys []string) map[string]string {
	out := maps.Clone(cur)
	for _, k := range keys {
		delete(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
