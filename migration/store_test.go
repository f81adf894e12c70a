package migration

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// The writer's own Store reads its writes at once; the order is the
// application's entry, its capacity group's, the default.
func testPrecedence(t *testing.T, url string) {
	s := open(t, url)
	want := func(app, cg, stage string, scope Scope, name string) {
		t.Helper()
		d := s.Resolve(app, cg)
		if d.Stage.String() != stage || d.Scope != scope || d.Name != name {
			t.Errorf("Resolve(%q, %q) = %s from %q/%q, want %s from %q/%q", app, cg, d.Stage, d.Scope, d.Name, stage, scope, name)
		}
	}
	want("app", "cg", "legacy", "", "")

	if _, err := s.Set(ctx(t), ScopeCapacityGroup, "cg", mustStage(t, "30%"), "alice"); err != nil {
		t.Fatal(err)
	}
	want("app", "cg", "30%", ScopeCapacityGroup, "cg")
	want("app", "other", "legacy", "", "")

	if _, err := s.Set(ctx(t), ScopeApplication, "app", Kube, "bob"); err != nil {
		t.Fatal(err)
	}
	want("app", "cg", "kube", ScopeApplication, "app")
	want("app", "", "kube", ScopeApplication, "app")
	want("sibling", "cg", "30%", ScopeCapacityGroup, "cg")
	want("", "", "legacy", "", "")

	if _, err := s.Unset(ctx(t), ScopeApplication, "app", "carol"); err != nil {
		t.Fatal(err)
	}
	want("app", "cg", "30%", ScopeCapacityGroup, "cg")

	e, ok := s.Get(ScopeCapacityGroup, "cg")
	if !ok || e.Stage != "30%" || e.By != s.self || e.DeclaredBy != "alice" || e.Scope != ScopeCapacityGroup || e.Name != "cg" || e.Updated.IsZero() {
		t.Errorf("Get = %+v, %v", e, ok)
	}
	if l := s.List(); len(l) != 1 || l[0].Name != "cg" {
		t.Errorf("List = %+v", l)
	}
}

func testNoOpAndNotFound(t *testing.T, url string) {
	s := open(t, url)
	first, err := s.Set(ctx(t), ScopeApplication, "app", mustStage(t, "10%"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Set(ctx(t), ScopeApplication, "app", mustStage(t, "10%"), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if again.Old != "10%" || again.New != "10%" || again.DeclaredBy != "alice" || !again.At.Equal(first.At) {
		t.Errorf("setting the same stage again: %+v, want the unchanged entry (%+v)", again, first)
	}
	// "0%" and "legacy" send the same jobs, but are not the same text.
	if ch, err := s.Set(ctx(t), ScopeApplication, "app", Stage{Percent: 10}, "bob"); err != nil || ch.Old != ch.New {
		t.Errorf("same stage built by hand: %+v, %v", ch, err)
	}
	if h, err := s.History(ctx(t), "", "", 0); err != nil || len(h) != 1 {
		t.Errorf("history after a no-op: %+v, %v; want the one real change", h, err)
	}

	if _, err := s.Unset(ctx(t), ScopeApplication, "missing", "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unset of a missing entry: %v, want ErrNotFound", err)
	}
}

// Another Store (another gateway) sees a change through its watch.
func testSecondStoreFollows(t *testing.T, url string) {
	a, b := open(t, url), open(t, url)
	changes := b.Changes()
	if _, err := a.Set(ctx(t), ScopeApplication, "app", mustStage(t, "50%"), "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b sees app at 50%", func() bool { return b.Resolve("app", "").Stage.String() == "50%" })
	select {
	case <-changes:
	default:
		t.Error("no wake-up on Changes after a change")
	}

	if _, err := b.Set(ctx(t), ScopeCapacityGroup, "cg", Kube, "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, a, "a sees cg at kube", func() bool { return a.Resolve("x", "cg").Stage == Kube })

	if _, err := a.Unset(ctx(t), ScopeApplication, "app", "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b sees app unset", func() bool { return b.Resolve("app", "").Scope == "" })
	if l := b.List(); len(l) != 1 || l[0].Scope != ScopeCapacityGroup {
		t.Errorf("b.List = %+v", l)
	}
}

func testHistory(t *testing.T, url string) {
	s := open(t, url)
	steps := []struct {
		name, stage, by string // stage "" unsets
	}{
		{"x", "legacy", "alice"}, {"x", "10%", "bob"}, {"y", "kube", "erin"}, {"x", "kube", "carol"}, {"x", "", "dave"},
	}
	for _, st := range steps {
		var err error
		if st.stage == "" {
			_, err = s.Unset(ctx(t), ScopeApplication, st.name, st.by)
		} else {
			_, err = s.Set(ctx(t), ScopeApplication, st.name, mustStage(t, st.stage), st.by)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	wantX := []string{"kube→ by dave", "10%→kube by carol", "legacy→10% by bob", "→legacy by alice"}
	check := func(s *Store) {
		t.Helper()
		all, err := s.History(ctx(t), "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 || all[2].Name != "y" || all[2].New != "kube" || all[2].DeclaredBy != "erin" || all[2].By != s.self {
			t.Fatalf("all history: %+v", all)
		}
		x, err := s.History(ctx(t), ScopeApplication, "x", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, c := range x {
			got = append(got, c.Old+"→"+c.New+" by "+c.DeclaredBy)
			if i > 0 && c.At.After(x[i-1].At) {
				t.Errorf("history not newest first: %v after %v", c.At, x[i-1].At)
			}
		}
		if strings.Join(got, ", ") != strings.Join(wantX, ", ") {
			t.Errorf("history of x: %v, want %v", got, wantX)
		}
		if two, err := s.History(ctx(t), "", "x", 2); err != nil || len(two) != 2 || two[0].DeclaredBy != "dave" {
			t.Errorf("limited history: %+v, %v", two, err)
		}
		if none, err := s.History(ctx(t), ScopeCapacityGroup, "x", 0); err != nil || len(none) != 0 {
			t.Errorf("history of a capacity group never set: %+v, %v", none, err)
		}
	}
	check(s)

	s.Close()
	reopened := open(t, url)
	check(reopened)
	if e, ok := reopened.Get(ScopeApplication, "y"); !ok || e.Stage != "kube" {
		t.Errorf("y after reopening: %+v, %v", e, ok)
	}
	if _, ok := reopened.Get(ScopeApplication, "x"); ok {
		t.Error("x was unset, but is there after reopening")
	}
}

// Writers racing on one entry from two Stores: every write that succeeds
// is in the history exactly once, and each record starts where the one
// before it ended.
func testConcurrentWriters(t *testing.T, url string) {
	stores := []*Store{open(t, url), open(t, url)}
	const writers, perWriter = 4, 15
	var (
		mu      sync.Mutex
		written = map[string]bool{}
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			for i := range perWriter {
				stage := Stage{Percent: w*perWriter + i + 1} // distinct: never a no-op
				_, err := s.Set(ctx(t), ScopeApplication, "hot", stage, fmt.Sprintf("writer-%d", w))
				if errors.Is(err, ErrConflict) {
					continue // lost every retry: recorded nowhere, which is what we check
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[stage.String()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(written) == 0 {
		t.Fatal("no write succeeded")
	}

	h, err := stores[0].History(ctx(t), ScopeApplication, "hot", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != len(written) {
		t.Errorf("%d history records for %d successful writes", len(h), len(written))
	}
	prev := ""
	for i := len(h) - 1; i >= 0; i-- { // oldest first
		c := h[i]
		if c.Old != prev {
			t.Errorf("record %s→%s follows one that ended at %q", c.Old, c.New, prev)
		}
		if !written[c.New] {
			t.Errorf("record of %s, which no successful write set", c.New)
		}
		prev = c.New
	}
	for _, s := range stores {
		eventually(t, s, "both stores agree with the last record", func() bool {
			e, ok := s.Get(ScopeApplication, "hot")
			return ok && e.Stage == prev
		})
	}
}

func testInvalid(t *testing.T, url string) {
	s := open(t, url)
	for _, c := range []struct {
		scope Scope
		name  string
		stage Stage
		by    string
	}{
		{"job", "app", Kube, "alice"},
		{"", "app", Kube, "alice"},
		{ScopeApplication, "", Kube, "alice"},
		{ScopeApplication, "a/b", Kube, "alice"},
		{ScopeApplication, "..", Kube, "alice"},
		{ScopeApplication, "app ", Kube, "alice"},
		{ScopeApplication, "a\x00b", Kube, "alice"},
		{ScopeApplication, strings.Repeat("a", 201), Kube, "alice"},
		{ScopeApplication, "app", Stage{Percent: 150}, "alice"},
		{ScopeApplication, "app", Kube, "al\nice"},
		{ScopeApplication, "app", Kube, strings.Repeat("b", 201)},
	} {
		if _, err := s.Set(ctx(t), c.scope, c.name, c.stage, c.by); !errors.Is(err, ErrInvalid) {
			t.Errorf("Set(%q, %q, %v, %q) = %v, want ErrInvalid", c.scope, c.name, c.stage, c.by, err)
		}
	}
	if _, err := s.Set(ctx(t), ScopeApplication, strings.Repeat("a", 200), Kube, "alice"); err != nil {
		t.Errorf("200-byte name: %v", err)
	}
	if _, err := s.Unset(ctx(t), "job", "app", "alice"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Unset with a bad scope: %v", err)
	}
	if _, err := s.History(ctx(t), "job", "", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("History with a bad scope: %v", err)
	}
	if _, err := s.History(ctx(t), "", "", -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("History with a negative limit: %v", err)
	}
	if _, err := Open(ctx(t), "http://nowhere/x", Legacy, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open with a bad URL: %v", err)
	}
}

// A version znode removed by hand is laid out again by the watchers, and
// changes flow as before.
func testVersionNodeRecreated(t *testing.T, url string) {
	a, b := open(t, url), open(t, url)
	if _, err := a.Set(ctx(t), ScopeApplication, "app", Kube, "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b sees app at kube", func() bool { return b.Resolve("app", "").Stage == Kube })
	if err := a.conn.Delete(a.l.version(), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, a, "the version znode is back", func() bool {
		ok, _, err := a.conn.Exists(a.l.version())
		return err == nil && ok
	})
	var err error
	eventually(t, a, "writes work again", func() bool {
		_, err = a.Set(ctx(t), ScopeApplication, "app", Legacy, "alice")
		return err == nil
	})
	eventually(t, b, "b sees app at legacy", func() bool { return b.Resolve("app", "").Stage == Legacy })
}
