package legacyapi

import (
	"context"
	"errors"
	"fmt"
)

// ID prefixes: every job and task id starts with the name of the world it
// lives in, so a call on an id reaches the right one without a lookup.
const (
	LegacyPrefix = "legacy-"
	KubePrefix   = "kube-"
)

// Backend runs jobs. Implementations must be safe for concurrent use.
//
// Errors: wrap ErrNotFound (unknown id), ErrInvalid (a *FieldError where a
// field is to blame), ErrConflict (the job's state forbids the call) or
// ErrUnavailable (the world behind cannot be reached); the handler turns them
// into 404, 400, 409 and 503.
type Backend interface {
	// CreateJob accepts a descriptor that passed Validate (and Normalize)
	// and returns the new job's id.
	CreateJob(ctx context.Context, d JobDescriptor) (string, error)
	// FindJobs returns the jobs matching q after q.Cursor, ordered by
	// JobKey, at most q.PageSize (Paginate does this for a full list).
	FindJobs(ctx context.Context, q JobQuery) (JobQueryResult, error)
	GetJob(ctx context.Context, id string) (Job, error)
	// KillJob kills every task of the job; the job is KillInitiated until
	// they have ended, then Finished. Killing a finished job is a no-op.
	KillJob(ctx context.Context, id string) error
	// UpdateCapacity resizes a service job (ErrConflict for a batch job).
	UpdateCapacity(ctx context.Context, id string, c Capacity) error
	// SetEnabled enables or disables a service job. As in Titus, a disabled
	// job is not scaled by policies; its tasks keep running and are
	// replaced when they end.
	SetEnabled(ctx context.Context, id string, enabled bool) error
	FindTasks(ctx context.Context, q TaskQuery) (TaskQueryResult, error)
	GetTask(ctx context.Context, id string) (Task, error)
	// KillTask kills one task. A service job replaces it unless shrink,
	// which also lowers the desired capacity by one.
	KillTask(ctx context.Context, id string, shrink bool) error
}

// JobQuery filters jobs; empty fields match everything.
type JobQuery struct {
	Page
	JobIDs          []string
	ApplicationName string
	Owner           string
	CapacityGroup   string
	ImageName       string
	JobType         string // "batch" or "service"
	JobState        string
	// Attributes: every key must be present, with the value when non-empty.
	Attributes map[string]string
}

// TaskQuery filters tasks; empty fields match everything.
type TaskQuery struct {
	Page
	JobIDs          []string
	TaskIDs         []string
	TaskStates      []string
	ApplicationName string
}

// Errors a Backend returns (wrapped).
var (
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid argument")
	ErrConflict    = errors.New("failed precondition")
	ErrUnavailable = errors.New("unavailable")
)

// FieldError blames one field of a request; it wraps ErrInvalid.
type FieldError struct {
	Field string // JSON path: container.resources.cpu
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(e, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NotFound is the error for an unknown job or task id.
func NotFound(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
}
