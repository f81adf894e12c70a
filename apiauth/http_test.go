package apiauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk-titus/vk-titus/internal/testlog"
)

// served is a job API behind a Guard whose handler answers every request
// with the Identity it was given.
type served struct {
	srv *httptest.Server
	pki *pki
}

func serve(t *testing.T, c *cluster, mod func(*Config)) served {
	t.Helper()
	p := newPKI(t)
	cfg := Config{Client: c.client, ClientCAFile: p.caFile, Log: testlog.New()}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Identity
			Authorization string `json:"authorization"`
		}{From(r.Context()), r.Header.Get("Authorization")})
	})
	srv := httptest.NewUnstartedServer(g.Handler(inner))
	if srv.TLS, err = ServerTLS(p.certFile, p.keyFile, p.caFile); err != nil {
		t.Fatal(err)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return served{srv, p}
}

// caller is one client: a token, a certificate, declared headers, or
// nothing at all.
type caller struct {
	token   string
	cert    *tls.Certificate
	headers map[string]string
}

type answer struct {
	code         int
	id           Identity
	auth         string // the Authorization header the handler saw
	statusCode   int    // Titus's error body
	message      string
	authenticate string // WWW-Authenticate
}

func (s served) do(t *testing.T, c caller, method, path string) answer {
	t.Helper()
	a, err := s.try(c, method, path)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return a
}

func (s served) try(c caller, method, path string) (answer, error) {
	tc := s.pki.clientTLS()
	if c.cert != nil {
		tc = s.pki.clientTLS(*c.cert)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		return answer{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{code: resp.StatusCode, authenticate: resp.Header.Get("WWW-Authenticate")}
	if resp.StatusCode >= 400 {
		var e struct {
			StatusCode int    `json:"statusCode"`
			Message    string `json:"message"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return a, err
		}
		a.statusCode, a.message = e.StatusCode, e.Message
		return a, nil
	}
	if path == "/healthz" || method == http.MethodHead {
		return a, nil
	}
	var body struct {
		Identity
		Authorization string `json:"authorization"`
	}
	err = json.Unmarshal(b, &body)
	a.id, a.auth = body.Identity, body.Authorization
	return a, err
}

func TestAnonymousRefused(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, nil)
	for _, r := range [][2]string{
		{"POST", "/api/v3/jobs"},
		{"GET", "/api/v3/jobs"},
		{"DELETE", "/api/v3/tasks/t-1"},
		{"PUT", "/api/v3/migration/stages/application/app"},
		{"GET", "/api/v3/migration/history"},
		{"PATCH", "/api/v3/jobs"},
		{"GET", "/metrics"},
	} {
		a := s.do(t, caller{}, r[0], r[1])
		if a.code != 401 || a.statusCode != 401 || !strings.Contains(a.message, "anonymous") || a.authenticate == "" {
			t.Errorf("anonymous %s %s: %+v, want 401 in Titus's shape with WWW-Authenticate", r[0], r[1], a)
		}
	}
	if a := s.do(t, caller{}, "GET", "/healthz"); a.code != 200 {
		t.Errorf("anonymous /healthz: %d, want 200", a.code)
	}
	if n := c.accessReviews.Load(); n != 0 {
		t.Errorf("%d SubjectAccessReviews for anonymous requests, want none", n)
	}
}

func TestAnonymousReads(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, func(cfg *Config) { cfg.AllowAnonymousReads = true })
	for _, r := range [][2]string{{"GET", "/api/v3/jobs"}, {"GET", "/api/v3/tasks/t-1"}, {"HEAD", "/api/v3/jobs/j-1"}, {"GET", "/api/v3/migration/history"}} {
		a := s.do(t, caller{headers: map[string]string{HeaderCallerID: "old-tool"}}, r[0], r[1])
		if a.code != 200 {
			t.Errorf("anonymous read %s %s: %+v, want 200", r[0], r[1], a)
			continue
		}
		if r[0] == "GET" && (a.id.User != AnonymousUser || !a.id.Anonymous() || !slices.Equal(a.id.Groups, []string{UnauthenticatedGroup}) || a.id.CallerID != "old-tool") {
			t.Errorf("anonymous read %s %s: identity %+v", r[0], r[1], a.id)
		}
	}
	for _, r := range [][2]string{{"POST", "/api/v3/jobs"}, {"DELETE", "/api/v3/jobs/j-1"}, {"PUT", "/api/v3/migration/stages/application/app"}, {"PATCH", "/api/v3/jobs"}} {
		if a := s.do(t, caller{}, r[0], r[1]); a.code != 401 {
			t.Errorf("anonymous write %s %s with anonymous reads allowed: %+v, want 401", r[0], r[1], a)
		}
	}
	if n := c.accessReviews.Load(); n != 0 {
		t.Errorf("%d SubjectAccessReviews for anonymous requests, want none", n)
	}
}

func TestServiceAccountTokens(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, nil)
	reader := caller{token: readerToken}
	a := s.do(t, reader, "POST", "/api/v3/jobs")
	if a.code != 403 || a.statusCode != 403 || !strings.Contains(a.message, readerSA) || !strings.Contains(a.message, "create") {
		t.Errorf("reader creating a job: %+v, want 403 naming the user and verb", a)
	}
	if a := s.do(t, reader, "GET", "/api/v3/jobs"); a.code != 200 || a.id.User != readerSA {
		t.Errorf("reader listing jobs: %+v", a)
	}

	writer := caller{token: writerToken, headers: map[string]string{HeaderCallerID: "spinnaker", HeaderCallReason: "deploy\t v2"}}
	a = s.do(t, writer, "POST", "/api/v3/jobs")
	if a.code != 200 {
		t.Fatalf("writer creating a job: %+v, want it through", a)
	}
	if a.id.User != writerSA || a.id.UID != "uid-"+writerSA || a.id.Method != MethodToken ||
		!slices.Contains(a.id.Groups, AuthenticatedGroup) || a.id.CallerID != "spinnaker" || a.id.CallReason != "deploy v2" {
		t.Errorf("writer's identity: %+v", a.id)
	}
	if a.auth != "" {
		t.Errorf("the handler saw the Authorization header %q", a.auth)
	}
	ask := c.lastAsk(t)
	if ra := ask.ResourceAttributes; ask.User != writerSA || ra == nil || ra.Group != Group || ra.Resource != "jobs" || ra.Verb != "create" {
		t.Errorf("SubjectAccessReview sent: %+v", ask)
	}

	for _, bad := range []string{"stolen", "x"} {
		if a := s.do(t, caller{token: bad}, "GET", "/api/v3/jobs"); a.code != 401 || strings.Contains(a.message, "invalid token") {
			t.Errorf("bad token %q: %+v, want 401 without the API server's reason", bad, a)
		}
	}
}

func TestClientCertificates(t *testing.T) {
	c := newCluster(t)
	c.grants["alice"] = []string{"create jobs"}
	s := serve(t, c, nil)
	alice := s.pki.client(t, "alice", []string{"job-submitters"}, false)
	a := s.do(t, caller{cert: &alice}, "POST", "/api/v3/jobs")
	if a.code != 200 || a.id.User != "alice" || a.id.Method != MethodX509 ||
		!slices.Equal(a.id.Groups, []string{"job-submitters", AuthenticatedGroup}) {
		t.Errorf("alice's certificate: %+v", a)
	}
	if a := s.do(t, caller{cert: &alice}, "DELETE", "/api/v3/jobs/j-1"); a.code != 403 {
		t.Errorf("alice killing a job without the verb: %+v, want 403", a)
	}
	rogue := s.pki.client(t, "alice", nil, true)
	if a, err := s.try(caller{cert: &rogue}, "POST", "/api/v3/jobs"); err == nil {
		t.Errorf("a certificate from an unknown CA got an answer: %+v", a)
	}
	// A certificate wins over a token, as in the API server.
	if a := s.do(t, caller{cert: &alice, token: writerToken}, "POST", "/api/v3/jobs"); a.id.User != "alice" {
		t.Errorf("certificate and token: %+v, want alice", a)
	}
}

func TestActionsAsked(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, nil)
	for _, tc := range []struct{ method, path, verb, resource, name string }{
		{"GET", "/api/v3/jobs/j-1", "get", "jobs", "j-1"},
		{"PUT", "/api/v3/jobs/j%2F1/instances", "update", "jobs", "j/1"},
		{"POST", "/api/v3/tasks/move", "update", "tasks", ""},
		{"DELETE", "/api/v3/migration/stages/application/app", "delete", "migrations", "application/app"},
		{"GET", "/api/v3/migration/resolve?applicationName=a", "get", "migrations", ""},
	} {
		s.do(t, caller{token: readerToken}, tc.method, tc.path)
		ra := c.lastAsk(t).ResourceAttributes
		if ra == nil || ra.Verb != tc.verb || ra.Resource != tc.resource || ra.Name != tc.name || ra.Group != Group {
			t.Errorf("%s %s asked %+v, want %s %s %q", tc.method, tc.path, ra, tc.verb, tc.resource, tc.name)
		}
	}
	before := c.accessReviews.Load()
	if a := s.do(t, caller{token: writerToken}, "PATCH", "/api/v3/jobs"); a.code != 403 || !strings.Contains(a.message, "no authorization rule") {
		t.Errorf("a request no rule maps: %+v, want 403", a)
	}
	if c.accessReviews.Load() != before {
		t.Error("a request no rule maps was sent to SubjectAccessReview")
	}
}

func TestCachesAndOutage(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, nil)
	for range 3 {
		if a := s.do(t, caller{token: writerToken}, "GET", "/api/v3/jobs"); a.code != 200 {
			t.Fatalf("%+v", a)
		}
	}
	if tr, ar := c.tokenReviews.Load(), c.accessReviews.Load(); tr != 1 || ar != 1 {
		t.Errorf("3 identical requests: %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", tr, ar)
	}
	for range 2 {
		s.do(t, caller{token: "stolen"}, "GET", "/api/v3/jobs")
	}
	if tr := c.tokenReviews.Load(); tr != 2 {
		t.Errorf("a refused token asked about %d times in all, want once (refusals are cached too)", tr-1)
	}

	c.down.Store(true)
	a := s.do(t, caller{token: readerToken}, "GET", "/api/v3/jobs")
	if a.code != 503 || a.statusCode != 503 || strings.Contains(a.message, "connection refused") {
		t.Errorf("API server down: %+v, want 503 without its error", a)
	}
	c.down.Store(false)
	if a := s.do(t, caller{token: readerToken}, "GET", "/api/v3/jobs"); a.code != 200 {
		t.Errorf("API server back: %+v, want 200 (errors are not cached)", a)
	}
}

// The caches hold at most CacheSize answers: with one entry, two tokens
// used in turn are asked about every time.
func TestCacheBounded(t *testing.T) {
	c := newCluster(t)
	s := serve(t, c, func(cfg *Config) { cfg.CacheSize = 1 })
	for _, tok := range []string{writerToken, readerToken, writerToken, readerToken} {
		s.do(t, caller{token: tok}, "GET", "/api/v3/jobs")
	}
	if tr := c.tokenReviews.Load(); tr != 4 {
		t.Errorf("%d TokenReviews, want 4 (a cache of one entry)", tr)
	}
}

func TestConfigErrors(t *testing.T) {
	c := newCluster(t)
	p := newPKI(t)
	for name, cfg := range map[string]Config{
		"no client":     {},
		"missing CA":    {Client: c.client, ClientCAFile: p.dir + "/missing.crt"},
		"CA not a PEM":  {Client: c.client, ClientCAFile: p.keyFile},
		"negative TTL":  {Client: c.client, AllowTTL: -time.Second},
		"negative size": {Client: c.client, CacheSize: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ServerTLS(p.certFile, "", ""); err == nil {
		t.Error("ServerTLS without a key: no error")
	}
	if _, err := ServerTLS(p.certFile, p.keyFile, p.dir+"/missing.crt"); err == nil {
		t.Error("ServerTLS with a missing CA: no error")
	}
}

func TestDeclared(t *testing.T) {
	long := strings.Repeat("é", MaxDeclared)
	if got := declared("  " + long); len(got) > MaxDeclared || !strings.HasPrefix(long, got) {
		t.Errorf("declared(long) = %q (%d bytes)", got, len(got))
	}
	if got := declared("a\nb\x1bc"); got != "abc" {
		t.Errorf("declared with control characters = %q", got)
	}
}

// However many requests carry the same unknown token at once, one
// TokenReview is sent for them all.
func TestOneReviewInFlight(t *testing.T) {
	c := newCluster(t)
	c.gate, c.reviewing = make(chan struct{}), make(chan struct{}, 100)
	g, err := New(Config{Client: c.client, Log: testlog.New()})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 20
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := g.authenticate(context.Background(), presented{bearer: writerToken})
			errs <- err
		}()
	}
	<-c.reviewing // the first review started; the others join it or, later, find its answer
	close(c.gate)
	for range callers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := c.tokenReviews.Load(); n != 1 {
		t.Errorf("%d TokenReviews for %d concurrent requests with one token, want 1", n, callers)
	}
}
