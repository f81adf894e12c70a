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
)

// Client is a Backend reached over HTTP: another server of this API.
type Client struct {
	// base returns the server's base URL (http://host:port) for each call,
	// so a client can follow a leader that moves.
	base func() (string, error)
	hc   *http.Client
}

// NewClient calls the server that base names at each call. Followers'
// redirects to their leader are followed (bodies are replayable).
func NewClient(base func() (string, error), hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: base, hc: hc}
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

// Is maps the status back to the Backend error sentinels.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return target == ErrInvalid
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return target == ErrUnavailable
	}
	return false
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, into any) error {
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
		b, err := json.Marshal(body)
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
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %v", method, u, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading reply: %w: %v", method, u, ErrUnavailable, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb.Message = fmt.Sprintf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(data))
		}
		return &RemoteError{Code: resp.StatusCode, Msg: eb.Message}
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s %s: decoding reply: %w", method, u, err)
	}
	return nil
}

func jobPath(id string) string  { return "/api/v3/jobs/" + url.PathEscape(id) }
func taskPath(id string) string { return "/api/v3/tasks/" + url.PathEscape(id) }

// CreateJob implements Backend.
func (c *Client) CreateJob(ctx context.Context, d JobDescriptor) (string, error) {
	var out JobID
	err := c.do(ctx, http.MethodPost, "/api/v3/jobs", nil, d, &out)
	return out.ID, err
}

// FindJobs implements Backend.
func (c *Client) FindJobs(ctx context.Context, q JobQuery) (JobQueryResult, error) {
	var out JobQueryResult
	err := c.do(ctx, http.MethodGet, "/api/v3/jobs", q.Values(), nil, &out)
	return out, err
}

// GetJob implements Backend.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodGet, jobPath(id), nil, nil, &out)
	return out, err
}

// KillJob implements Backend.
func (c *Client) KillJob(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, jobPath(id), nil, nil, nil)
}

// UpdateCapacity implements Backend.
func (c *Client) UpdateCapacity(ctx context.Context, id string, capacity Capacity) error {
	return c.do(ctx, http.MethodPut, jobPath(id)+"/instances", nil, capacity, nil)
}

// SetEnabled implements Backend.
func (c *Client) SetEnabled(ctx context.Context, id string, enabled bool) error {
	verb := "/disable"
	if enabled {
		verb = "/enable"
	}
	return c.do(ctx, http.MethodPost, jobPath(id)+verb, nil, nil, nil)
}

// FindTasks implements Backend.
func (c *Client) FindTasks(ctx context.Context, q TaskQuery) (TaskQueryResult, error) {
	var out TaskQueryResult
	err := c.do(ctx, http.MethodGet, "/api/v3/tasks", q.Values(), nil, &out)
	return out, err
}

// GetTask implements Backend.
func (c *Client) GetTask(ctx context.Context, id string) (Task, error) {
	var out Task
	err := c.do(ctx, http.MethodGet, taskPath(id), nil, nil, &out)
	return out, err
}

// KillTask implements Backend.
func (c *Client) KillTask(ctx context.Context, id string, shrink bool) error {
	var q url.Values
	if shrink {
		q = url.Values{"shrink": {strconv.FormatBool(true)}}
	}
	return c.do(ctx, http.MethodDelete, taskPath(id), q, nil, nil)
}

var _ Backend = (*Client)(nil)
