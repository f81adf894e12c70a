package mesosauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCredentials(t *testing.T) {
	p := writeFile(t, `{"credentials": [{"principal": "ops", "secret": "s3cret"}, {"principal": "vk-titus", "secret": "other"}]}`)
	cs, err := LoadCredentials(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Principal != "ops" || cs[0].Secret != "s3cret" || cs[1].Principal != "vk-titus" {
		t.Fatalf("loaded %v", cs)
	}
	if _, err := LoadCredentials("file://" + p); err != nil {
		t.Fatalf("file:// URL: %v", err)
	}

	for name, content := range map[string]string{
		"not JSON":       `{"credentials": [{"principal": "ops", "secret": "hunter2"`,
		"empty list":     `{"credentials": []}`,
		"no secret":      `{"credentials": [{"principal": "ops"}]}`,
		"no principal":   `{"credentials": [{"secret": "hunter2"}]}`,
		"duplicate":      `{"credentials": [{"principal": "ops", "secret": "hunter2"}, {"principal": "ops", "secret": "x"}]}`,
		"unknown field":  `{"credentials": [{"principal": "ops", "secret": "hunter2", "role": "x"}]}`,
		"wrong type":     `{"credentials": [{"principal": "ops", "secret": 123456}]}`,
		"colon":          `{"credentials": [{"principal": "o:ps", "secret": "hunter2"}]}`,
		"single, not []": `{"principal": "ops", "secret": "hunter2"}`,
	} {
		_, err := LoadCredentials(writeFile(t, content))
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: %v, want ErrBadCredentials", name, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "123456") {
			t.Errorf("%s: the error quotes the secret: %v", name, err)
		}
	}
	if _, err := LoadCredentials(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrBadCredentials) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadCredential(t *testing.T) {
	for name, content := range map[string]string{
		"json": `{"principal": "agent", "secret": "pw"}`,
		"text": "agent pw\n",
	} {
		c, err := LoadCredential(writeFile(t, content))
		if err != nil || c.Principal != "agent" || c.Secret != "pw" {
			t.Errorf("%s: %v, %v", name, c, err)
		}
	}
	for name, content := range map[string]string{
		"three words": "agent pw extra",
		"two lines":   "agent\npw",
		"empty":       "",
		"json list":   `{"credentials": [{"principal": "agent", "secret": "pw"}]}`,
		"no secret":   `{"principal": "agent"}`,
	} {
		if _, err := LoadCredential(writeFile(t, content)); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: %v, want ErrBadCredentials", name, err)
		}
	}
}

func TestCredentialNeverFormatsTheSecret(t *testing.T) {
	c := &Credential{Principal: "agent", Secret: "hunter2"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", *c, *c, *c, c), fmt.Sprint([]Credential{*c})} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, "agent") {
			t.Errorf("formatted as %q", s)
		}
	}
	if s := (Flags{ReadWrite: true, Credentials: Credentials{*c}}).String(); strings.Contains(s, "hunter2") {
		t.Errorf("Flags formatted as %q", s)
	}
	err := Unauthorized("agent 127.0.0.1:5051", "--mesos-credentials", c)
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Unauthorized: %v", err)
	}
	want := "agent 127.0.0.1:5051: unauthorized (401): check --mesos-credentials"
	if got := Unauthorized("agent 127.0.0.1:5051", "--mesos-credentials", nil).Error(); !strings.HasPrefix(got, want) {
		t.Errorf("Unauthorized without a credential: %q, want it to start with %q", got, want)
	}
}

// server answers 200 to requests of realm (from the X-Realm header) that
// auth permits.
func server(t *testing.T, auth *Authenticator) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		realm := map[string]Realm{"open": Open, "readonly": ReadOnly, "readwrite": ReadWrite}[r.Header.Get("X-Realm")]
		if auth.Allow(w, r, realm) {
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func status(t *testing.T, srv *httptest.Server, realm string, c *Credential) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-Realm", realm)
	res, err := (&http.Client{Transport: c.Wrap(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") != `Basic realm="mesos"` {
		t.Errorf("401 without the challenge: %q", res.Header.Get("WWW-Authenticate"))
	}
	return res.StatusCode
}

func TestRealms(t *testing.T) {
	creds := Credentials{{Principal: "ops", Secret: "right"}, {Principal: "bridge", Secret: "other"}}
	good := &Credential{Principal: "ops", Secret: "right"}
	second := &Credential{Principal: "bridge", Secret: "other"}
	wrong := &Credential{Principal: "ops", Secret: "wrong"}
	crossed := &Credential{Principal: "bridge", Secret: "right"}
	stranger := &Credential{Principal: "nobody", Secret: "right"}
	type row struct {
		flags                Flags
		realm                string
		none, ok, bad, other int
	}
	const ok, no = http.StatusOK, http.StatusUnauthorized
	for _, r := range []row{
		{Flags{ReadWrite: true}, "open", ok, ok, ok, ok},
		{Flags{ReadWrite: true}, "readonly", no, ok, no, ok},
		{Flags{ReadWrite: true}, "readwrite", no, ok, no, ok},
		{Flags{ReadOnly: true}, "open", ok, ok, ok, ok},
		{Flags{ReadOnly: true}, "readonly", no, ok, no, ok},
		// Read-only protection leaves writes open, as in Mesos.
		{Flags{ReadOnly: true}, "readwrite", ok, ok, ok, ok},
		{Flags{ReadOnly: true, ReadWrite: true}, "readonly", no, ok, no, ok},
	} {
		r.flags.Credentials = creds
		auth, err := NewAuthenticator(r.flags)
		if err != nil {
			t.Fatal(err)
		}
		srv := server(t, auth)
		what := fmt.Sprintf("%s, realm %s", r.flags, r.realm)
		if got := status(t, srv, r.realm, nil); got != r.none {
			t.Errorf("%s, no credentials: %d, want %d", what, got, r.none)
		}
		if got := status(t, srv, r.realm, good); got != r.ok {
			t.Errorf("%s, right secret: %d, want %d", what, got, r.ok)
		}
		if got := status(t, srv, r.realm, second); got != r.other {
			t.Errorf("%s, second principal: %d, want %d", what, got, r.other)
		}
		for _, c := range []*Credential{wrong, crossed, stranger} {
			if got := status(t, srv, r.realm, c); got != r.bad {
				t.Errorf("%s, %v: %d, want %d", what, c, got, r.bad)
			}
		}
	}
}

func TestNoFlagsNoAuthenticator(t *testing.T) {
	auth, err := NewAuthenticator(Flags{Credentials: Credentials{{Principal: "a", Secret: "b"}}})
	if err != nil || auth != nil {
		t.Fatalf("no flags: %v, %v", auth, err)
	}
	srv := server(t, auth)
	if got := status(t, srv, "readwrite", nil); got != http.StatusOK {
		t.Fatalf("nil authenticator: %d", got)
	}
	if _, err := NewAuthenticator(Flags{ReadWrite: true}); err == nil {
		t.Fatal("readwrite without credentials accepted")
	}
}

// The credential survives a redirect to another port, which Go's client
// would strip from a request header.
func TestWrapSurvivesRedirects(t *testing.T) {
	auth, _ := NewAuthenticator(Flags{ReadWrite: true, Credentials: Credentials{{Principal: "p", Secret: "s"}}})
	target := server(t, auth)
	hop := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	t.Cleanup(hop.Close)
	req, _ := http.NewRequest(http.MethodGet, hop.URL, nil)
	req.Header.Set("X-Realm", "readwrite")
	res, err := (&http.Client{Transport: (&Credential{Principal: "p", Secret: "s"}).Wrap(http.DefaultTransport)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("after a redirect: %d", res.StatusCode)
	}
	if _, _, ok := req.BasicAuth(); ok {
		t.Fatal("Wrap modified the caller's request")
	}
}
