package migration

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vk-titus/vk-titus/internal/zktest"
)

// Through a ZooKeeper outage the Stores keep answering from what they
// knew, writes fail as unavailable (503 over HTTP), and once ZooKeeper is
// back writes work again and reach the other Store through its watch.
func TestZooKeeperOutage(t *testing.T) {
	zk := zktest.StartServer(t)
	url := "zk://" + zk.Addr + "/vk-titus/migration"
	a, b := open(t, url), open(t, url)
	if _, err := a.Set(ctx(t), ScopeApplication, "app", Kube, "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b sees app at kube", func() bool { return b.Resolve("app", "").Stage == Kube })

	zk.Stop()
	for _, s := range []*Store{a, b} {
		if d := s.Resolve("app", ""); d.Stage != Kube || d.Scope != ScopeApplication {
			t.Errorf("during the outage Resolve = %+v, want kube from the application", d)
		}
	}
	if _, err := a.Set(ctx(t), ScopeApplication, "app", Legacy, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Set during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := b.Unset(ctx(t), ScopeApplication, "app", "alice"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Unset during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := a.History(ctx(t), "", "", 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("History during the outage: %v, want ErrUnavailable", err)
	}
	srv := httptest.NewServer(Handler(a))
	t.Cleanup(srv.Close)
	if code := call(t, srv, "PUT", APIPrefix+"/stages/application/app", `{"stage":"legacy","by":"alice"}`, nil); code != http.StatusServiceUnavailable {
		t.Errorf("PUT during the outage: %d, want 503", code)
	}
	if d := a.Resolve("app", ""); d.Stage != Kube {
		t.Errorf("after failed writes Resolve = %+v, want kube still", d)
	}

	zk.Restart()
	var err error
	eventually(t, a, "a can write again", func() bool {
		_, err = a.Set(ctx(t), ScopeApplication, "app", mustStage(t, "20%"), "alice")
		return !errors.Is(err, ErrUnavailable)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b sees app at 20% after the outage", func() bool { return b.Resolve("app", "").Stage.String() == "20%" })
	h, err := b.History(ctx(t), ScopeApplication, "app", 0)
	if err != nil || len(h) != 2 || h[0].Old != "kube" || h[0].New != "20%" {
		t.Errorf("history after the outage: %+v, %v", h, err)
	}
}
