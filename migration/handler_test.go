package migration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// call makes one request and decodes a JSON answer into out (when not nil).
// Every answer, errors included, must be JSON.
func call(t *testing.T, srv *httptest.Server, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q: %s", method, path, ct, b)
	}
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode >= 400 {
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Errorf("%s %s: %d without a JSON error: %s", method, path, resp.StatusCode, b)
		}
	} else if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Errorf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func testHandler(t *testing.T, url string) {
	s := open(t, url)
	srv := httptest.NewServer(Handler(s))
	t.Cleanup(srv.Close)
	const stages = APIPrefix + "/stages"
	expect := func(method, path, body string, want int, out any) {
		t.Helper()
		if got := call(t, srv, method, path, body, out); got != want {
			t.Errorf("%s %s %s: %d, want %d", method, path, body, got, want)
		}
	}

	var list struct {
		Items   []Entry `json:"items"`
		Default string  `json:"default"`
	}
	expect("GET", stages, "", 200, &list)
	if list.Items == nil || len(list.Items) != 0 || list.Default != "legacy" {
		t.Errorf("empty list: %+v", list)
	}
	expect("GET", stages+"/application/a", "", 404, nil)

	var ch Change
	expect("PUT", stages+"/application/a", `{"stage":"kube","by":"alice"}`, 200, &ch)
	if ch.Old != "" || ch.New != "kube" || ch.By != s.self || ch.DeclaredBy != "alice" || ch.Scope != ScopeApplication || ch.Name != "a" {
		t.Errorf("PUT answered %+v", ch)
	}
	var e Entry
	expect("GET", stages+"/application/a", "", 200, &e)
	if e.Stage != "kube" || e.DeclaredBy != "alice" {
		t.Errorf("GET after PUT: %+v", e)
	}
	expect("GET", stages, "", 200, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "a" {
		t.Errorf("list: %+v", list)
	}
	var d struct{ Stage, Scope, Name string }
	expect("GET", APIPrefix+"/resolve?applicationName=a&capacityGroup=cg", "", 200, &d)
	if d.Stage != "kube" || d.Scope != "application" || d.Name != "a" {
		t.Errorf("resolve: %+v", d)
	}
	expect("GET", APIPrefix+"/resolve?applicationName=b", "", 200, &d)
	if d.Stage != "legacy" || d.Scope != "" {
		t.Errorf("resolve of an application without entry: %+v", d)
	}

	for _, bad := range []struct{ path, body string }{
		{"/application/a", `{"stage":"most","by":"alice"}`},
		{"/application/a", `{"stage":"kube","by":"al\u0000ice"}`},
		{"/job/a", `{"stage":"kube","by":"alice"}`},
		{"/application/a%2Fb", `{"stage":"kube","by":"alice"}`},
		{"/application/a", `{"stage":"kube","by":"alice","reason":"why not"}`},
		{"/application/a", `{"stage":"kube","by":"alice"} {}`},
		{"/application/a", `{"stage":`},
		{"/application/a", ``},
	} {
		expect("PUT", stages+bad.path, bad.body, 400, nil)
	}
	expect("PUT", stages+"/application/a", `{"stage":"kube","by":"`+strings.Repeat("x", 70<<10)+`"}`, 413, nil)
	expect("GET", stages+"/job/a", "", 400, nil)

	var hist struct {
		Items []Change `json:"items"`
	}
	expect("GET", APIPrefix+"/history?scope=application&name=a&limit=10", "", 200, &hist)
	if len(hist.Items) != 1 || hist.Items[0].New != "kube" {
		t.Errorf("history: %+v", hist)
	}
	expect("GET", APIPrefix+"/history?limit=lots", "", 400, nil)
	expect("GET", APIPrefix+"/history?scope=job", "", 400, nil)

	expect("DELETE", stages+"/application/a?by=bob", "", 200, &ch)
	if ch.Old != "kube" || ch.New != "" || ch.DeclaredBy != "bob" {
		t.Errorf("DELETE answered %+v", ch)
	}
	expect("DELETE", stages+"/application/a?by=bob", "", 404, nil)
	expect("GET", stages+"/application/a", "", 404, nil)

	expect("POST", stages, "{}", 405, nil)
	expect("PATCH", stages+"/application/a", "{}", 405, nil)
	expect("GET", APIPrefix+"/nothing-here", "", 404, nil)
}
