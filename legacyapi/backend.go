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

// Backend runs jobs: one world (the legacy master, Kubernetes) or the
// gateway's router over both. Implementations must be safe for concurrent
// use. The REST handler (NewHandler) and the gRPC server sanitize and
// validate what they pass in, and both serve every answer, so what a call
// means is decided here once for both wire forms.
//
// Errors wrap one of the sentinels below (StatusOf and the gRPC server map
// them onto Titus's codes); a *FieldError where one field is to blame.
type Backend interface {
	// CreateJob accepts a descriptor that passed Sanitize and Validate and
	// returns the new job's id.
	CreateJob(ctx context.Context, d JobDescriptor) (string, error)
	// FindJobs returns the jobs matching q.Criteria after q.Cursor, ordered
	// by JobKey, at most q.PageSize (Paginate does this for a full list).
	FindJobs(ctx context.Context, q JobQuery) (JobQueryResult, error)
	GetJob(ctx context.Context, id string) (Job, error)
	// KillJob kills every task of the job; the job is KillInitiated until
	// they have ended, then Finished. Killing a job being killed or
	// finished is a no-op.
	KillJob(ctx context.Context, id string) error
	// UpdateJob applies u to the job's current descriptor with u.Apply,
	// with no other update in between. A job being killed or finished is
	// ErrTerminating, once what u could never do to it (resize a batch
	// job) is refused as ErrInvalid.
	UpdateJob(ctx context.Context, id string, u JobUpdate) error
	// FindTasks returns the tasks matching q.Criteria, as FindJobs does.
	FindTasks(ctx context.Context, q TaskQuery) (TaskQueryResult, error)
	GetTask(ctx context.Context, id string) (Task, error)
	// KillTask kills one task. A service job replaces it unless k.Shrink,
	// which lowers the job's desired size (Shrink). A task that has ended
	// or is being killed already is ErrNotFound: it has left Titus's active
	// set, and clouddriver takes a repeated kill's NOT_FOUND as success.
	KillTask(ctx context.Context, id string, k TaskKill) error
	// UpdateTask changes a task's attributes with u.Apply.
	UpdateTask(ctx context.Context, id string, u TaskUpdate) error
	// MoveTask moves a task between two service jobs; ErrUnimplemented
	// where the world cannot.
	MoveTask(ctx context.Context, m TaskMove) error
}

// TaskKill is how a task is killed.
type TaskKill struct {
	// Shrink lowers the service job's desired size by one with the kill.
	Shrink bool
	// PreventMinSizeUpdate refuses a shrink that would go below the job's
	// minimum; without it the minimum follows the desired size down.
	PreventMinSizeUpdate bool
}

// TaskMove moves TaskID from SourceJobID to TargetJobID.
type TaskMove struct {
	SourceJobID, TargetJobID, TaskID string
}

// Errors a Backend returns (wrapped), and the Titus codes they stand for:
// INVALID_ARGUMENT (400), NOT_FOUND (404), FAILED_PRECONDITION (409 for a
// conflict, 412 for a job or task on its way out), UNAVAILABLE (503),
// UNIMPLEMENTED (501).
var (
	ErrNotFound      = errors.New("not found")
	ErrInvalid       = errors.New("invalid argument")
	ErrConflict      = errors.New("failed precondition")
	ErrTerminating   = errors.New("terminating")
	ErrUnavailable   = errors.New("unavailable")
	ErrUnimplemented = errors.New("unimplemented")
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

// Terminating is the error for a call a job's or task's end forbids.
func Terminating(kind, id, state string) error {
	return fmt.Errorf("%s %s is %s: %w", kind, id, state, ErrTerminating)
}
