package agent

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpagent"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

var (
	opsCred   = &mesosauth.Credential{Principal: "ops", Secret: "right"}
	wrongCred = &mesosauth.Credential{Principal: "ops", Secret: "wrong"}
)

func authHarness(t *testing.T, flags mesosauth.Flags) *harness {
	flags.Credentials = mesosauth.Credentials{*opsCred}
	return newHarness(t, nil, func(c *Config) { c.HTTPAuth = flags })
}

// credSender is newSender sending c (nil: nothing) with every call.
func credSender(url string, c *mesosauth.Credential) calls.Sender {
	return httpagent.NewSender(httpcli.New(
		httpcli.Endpoint(url+"/api/v1"),
		httpcli.Do(httpcli.With(httpcli.Timeout(0), httpcli.WrapRoundTripper(c.Wrap))),
	).Send)
}

// as returns h sending c with every call.
func (h *harness) as(c *mesosauth.Credential) *harness {
	cp := *h
	cp.sender = credSender(h.srv.URL, c)
	return &cp
}

func unauthorized(err error) bool { return apierrors.CodeNotAuthenticated.Matches(err) }

// TestHTTPAuthReadWrite: with --authenticate_http_readwrite every call but
// GET_HEALTH needs the credentials, and a wrong secret is refused.
func TestHTTPAuthReadWrite(t *testing.T) {
	h := authHarness(t, mesosauth.Flags{ReadWrite: true})
	anon, ops, wrong := h.as(nil), h.as(opsCred), h.as(wrongCred)

	if _, err := anon.get(calls.GetHealth()); err != nil {
		t.Fatalf("GET_HEALTH without credentials: %v", err)
	}
	res, err := http.Get(h.srv.URL + "/health")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /health without credentials: %v %v", res, err)
	}
	res.Body.Close()

	launch := calls.LaunchContainer(mesos.ContainerID{Value: "c"}, shellCmd("exit 0"), nil, nil)
	for _, c := range []*agent.Call{calls.GetAgent(), calls.GetVersion(), calls.ReadFile("/sandboxes/c/stdout", 0), launch,
		calls.WaitContainer(mesos.ContainerID{Value: "c"}), killCall("c", nil), calls.RemoveContainer(mesos.ContainerID{Value: "c"})} {
		if err := anon.send(c); !unauthorized(err) {
			t.Errorf("%s without credentials: %v, want 401", c.Type, err)
		}
		if err := wrong.send(c); !unauthorized(err) {
			t.Errorf("%s with a wrong secret: %v, want 401", c.Type, err)
		}
	}
	if _, err := ops.get(calls.GetAgent()); err != nil {
		t.Fatalf("GET_AGENT with credentials: %v", err)
	}
	ops.mustLaunch("c", shellCmd("echo hi"), nil)
	if w := ops.wait("c"); w.GetState() != mesos.TASK_FINISHED {
		t.Fatalf("WAIT with credentials: %v", w)
	}
	if got := ops.readFile("/sandboxes/c/stdout"); got != "hi\n" {
		t.Fatalf("READ_FILE with credentials: %q", got)
	}

	// ATTACH_CONTAINER_INPUT, a streaming request, is refused before its
	// stream is read, and with the challenge.
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v1", bytes.NewReader([]byte("3\n{}")))
	req.Header.Set("Content-Type", mediaTypeRecordIO)
	req.Header.Set("Message-Content-Type", "application/json")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Header.Get("WWW-Authenticate"), `Basic realm="mesos"`) {
		t.Fatalf("streaming request without credentials: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

// TestHTTPAuthReadOnly: --authenticate_http_readonly alone protects the
// calls that read and leaves those that write open, as Mesos' realms do.
func TestHTTPAuthReadOnly(t *testing.T) {
	h := authHarness(t, mesosauth.Flags{ReadOnly: true})
	anon, ops := h.as(nil), h.as(opsCred)
	if _, err := anon.get(calls.GetHealth()); err != nil {
		t.Fatalf("GET_HEALTH: %v", err)
	}
	anon.mustLaunch("c", shellCmd("echo hi"), nil)
	for _, c := range []*agent.Call{calls.GetAgent(), calls.GetContainers(), calls.ReadFile("/sandboxes/c/stdout", 0),
		calls.WaitContainer(mesos.ContainerID{Value: "c"})} {
		if err := anon.send(c); !unauthorized(err) {
			t.Errorf("%s without credentials: %v, want 401", c.Type, err)
		}
	}
	if w := ops.wait("c"); w.GetState() != mesos.TASK_FINISHED {
		t.Fatalf("WAIT with credentials: %v", w)
	}
	if err := anon.send(calls.RemoveContainer(mesos.ContainerID{Value: "c"})); err != nil {
		t.Fatalf("REMOVE without credentials (read-write is not protected): %v", err)
	}
}

func TestCallRealms(t *testing.T) {
	for typ := range agent.Call_Type_name {
		ct := agent.Call_Type(typ)
		r := callRealm(ct)
		name := ct.String()
		switch {
		case ct == agent.Call_GET_HEALTH:
			if r != mesosauth.Open {
				t.Errorf("%s: %s", name, r)
			}
		case strings.HasPrefix(name, "LAUNCH_"), strings.HasPrefix(name, "KILL_"), strings.HasPrefix(name, "REMOVE_"),
			strings.HasPrefix(name, "SET_"), strings.HasPrefix(name, "ADD_"), strings.HasPrefix(name, "UPDATE_"),
			strings.HasPrefix(name, "MARK_"), strings.HasPrefix(name, "PRUNE_"), name == "ATTACH_CONTAINER_INPUT", name == "UNKNOWN":
			if r != mesosauth.ReadWrite {
				t.Errorf("%s: %s, want readwrite", name, r)
			}
		default:
			if r != mesosauth.ReadOnly {
				t.Errorf("%s: %s, want readonly", name, r)
			}
		}
	}
}
