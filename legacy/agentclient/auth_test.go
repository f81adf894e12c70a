package agentclient

import (
	"errors"
	"net/url"
	"strings"
	"syscall"
	"testing"

	legacyagent "github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

var ops = &mesosauth.Credential{Principal: "vk-titus", Secret: "right"}

func authAgent(t *testing.T, flags mesosauth.Flags) string {
	flags.Credentials = mesosauth.Credentials{*ops}
	return startAgent(t, func(c *legacyagent.Config) { c.HTTPAuth = flags })
}

// TestCredentials: with Options.Credential every call goes through an
// agent that demands authentication, streaming and long-poll ones
// included; without it, or with a wrong secret, calls fail with an error
// that says which agent refused and what to check, classified as
// unauthorized and unavailable (never a rejection or a not-found).
func TestCredentials(t *testing.T) {
	base := authAgent(t, mesosauth.Flags{ReadWrite: true})
	u, _ := url.Parse(base)
	ctx := testCtx(t)

	c := New(base, Options{Credential: ops})
	launchParent(t, c, "p", "echo out; sleep 100", nil)
	if _, err := c.Agent(ctx); err != nil {
		t.Fatalf("GET_AGENT: %v", err)
	}
	if cs, err := c.Containers(ctx); err != nil || len(cs) != 1 {
		t.Fatalf("GET_CONTAINERS: %v %v", cs, err)
	}
	var out syncBuffer
	if code, err := c.Exec(ctx, "p", []string{"cat"}, ExecIO{Stdin: strings.NewReader("through\n"), Stdout: &out}); err != nil || code != 0 || out.String() != "through\n" {
		t.Fatalf("exec with stdin (ATTACH_CONTAINER_INPUT): %d %v %q", code, err, out.String())
	}
	if size, err := c.FileSize(ctx, SandboxPath("p", "stdout")); err != nil || size != 4 {
		t.Fatalf("READ_FILE size: %d %v", size, err)
	}
	if err := c.Kill(ctx, "p", syscall.SIGKILL); err != nil {
		t.Fatalf("KILL: %v", err)
	}
	if e, err := c.Wait(ctx, "p"); err != nil || e.Signal != int32(syscall.SIGKILL) {
		t.Fatalf("WAIT: %+v %v", e, err)
	}
	if err := c.Remove(ctx, "p"); err != nil {
		t.Fatalf("REMOVE: %v", err)
	}

	for name, cl := range map[string]*Client{
		"no credential": New(base, Options{}),
		"wrong secret":  New(base, Options{Credential: &mesosauth.Credential{Principal: "vk-titus", Secret: "wrong"}}),
	} {
		if err := cl.Health(ctx); err != nil {
			t.Errorf("%s: GET_HEALTH stays open: %v", name, err)
		}
		_, err := cl.Agent(ctx)
		want := "agent " + u.Host + ": unauthorized (401): check --mesos-credentials"
		if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) ||
			!strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "wrong") {
			t.Errorf("%s: GET_AGENT: %v; want ErrUnauthorized and ErrUnavailable, naming %q", name, err, want)
		}
		if _, err := cl.Wait(ctx, "p"); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: WAIT: %v; want ErrUnauthorized, not ErrNotFound", name, err)
		}
		if _, err := cl.Exec(ctx, "p", []string{"true"}, ExecIO{}); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: exec: %v; want ErrUnauthorized", name, err)
		}
	}
}

// TestCredentialsReadOnly: an agent that only protects reads takes a
// launch without credentials and refuses the wait.
func TestCredentialsReadOnly(t *testing.T) {
	base := authAgent(t, mesosauth.Flags{ReadOnly: true})
	ctx := testCtx(t)
	anon := New(base, Options{CredentialFlag: "--agent-credential"})
	launchParent(t, anon, "c", "exit 0", nil)
	if _, err := anon.Wait(ctx, "c"); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "check --agent-credential") {
		t.Fatalf("WAIT without credentials: %v", err)
	}
	if e, err := New(base, Options{Credential: ops}).Wait(ctx, "c"); err != nil || e.Code != 0 {
		t.Fatalf("WAIT with credentials: %+v %v", e, err)
	}
}
