package migration

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestParseStageRoundTrips(t *testing.T) {
	for _, s := range []string{"legacy", "kube", "0%", "1%", "30%", "99%", "100%"} {
		st, err := ParseStage(s)
		if err != nil {
			t.Fatalf("ParseStage(%q): %v", s, err)
		}
		if got := st.String(); got != s {
			t.Errorf("ParseStage(%q).String() = %q", s, got)
		}
	}
	if Legacy.Percent != 0 || Kube.Percent != 100 {
		t.Errorf("legacy %d%%, kube %d%%", Legacy.Percent, Kube.Percent)
	}
}

func TestParseStageRejects(t *testing.T) {
	for _, s := range []string{"", "Legacy", "KUBE", "30", "%", "101%", "-1%", "+5%", "05%", "00%",
		" 5%", "5%\n", "5 %", "50.5%", "1e2%", "kube%", "100000000000000000000%"} {
		if st, err := ParseStage(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseStage(%q) = %v, %v; want ErrInvalid", s, st, err)
		}
	}
}

func TestStageKube(t *testing.T) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("job-%d", i)
	}
	count := func(s Stage) (n int) {
		for _, k := range keys {
			if s.Kube(k) {
				n++
			}
		}
		return n
	}
	for s, want := range map[string]int{"legacy": 0, "0%": 0, "kube": 1000, "100%": 1000} {
		st, _ := ParseStage(s)
		if n := count(st); n != want {
			t.Errorf("%s sends %d of 1000 jobs to kube, want %d", s, n, want)
		}
	}
	if n := count(Stage{Percent: 30}); n < 250 || n > 350 {
		t.Errorf("30%% sends %d of 1000 jobs to kube, want 250..350", n)
	}
	// Raising the share only adds jobs to kube.
	for _, k := range keys {
		if (Stage{Percent: 30}).Kube(k) && !(Stage{Percent: 50}).Kube(k) {
			t.Fatalf("%s goes to kube at 30%% but not at 50%%", k)
		}
	}
}

func TestStageJSON(t *testing.T) {
	b, err := json.Marshal(Decision{Stage: Stage{Percent: 30}, Scope: ScopeApplication, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"stage":"30%","scope":"application","name":"a"}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	var d Decision
	if err := json.Unmarshal(b, &d); err != nil || d.Stage != (Stage{Percent: 30}) {
		t.Errorf("round trip: %+v, %v", d, err)
	}
	if err := json.Unmarshal([]byte(`{"stage":"lots"}`), &d); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad stage in JSON: %v", err)
	}
}
