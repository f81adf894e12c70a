package migration

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/apiauth"
	"github.com/vk-titus/vk-titus/zkacl"
)

const (
	migrator = "system:serviceaccount:ops:migrator"
	password = "pa55:w@rd"
)

// withCreds puts user:password into a zk:// URL.
func withCreds(url, user, pw string) string {
	return strings.Replace(url, "zk://", "zk://"+user+":"+pw+"@", 1)
}

// as is ctx carrying an Identity, as a Guard gives it to the handler.
func as(t *testing.T, id apiauth.Identity) context.Context {
	return apiauth.NewContext(ctx(t), id)
}

// The author is the authenticated caller, the declared one is kept
// beside it, and direct writes are the Store's own identity.
func testAuthor(t *testing.T, url string) {
	s := open(t, url)
	id := apiauth.Identity{User: migrator, Method: apiauth.MethodToken, CallerID: "spinnaker", CallReason: "canary 5%"}
	ch, err := s.Set(as(t, id), ScopeApplication, "app", mustStage(t, "5%"), "")
	if err != nil {
		t.Fatal(err)
	}
	if ch.By != migrator || ch.DeclaredBy != "spinnaker" || ch.Reason != "canary 5%" {
		t.Errorf("change through the API: %+v", ch)
	}
	if e, _ := s.Get(ScopeApplication, "app"); e.By != migrator || e.DeclaredBy != "spinnaker" {
		t.Errorf("entry: %+v", e)
	}
	if ch, err = s.Set(as(t, id), ScopeApplication, "app", Kube, "alice"); err != nil || ch.By != migrator || ch.DeclaredBy != "alice" {
		t.Errorf("typed author beside the authenticated one: %+v, %v", ch, err)
	}
	if ch, err = s.Unset(ctx(t), ScopeApplication, "app", ""); err != nil || ch.By != s.self || !strings.HasPrefix(ch.By, "zk:") || ch.DeclaredBy != "" {
		t.Errorf("direct write: %+v, %v", ch, err)
	}
	h, err := s.History(ctx(t), ScopeApplication, "app", 0)
	if err != nil || len(h) != 3 || h[2].By != migrator || h[2].Reason != "canary 5%" || h[1].DeclaredBy != "alice" || h[0].By != s.self {
		t.Errorf("history: %+v, %v", h, err)
	}
}

// Behind a Guard, the handler records the identity the Guard established,
// whatever the body says.
func testHandlerBehindAuth(t *testing.T, url string) {
	s := open(t, url)
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := apiauth.Identity{User: migrator, Method: apiauth.MethodToken, CallerID: r.Header.Get(apiauth.HeaderCallerID)}
		Handler(s).ServeHTTP(w, r.WithContext(apiauth.NewContext(r.Context(), id)))
	})
	srv := httptest.NewServer(guarded)
	t.Cleanup(srv.Close)
	var ch Change
	if code := call(t, srv, "PUT", APIPrefix+"/stages/application/a", `{"stage":"kube","by":"root"}`, &ch); code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	if ch.By != migrator || ch.DeclaredBy != "root" {
		t.Errorf("PUT behind the guard recorded %+v, want by %s (declared root)", ch, migrator)
	}
	if code := call(t, srv, "PUT", APIPrefix+"/stages/application/b", `{"stage":"kube"}`, &ch); code != 200 || ch.By != migrator {
		t.Errorf("PUT without a declared author: %d, %+v", code, ch)
	}
}

// With credentials every znode is readable by all and writable by the
// owner only; without (or with others) a Store reads but cannot write.
func testACL(t *testing.T, url string) {
	creds := zkacl.Credentials{User: "vk", Password: password}
	owner := open(t, withCreds(url, creds.User, creds.Password))
	if owner.self != "zk-digest:vk" {
		t.Errorf("owner writes as %q", owner.self)
	}
	ch, err := owner.Set(ctx(t), ScopeApplication, "app", Kube, "")
	if err != nil || ch.By != "zk-digest:vk" {
		t.Fatalf("owner's write: %+v, %v", ch, err)
	}
	records, _, err := owner.conn.Children(owner.l.history())
	if err != nil || len(records) != 1 {
		t.Fatalf("history records: %v, %v", records, err)
	}
	want := creds.ACL()
	for _, p := range append(owner.l.nodes(), owner.l.entry(ScopeApplication, "app"), owner.l.history()+"/"+records[0]) {
		if acl, _, err := owner.conn.GetACL(p); err != nil || !sameACL(acl, want) {
			t.Errorf("ACL of %s: %+v, %v; want %+v", p, acl, err, want)
		}
	}

	reader := open(t, url)
	eventually(t, reader, "a reader without credentials sees the entry", func() bool { return reader.Resolve("app", "").Stage == Kube })
	if _, err := reader.Set(ctx(t), ScopeApplication, "app", Legacy, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("write without credentials: %v, want ErrForbidden", err)
	}
	if _, err := reader.conn.Set(owner.l.entry(ScopeApplication, "app"), []byte("{}"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("raw write of an entry without credentials: %v, want ErrNoAuth", err)
	}
	if err := reader.conn.Delete(owner.l.history()+"/"+records[0], -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("removing a history record without credentials: %v, want ErrNoAuth", err)
	}
	wrong := open(t, withCreds(url, "vk", "guess"))
	if _, err := wrong.Set(ctx(t), ScopeApplication, "app", Legacy, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("write with a wrong password: %v, want ErrForbidden", err)
	}

	// Credentials from a flag or a file win over the URL's.
	o, cancel := context.WithTimeout(context.Background(), opTime)
	defer cancel()
	flagged, err := Open(o, withCreds(url, "vk", "guess"), Legacy, testLogger(), WithCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer flagged.Close()
	if _, err := flagged.Set(ctx(t), ScopeApplication, "app", Legacy, ""); err != nil {
		t.Errorf("write with credentials given as an option: %v", err)
	}
}

// A tree written without credentials is brought under the ACL by the first
// Store that opens it with them, records and entries included.
func testSecureExisting(t *testing.T, url string) {
	open1 := open(t, url)
	for _, app := range []string{"a", "b", "c"} {
		if _, err := open1.Set(ctx(t), ScopeApplication, app, Kube, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := open1.Set(ctx(t), ScopeCapacityGroup, "cg", Kube, ""); err != nil {
		t.Fatal(err)
	}
	open1.Close()

	creds := zkacl.Credentials{User: "vk", Password: password}
	owner := open(t, withCreds(url, creds.User, creds.Password))
	var paths []string
	for _, dir := range []string{owner.l.dir(ScopeApplication), owner.l.dir(ScopeCapacityGroup), owner.l.history()} {
		names, _, err := owner.conn.Children(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			paths = append(paths, dir+"/"+n)
		}
	}
	if len(paths) != 8 {
		t.Fatalf("znodes under the tree: %v, want 4 entries and 4 records", paths)
	}
	for _, p := range append(paths, owner.l.nodes()...) {
		if acl, _, err := owner.conn.GetACL(p); err != nil || !sameACL(acl, creds.ACL()) {
			t.Errorf("ACL of %s after securing: %+v, %v", p, acl, err)
		}
	}
	stranger := open(t, url)
	if _, err := stranger.Set(ctx(t), ScopeApplication, "a", Legacy, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("write without credentials on a secured tree: %v, want ErrForbidden", err)
	}
}

// Credentials other than the owner's open the tree for reading and leave
// its ACL alone.
func testSecuredByOther(t *testing.T, url string) {
	owner := open(t, withCreds(url, "vk", password))
	if _, err := owner.Set(ctx(t), ScopeApplication, "app", Kube, ""); err != nil {
		t.Fatal(err)
	}
	other := open(t, withCreds(url, "other", "pw"))
	if d := other.Resolve("app", ""); d.Stage != Kube {
		t.Errorf("another user reads %+v", d)
	}
	if _, err := other.Set(ctx(t), ScopeApplication, "app", Legacy, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("another user's write: %v, want ErrForbidden", err)
	}
	if acl, _, err := owner.conn.GetACL(owner.l.version()); err != nil || !sameACL(acl, (zkacl.Credentials{User: "vk", Password: password}).ACL()) {
		t.Errorf("the owner's ACL after another user opened the tree: %+v, %v", acl, err)
	}
}

// The password shows in no log line and no error.
func testNoPasswordShown(t *testing.T, url string) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.DebugLevel)
	secretURL := withCreds(url, "vk", password)
	o, cancel := context.WithTimeout(context.Background(), opTime)
	defer cancel()
	s, err := Open(o, secretURL, Legacy, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx(t), ScopeApplication, "app", Kube, ""); err != nil {
		t.Fatal(err)
	}
	other := open(t, url)
	_, werr := other.Set(ctx(t), ScopeApplication, "app", Legacy, "")
	if !errors.Is(werr, ErrForbidden) {
		t.Errorf("write without credentials: %v, want ErrForbidden", werr)
	}
	s.Close()
	errs := []error{werr}
	for _, bad := range []string{
		withCreds("zk:///no-servers", "vk", password),
		withCreds("zk://h:1", "vk", password),
		withCreds("zk://h:1/p", "", password),
		withCreds("http://h:1/p", "vk", password),
	} {
		_, err := Open(o, bad, Legacy, l)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%s): %v, want ErrInvalid", zkacl.Redact(bad), err)
		}
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("error shows the password: %v", err)
		}
	}
	if strings.Contains(buf.String(), password) || !strings.Contains(buf.String(), "migration stage written") {
		t.Errorf("log (%d bytes) shows the password, or nothing was logged:\n%s", buf.Len(), buf.String())
	}
}
