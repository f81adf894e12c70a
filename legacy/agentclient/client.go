// Package agentclient is the bridge's only way to a legacy agent: the Mesos
// v1 agent operator API through mesos-go's agent/calls and httpcli, exactly as
// one would talk to a real Mesos agent. Nothing in it knows the reference
// agent; it is the other half of the contract the reference agent imitates.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpagent"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/translate"
)

// Error classes the provider turns into state-machine events.
var (
	// ErrNotFound: the agent does not know the container (HTTP 404).
	ErrNotFound = errors.New("not found on agent")
	// ErrRejected: the agent refused the call as invalid (HTTP 4xx); retrying
	// the same call cannot help.
	ErrRejected = errors.New("rejected by agent")
	// ErrUnavailable: the call did not get an answer (network, 5xx, timeout);
	// the agent may be fine a moment later.
	ErrUnavailable = errors.New("agent unavailable")
	// ErrUnauthorized: the agent refused the call with 401, the credential
	// sent (Options.Credential) or its absence. Such an error is also
	// ErrUnavailable: the agent cannot be used until an operator fixes the
	// configuration, which is no fault of the pod (never a rejection) and
	// no sign that the container is gone (never a not-found). The client
	// itself never retries.
	ErrUnauthorized = mesosauth.ErrUnauthorized
)

// DefaultCredentialFlag is what a 401's error tells the operator to
// check when Options.CredentialFlag is empty: the bridge's flag.
const DefaultCredentialFlag = "--mesos-credentials"

// Options tune the client; zero values take the defaults.
type Options struct {
	// CallTimeout bounds every call but WAIT (default 10s).
	CallTimeout time.Duration
	// MaxIdleConns keeps connections for reuse across calls (default 128);
	// mesos-go's own default of 2 would reconnect on nearly every call under
	// a burst.
	MaxIdleConns int
	// Observe, when set, is told of every call: its type, how long it took
	// and its (classified) error. Metrics hang off it.
	Observe func(call string, took time.Duration, err error)
	// Credential is sent as HTTP Basic authentication on every call,
	// streaming and long-poll ones included, for agents started with
	// --authenticate_http_readwrite or --authenticate_http_readonly. Nil:
	// none.
	Credential *mesosauth.Credential
	// CredentialFlag names where Credential comes from in a 401's error
	// (default DefaultCredentialFlag).
	CredentialFlag string
}

// Client talks to one agent.
type Client struct {
	endpoint string
	sender   calls.Sender
	timeout  time.Duration
	observe  func(string, time.Duration, error)
	// unauthorized is the error a 401 stands for, worded once.
	unauthorized error
}

type statusKey struct{}

// New returns a client for the agent at endpoint (http://host:port; the
// operator API path /api/v1 is appended).
func New(endpoint string, o Options) *Client {
	if o.CallTimeout == 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.MaxIdleConns == 0 {
		o.MaxIdleConns = 128
	}
	if o.CredentialFlag == "" {
		o.CredentialFlag = DefaultCredentialFlag
	}
	endpoint = strings.TrimRight(endpoint, "/")
	cli := httpcli.New(
		httpcli.Endpoint(endpoint+"/api/v1"),
		httpcli.Do(httpcli.With(
			// WAIT is a long poll: mesos-go's 15 s response-header timeout
			// would cut it. Every call is bounded by its context instead.
			httpcli.Transport(func(t *http.Transport) {
				t.ResponseHeaderTimeout = 0
				t.MaxIdleConns = o.MaxIdleConns
				t.MaxIdleConnsPerHost = o.MaxIdleConns
				t.IdleConnTimeout = 90 * time.Second
			}),
			httpcli.WrapRoundTripper(o.Credential.Wrap),
		)),
		// mesos-go answers nil for both 200 and 202 on LAUNCH; the status is
		// the only way to know that a container already existed.
		httpcli.WrapDoer(func(next httpcli.DoFunc) httpcli.DoFunc {
			return func(req *http.Request) (*http.Response, error) {
				res, err := next(req)
				if p, ok := req.Context().Value(statusKey{}).(*int); ok && res != nil {
					*p = res.StatusCode
				}
				return res, err
			}
		}),
	)
	observe := o.Observe
	if observe == nil {
		observe = func(string, time.Duration, error) {}
	}
	return &Client{
		endpoint: endpoint, sender: httpagent.NewSender(cli.Send), timeout: o.CallTimeout, observe: observe,
		unauthorized: mesosauth.Unauthorized("agent "+hostOf(endpoint), o.CredentialFlag, o.Credential),
	}
}

// hostOf is endpoint's host:port, as errors name the agent.
func hostOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return endpoint
}

// Endpoint is the agent's base URL.
func (c *Client) Endpoint() string { return c.endpoint }

func (c *Client) classify(call agent.Call_Type, err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case apierrors.CodeNotAuthenticated.Matches(err):
		return fmt.Errorf("%s: %w: %w", call, ErrUnavailable, c.unauthorized)
	case apierrors.CodeNotFound.Matches(err):
		kind = ErrNotFound
	case apierrors.CodeMesosUnavailable.Matches(err), apierrors.CodeRateLimitExceeded.Matches(err):
		kind = ErrUnavailable
	default:
		var ae *apierrors.Error
		if errors.As(err, &ae) {
			kind = ErrRejected
		} else {
			kind = ErrUnavailable
		}
	}
	return fmt.Errorf("%s: %w: %w", call, kind, err)
}

func (c *Client) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// call sends a call that answers with a body and decodes it.
func (c *Client) call(ctx context.Context, call *agent.Call) (out *agent.Response, err error) {
	start := time.Now()
	defer func() { c.observe(call.Type.String(), time.Since(start), err) }()
	res, err := c.sender.Send(ctx, calls.NonStreaming(call))
	if res != nil {
		defer res.Close()
	}
	if err != nil {
		return nil, c.classify(call.Type, err)
	}
	out = &agent.Response{}
	if err := res.Decode(out); err != nil {
		return nil, fmt.Errorf("%s: decode: %w: %w", call.Type, ErrUnavailable, err)
	}
	return out, nil
}

func (c *Client) noData(ctx context.Context, call *agent.Call) (status int, err error) {
	start := time.Now()
	ctx = context.WithValue(ctx, statusKey{}, &status)
	err = c.classify(call.Type, calls.SendNoData(ctx, c.sender, calls.NonStreaming(call)))
	c.observe(call.Type.String(), time.Since(start), err)
	return status, err
}

// Health is GET_HEALTH.
func (c *Client) Health(ctx context.Context) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	res, err := c.call(ctx, calls.GetHealth())
	if err != nil {
		return err
	}
	if h := res.GetGetHealth(); h == nil || !h.Healthy {
		return fmt.Errorf("GET_HEALTH: %w: agent reports unhealthy", ErrUnavailable)
	}
	return nil
}

// Info is what the node needs to know of its agent.
type Info struct {
	ID         string
	Hostname   string
	Resources  Resources
	Attributes map[string]string
}

// Resources are the scalar resources the bridge accounts for.
type Resources struct {
	CPUs, MemMB, DiskMB, GPUs float64
}

// Agent is GET_AGENT.
func (c *Client) Agent(ctx context.Context) (Info, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	res, err := c.call(ctx, calls.GetAgent())
	if err != nil {
		return Info{}, err
	}
	ai := res.GetGetAgent().GetAgentInfo()
	if ai == nil {
		return Info{}, fmt.Errorf("GET_AGENT: %w: no agent_info in answer", ErrUnavailable)
	}
	info := Info{Hostname: ai.Hostname, Attributes: map[string]string{}}
	if ai.ID != nil {
		info.ID = ai.ID.Value
	}
	for _, r := range ai.Resources {
		if r.Scalar == nil {
			continue
		}
		switch r.Name {
		case "cpus":
			info.Resources.CPUs += r.Scalar.Value
		case "mem":
			info.Resources.MemMB += r.Scalar.Value
		case "disk":
			info.Resources.DiskMB += r.Scalar.Value
		case "gpus":
			info.Resources.GPUs += r.Scalar.Value
		}
	}
	for _, a := range ai.Attributes {
		switch {
		case a.Text != nil:
			info.Attributes[a.Name] = a.Text.Value
		case a.Scalar != nil:
			info.Attributes[a.Name] = fmt.Sprint(a.Scalar.Value)
		}
	}
	return info, nil
}

// Launch is LAUNCH_CONTAINER. existed reports the agent's 202 (the container
// was already there: a retried or re-adopted launch) as opposed to 200 for a
// new one, as a Mesos agent answers.
func (c *Client) Launch(ctx context.Context, id string, l *translate.Launch) (existed bool, err error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	status, err := c.noData(ctx, calls.LaunchContainer(mesos.ContainerID{Value: id}, l.Command, l.Container, l.Resources))
	return status == http.StatusAccepted, err
}

// Exit is how a container ended, decoded from WAIT_CONTAINER.
type Exit struct {
	Code    int32  // exit code, or 128+signal as a shell reports it
	Signal  int32  // terminating signal, 0 when it exited
	State   string // the agent's TaskState, when it set one
	Reason  string
	Message string
}

// Wait is WAIT_CONTAINER: it blocks until the container ends or ctx is done.
func (c *Client) Wait(ctx context.Context, id string) (Exit, error) {
	res, err := c.call(ctx, calls.WaitContainer(mesos.ContainerID{Value: id}))
	if err != nil {
		return Exit{}, err
	}
	w := res.GetWaitContainer()
	if w == nil {
		return Exit{}, fmt.Errorf("WAIT_CONTAINER: %w: no wait_container in answer", ErrUnavailable)
	}
	var e Exit
	if w.ExitStatus != nil {
		ws := syscall.WaitStatus(*w.ExitStatus)
		switch {
		case ws.Signaled():
			e.Signal = int32(ws.Signal())
			e.Code = 128 + e.Signal
		default:
			e.Code = int32(ws.ExitStatus())
		}
	}
	if w.State != nil {
		e.State = w.State.String()
	}
	if w.Reason != nil {
		e.Reason = w.Reason.String()
	}
	if w.Message != nil {
		e.Message = *w.Message
	}
	return e, nil
}

// Kill is KILL_CONTAINER with an explicit signal: Mesos defaults to SIGKILL,
// and the kubelet's contract is SIGTERM first.
func (c *Client) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	call := calls.KillContainer(mesos.ContainerID{Value: id})
	s := int32(sig)
	call.KillContainer.Signal = &s
	_, err := c.noData(ctx, call)
	return err
}

// Remove is REMOVE_CONTAINER.
func (c *Client) Remove(ctx context.Context, id string) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	_, err := c.noData(ctx, calls.RemoveContainer(mesos.ContainerID{Value: id}))
	return err
}

// Container is one live container as GET_CONTAINERS lists it.
type Container struct {
	ID          string
	PID         uint32
	MemRSSBytes uint64
	CPUSeconds  float64 // user + system
	Timestamp   float64
}

// Containers is GET_CONTAINERS with standalone containers shown (the
// bridge's containers are standalone: no framework, no executor).
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	call := calls.GetContainers()
	yes := true
	call.GetContainers = &agent.Call_GetContainers{ShowStandalone: &yes}
	res, err := c.call(ctx, call)
	if err != nil {
		return nil, err
	}
	list := res.GetGetContainers().GetContainers()
	out := make([]Container, 0, len(list))
	for _, ct := range list {
		o := Container{ID: ct.ContainerID.Value}
		if st := ct.ContainerStatus; st != nil && st.ExecutorPID != nil {
			o.PID = *st.ExecutorPID
		}
		if rs := ct.ResourceStatistics; rs != nil {
			o.Timestamp = rs.Timestamp
			if rs.MemRSSBytes != nil {
				o.MemRSSBytes = *rs.MemRSSBytes
			}
			if rs.CPUsUserTimeSecs != nil {
				o.CPUSeconds += *rs.CPUsUserTimeSecs
			}
			if rs.CPUsSystemTimeSecs != nil {
				o.CPUSeconds += *rs.CPUsSystemTimeSecs
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// ReadFile is READ_FILE: up to length bytes of path from offset, and the
// file's current size. Length 0 asks for no limit, but a Mesos agent never
// answers more than ReadFileChunk at once: read a large file by offset (see
// files.go), and use FileSize to learn only its size.
func (c *Client) ReadFile(ctx context.Context, path string, offset, length uint64) ([]byte, uint64, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	call := calls.ReadFile(path, offset)
	if length > 0 {
		call = calls.ReadFileWithLength(path, offset, length)
	}
	res, err := c.call(ctx, call)
	if err != nil {
		return nil, 0, err
	}
	rf := res.GetReadFile()
	if rf == nil {
		return nil, 0, fmt.Errorf("READ_FILE: %w: no read_file in answer", ErrUnavailable)
	}
	return rf.Data, rf.Size_, nil
}

// SandboxPath is where a container's sandbox file lives on the agent, as
// READ_FILE takes it. A real Mesos agent virtualises standalone container
// sandboxes under /containers/<id>; the reference agent accepts the same.
func SandboxPath(id, file string) string { return "/sandboxes/" + id + "/" + file }
