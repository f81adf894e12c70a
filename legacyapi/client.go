package legacyapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-titus/vk-titus/api/titus"
)

// Client is a Backend reached over HTTP: another server of this API (the
// legacy master, for the gateway). It speaks the same proto3 JSON as
// NewHandler, through the same conversions.
type Client struct {
	// base returns the server's base URL (http://host:port) for each call,
	// so a client can follow a leader that moves.
	base func() (string, error)
	// calls bounds each call; stream carries the change feed, which lasts
	// as long as the connection (Observe has its own idle limit).
	calls, stream *http.Client
}

// NewClient calls the server that base names at each call, with calls for
// requests and stream for the change feed (its Timeout must be 0).
// Followers' redirects to their leader are followed (bodies are
// replayable).
func NewClient(base func() (string, error), calls, stream *http.Client) *Client {
	return &Client{base: base, calls: calls, stream: stream}
}

// StaticBase is a base for a server that does not move.
func StaticBase(u string) func() (string, error) {
	return func() (string, error) { return u, nil }
}

// RemoteError is an error reply, kept as the server worded it; errors.Is
// matches the sentinel its status stands for.
type RemoteError struct {
	Code int
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is maps the status back to the Backend error sentinels (StatusOf's
// inverse).
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return target == ErrInvalid
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusPreconditionFailed:
		return target == ErrTerminating
	case http.StatusNotImplemented:
		return target == ErrUnimplemented
	case http.StatusRequestTimeout:
		return target == context.DeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return target == ErrUnavailable
	}
	return false
}

// answers tolerate fields a newer server may add.
var answers = protojson.UnmarshalOptions{DiscardUnknown: true}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, into proto.Message) error {
	base, err := c.base()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := keptJSON.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.calls.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %v", method, u, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading reply: %w: %v", method, u, ErrUnavailable, err)
	}
	if resp.StatusCode >= 300 {
		return remoteError(method, u, resp, data)
	}
	if into == nil {
		return nil
	}
	if err := answers.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s %s: decoding reply: %w", method, u, err)
	}
	return nil
}

func remoteError(method, u string, resp *http.Response, data []byte) error {
	var eb ErrorBody
	if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
		eb.Message = fmt.Sprintf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(data))
	}
	return &RemoteError{Code: resp.StatusCode, Msg: eb.Message}
}

func jobPath(id string) string  { return "/api/v3/jobs/" + url.PathEscape(id) }
func taskPath(id string) string { return "/api/v3/tasks/" + url.PathEscape(id) }

// CreateJob implements Backend.
func (c *Client) CreateJob(ctx context.Context, d JobDescriptor) (string, error) {
	p, err := DescriptorToProto(d)
	if err != nil {
		return "", err
	}
	var out titus.JobId
	err = c.do(ctx, http.MethodPost, "/api/v3/jobs", nil, p, &out)
	return out.GetId(), err
}

// FindJobs implements Backend.
func (c *Client) FindJobs(ctx context.Context, q JobQuery) (JobQueryResult, error) {
	q.Fields = nil // the caller projects
	var out titus.JobQueryResult
	if err := c.do(ctx, http.MethodGet, "/api/v3/jobs", q.Values(), nil, &out); err != nil {
		return JobQueryResult{}, err
	}
	res := JobQueryResult{Items: make([]Job, len(out.GetItems())), Pagination: paginationFromProto(out.GetPagination())}
	for i, p := range out.GetItems() {
		j, err := JobFromProto(p)
		if err != nil {
			return JobQueryResult{}, err
		}
		res.Items[i] = j
	}
	return res, nil
}

// GetJob implements Backend.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var out titus.Job
	if err := c.do(ctx, http.MethodGet, jobPath(id), nil, nil, &out); err != nil {
		return Job{}, err
	}
	return JobFromProto(&out)
}

// KillJob implements Backend.
func (c *Client) KillJob(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, jobPath(id), nil, nil, nil)
}

// UpdateJob implements Backend with the REST call that makes u.
func (c *Client) UpdateJob(ctx context.Context, id string, u JobUpdate) error {
	switch {
	case u.Capacity != nil:
		body := &titus.JobCapacityWithOptionalAttributes{}
		for _, f := range []struct {
			v    *U32
			into **wrapperspb.UInt32Value
		}{{u.Capacity.Min, &body.Min}, {u.Capacity.Max, &body.Max}, {u.Capacity.Desired, &body.Desired}} {
			if f.v != nil {
				*f.into = wrapperspb.UInt32(uint32(*f.v))
			}
		}
		return c.do(ctx, http.MethodPut, jobPath(id)+"/capacityAttributes", nil, body, nil)
	case u.Enabled != nil:
		verb := "/disable"
		if *u.Enabled {
			verb = "/enable"
		}
		return c.do(ctx, http.MethodPost, jobPath(id)+verb, nil, nil, nil)
	case u.Processes != nil:
		return c.do(ctx, http.MethodPut, jobPath(id)+"/jobprocesses", nil, &titus.ServiceJobSpec_ServiceJobProcesses{
			DisableIncreaseDesired: u.Processes.DisableIncreaseDesired, DisableDecreaseDesired: u.Processes.DisableDecreaseDesired}, nil)
	case len(u.DisruptionBudget) > 0:
		b := &titus.JobDisruptionBudget{}
		if _, err := parseKept("disruptionBudget", u.DisruptionBudget, b); err != nil {
			return err
		}
		return c.do(ctx, http.MethodPut, jobPath(id)+"/disruptionBudget", nil, b, nil)
	case u.Attributes != nil:
		return c.do(ctx, http.MethodPut, jobPath(id)+"/attributes", nil, &titus.JobAttributesUpdate{JobId: id, Attributes: u.Attributes}, nil)
	case u.DeleteAttributes != nil:
		return c.do(ctx, http.MethodDelete, jobPath(id)+"/attributes", url.Values{"keys": {strings.Join(u.DeleteAttributes, ",")}}, nil, nil)
	}
	return fmt.Errorf("job %s: an update that changes nothing: %w", id, ErrInvalid)
}

// FindTasks implements Backend.
func (c *Client) FindTasks(ctx context.Context, q TaskQuery) (TaskQueryResult, error) {
	q.Fields = nil
	var out titus.TaskQueryResult
	if err := c.do(ctx, http.MethodGet, "/api/v3/tasks", q.Values(), nil, &out); err != nil {
		return TaskQueryResult{}, err
	}
	res := TaskQueryResult{Items: make([]Task, len(out.GetItems())), Pagination: paginationFromProto(out.GetPagination())}
	for i, p := range out.GetItems() {
		res.Items[i] = TaskFromProto(p)
	}
	return res, nil
}

// GetTask implements Backend.
func (c *Client) GetTask(ctx context.Context, id string) (Task, error) {
	var out titus.Task
	if err := c.do(ctx, http.MethodGet, taskPath(id), nil, nil, &out); err != nil {
		return Task{}, err
	}
	return TaskFromProto(&out), nil
}

// KillTask implements Backend.
func (c *Client) KillTask(ctx context.Context, id string, k TaskKill) error {
	q := url.Values{}
	if k.Shrink {
		q.Set("shrink", strconv.FormatBool(true))
	}
	if k.PreventMinSizeUpdate {
		q.Set("preventMinSizeUpdate", strconv.FormatBool(true))
	}
	return c.do(ctx, http.MethodDelete, taskPath(id), q, nil, nil)
}

// UpdateTask implements Backend.
func (c *Client) UpdateTask(ctx context.Context, id string, u TaskUpdate) error {
	if u.Attributes != nil {
		return c.do(ctx, http.MethodPut, taskPath(id)+"/attributes", nil, &titus.TaskAttributesUpdate{TaskId: id, Attributes: u.Attributes}, nil)
	}
	return c.do(ctx, http.MethodDelete, taskPath(id)+"/attributes", url.Values{"keys": {strings.Join(u.DeleteAttributes, ",")}}, nil, nil)
}

// MoveTask implements Backend.
func (c *Client) MoveTask(ctx context.Context, m TaskMove) error {
	return c.do(ctx, http.MethodPost, "/api/v3/tasks/move", nil,
		&titus.TaskMoveRequest{SourceJobId: m.SourceJobID, TargetJobId: m.TargetJobID, TaskId: m.TaskID}, nil)
}

var (
	_ Backend  = (*Client)(nil)
	_ Observer = (*Client)(nil)
)
