package provider

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// /metrics/resource of a node without pods answers (metrics-server scrapes
// every node, and the text encoder refuses a family without metrics): the
// node's series, and no pod or container family.
func TestMetricsResourceWithoutPods(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newWorld(t).provider(ctx)
	rec := httptest.NewRecorder()
	api.HandlePodMetricsResource(p.GetMetricsResource)(rec, httptest.NewRequest(http.MethodGet, "/metrics/resource", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	for _, want := range []string{"node_cpu_usage_seconds_total ", "node_memory_working_set_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %q:\n%s", want, body)
		}
	}
	for _, absent := range []string{"pod_", "container_"} {
		if strings.Contains(body, absent) {
			t.Errorf("has a %s family without pods:\n%s", absent, body)
		}
	}
}
