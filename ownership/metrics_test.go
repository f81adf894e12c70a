package ownership

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestMetricsRegisterAndCountConflicts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering twice did not fail")
	}
	if m.CountConflict(errors.New("boom")) || m.CountConflict(nil) {
		t.Fatal("a non-conflict counted")
	}
	if !m.CountConflict(apierrors.NewConflict(leasesResource, "x", errors.New("modified"))) {
		t.Fatal("a conflict not counted")
	}
	if n, err := testutil.GatherAndCount(reg, "vktitus_write_conflicts_total", "vktitus_owned_nodes", "vktitus_handovers_total"); err != nil || n != 5 {
		t.Fatalf("gathered %d series (%v), want 1 + 1 + 3 kinds", n, err)
	}
	if got := testutil.ToFloat64(m.conflicts); got != 1 {
		t.Fatalf("conflicts %v", got)
	}
}

// The transport counts a 409 on update and patch, not on create
// (AlreadyExists).
func TestWrapTransportCountsUpdateConflicts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
	}))
	defer srv.Close()
	m, _ := NewMetrics(nil)
	client := &http.Client{Transport: m.WrapTransport(http.DefaultTransport)}
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodGet} {
		req, _ := http.NewRequest(method, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(m.conflicts); got != 2 {
		t.Fatalf("counted %v conflicts, want 2 (PUT, PATCH)", got)
	}
}
