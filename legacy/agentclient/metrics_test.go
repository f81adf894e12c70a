package agentclient

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMetrics: the reference agent answers every figure the bridge reads,
// under the keys named here, in both codecs.
func TestMetrics(t *testing.T) {
	url := startAgent(t)
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			got, err := cc.client(url).Metrics(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{MetricMemTotalBytes, MetricMemFreeBytes, MetricFSAvailableBytes, MetricFSTotalBytes,
				MetricFSInodesFree, MetricFSInodesTotal} {
				if _, ok := got[k]; !ok {
					t.Errorf("%s missing from %v", k, got)
				}
			}
			if got[MetricMemTotalBytes] <= 0 || got[MetricMemFreeBytes] > got[MetricMemTotalBytes] {
				t.Errorf("memory: %v free of %v", got[MetricMemFreeBytes], got[MetricMemTotalBytes])
			}
			if got[MetricFSTotalBytes] <= 0 || got[MetricFSAvailableBytes] > got[MetricFSTotalBytes] {
				t.Errorf("file system: %v available of %v", got[MetricFSAvailableBytes], got[MetricFSTotalBytes])
			}
		})
	}
}

// TestMetricsRefused: an agent without GET_METRICS is an error, never an
// empty set of figures.
func TestMetricsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "call GET_METRICS is not supported", http.StatusNotImplemented)
	}))
	t.Cleanup(srv.Close)
	if got, err := New(srv.URL, Options{}).Metrics(testCtx(t)); err == nil {
		t.Fatalf("no error; figures %v", got)
	}
}
