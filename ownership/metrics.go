package ownership

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Metrics are the ownership metrics. Create them once per process with
// NewMetrics and pass them to the Manager; CountConflict and WrapTransport
// count the optimistic-concurrency conflicts of the process's other
// writes in the same counter.
type Metrics struct {
	owned     prometheus.Gauge
	handovers *prometheus.CounterVec
	conflicts prometheus.Counter
}

// NewMetrics makes the metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vktitus", Name: "owned_nodes",
			Help: "Nodes this replica holds the ownership lease of and serves."}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vktitus", Name: "handovers_total",
			Help: "Node ownership changes at this replica: acquired, released (handed over), lost (fenced)."}, []string{"kind"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vktitus", Name: "write_conflicts_total",
			Help: "Writes refused by the API server because the object had changed (HTTP 409 on update or patch)."}),
	}
	for _, k := range []string{"acquired", "released", "lost"} {
		m.handovers.WithLabelValues(k) // present at 0 from the start
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.owned, m.handovers, m.conflicts} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ownership metrics: %w", err)
			}
		}
	}
	return m, nil
}

// CountConflict counts err if it is an optimistic-concurrency conflict
// (the object has been modified) and reports whether it was.
func (m *Metrics) CountConflict(err error) bool {
	if !apierrors.IsConflict(err) {
		return false
	}
	m.conflicts.Inc()
	return true
}

// WrapTransport counts the conflicts of every write made through a client:
// set it as the rest.Config's WrapTransport. It sees the writes client-go
// callers make on their own (virtual-kubelet's node and pod controllers),
// whose errors never reach this process's code. A 409 answers an update or
// patch only for a stale resourceVersion (a create's 409 is AlreadyExists,
// not counted). Do not wrap the Manager's own client: it counts its lease
// writes itself.
func (m *Metrics) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return conflictCounter{next: rt, m: m}
}

type conflictCounter struct {
	next http.RoundTripper
	m    *Metrics
}

func (c conflictCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusConflict &&
		(req.Method == http.MethodPut || req.Method == http.MethodPatch) {
		c.m.conflicts.Inc()
	}
	return resp, err
}
