package provider

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/internal/testlog"
	legacyagent "github.com/vk-titus/vk-titus/legacy/agent"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/operatorapi"
)

// figuresAgent is the reference agent, except that GET_METRICS answers
// figures set by the test, or 501 as an agent without the call would.
type figuresAgent struct {
	mu      sync.Mutex
	figures map[string]float64 // nil: the reference agent's own
	refuse  bool
	metrics atomic.Int64 // GET_METRICS calls
}

func (f *figuresAgent) set(figures map[string]float64, refuse bool) {
	f.mu.Lock()
	f.figures, f.refuse = figures, refuse
	f.mu.Unlock()
}

func newFiguresAgent(t *testing.T) (*figuresAgent, string) {
	t.Helper()
	a, err := legacyagent.New(legacyagent.Config{WorkDir: t.TempDir(), Listen: "127.0.0.1:5051", Logger: testlog.New()})
	if err != nil {
		t.Fatal(err)
	}
	f := &figuresAgent{}
	pb := codecs.ByMediaType[codecs.MediaTypeProtobuf]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var call agent.Call
		if pb.NewDecoder(encoding.SourceReader(bytes.NewReader(body))).Decode(&call) == nil && call.Type == agent.Call_GET_METRICS {
			f.metrics.Add(1)
			f.mu.Lock()
			figures, refuse := f.figures, f.refuse
			f.mu.Unlock()
			switch {
			case refuse:
				operatorapi.WriteError(w, http.StatusNotImplemented, "call GET_METRICS is not supported")
				return
			case figures != nil:
				var ms []mesos.Metric
				for k, v := range figures {
					ms = append(ms, mesos.Metric{Name: k, Value: &v})
				}
				_ = operatorapi.WriteResponse(w, pb, &agent.Response{Type: agent.Response_GET_METRICS,
					GetMetrics: &agent.Response_GetMetrics{Metrics: ms}})
				return
			}
		}
		a.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		a.Close()
		srv.Close()
	})
	return f, srv.URL
}

// nodeUnderTest is a started provider whose health loop stays out of the
// way (the test runs the checks) and the node statuses it pushed.
type nodeUnderTest struct {
	p      *Provider
	mu     sync.Mutex
	pushed []*corev1.Node
}

func newNodeUnderTest(t *testing.T, url string, th Thresholds) *nodeUnderTest {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := &Config{}
	cfg.Timeouts.HealthInterval.Duration = time.Hour
	n := &nodeUnderTest{p: New(Options{NodeName: "node", Config: cfg, Eviction: th,
		Client: agentclient.New(url, agentclient.Options{}), Log: testlog.New().WithField("test", t.Name())})}
	n.p.Start(ctx)
	n.p.ConfigureNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node"}}, "127.0.0.1", 10250, "Linux")
	n.p.NotifyNodeStatus(ctx, func(node *corev1.Node) {
		n.mu.Lock()
		n.pushed = append(n.pushed, node)
		n.mu.Unlock()
	})
	return n
}

// check runs one health check; it returns the node it pushed, nil if none.
func (n *nodeUnderTest) check(t *testing.T) *corev1.Node {
	t.Helper()
	n.mu.Lock()
	before := len(n.pushed)
	n.mu.Unlock()
	_ = n.p.health.check(context.Background())
	n.mu.Lock()
	defer n.mu.Unlock()
	switch len(n.pushed) - before {
	case 0:
		return nil
	case 1:
		return n.pushed[before]
	default:
		t.Fatalf("one check pushed %d statuses", len(n.pushed)-before)
		return nil
	}
}

// current is the provider's own copy of the node.
func (n *nodeUnderTest) current() *corev1.Node {
	n.p.health.mu.Lock()
	defer n.p.health.mu.Unlock()
	return n.p.health.node.DeepCopy()
}

func condition(t *testing.T, node *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	t.Helper()
	for _, c := range node.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %+v", typ, node.Status.Conditions)
	return corev1.NodeCondition{}
}

func expectCondition(t *testing.T, node *corev1.Node, typ corev1.NodeConditionType, status corev1.ConditionStatus, reason string) corev1.NodeCondition {
	t.Helper()
	c := condition(t, node, typ)
	if c.Status != status || c.Reason != reason {
		t.Errorf("%s: %s %s %q, want %s %s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	return c
}

// TestNodePressureFromAgent: the pressure conditions follow the agent's
// figures, one GET_METRICS per check; a status is pushed only when a
// condition changes, a transition time moves only with its status, and an
// agent that does not answer GET_METRICS leaves them Unknown while the
// node stays Ready.
func TestNodePressureFromAgent(t *testing.T) {
	fa, url := newFiguresAgent(t)
	n := newNodeUnderTest(t, url, DefaultThresholds())

	// The reference agent's real figures: this machine is under no
	// pressure by the kubelet's defaults.
	node := n.current()
	ready := expectCondition(t, node, corev1.NodeReady, corev1.ConditionTrue, "KubeletReady")
	expectCondition(t, node, corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory")
	diskFalse := expectCondition(t, node, corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure")
	expectCondition(t, node, corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID")
	if got := fa.metrics.Load(); got != 1 {
		t.Errorf("%d GET_METRICS calls at start, want 1", got)
	}
	if pushed := n.check(t); pushed != nil {
		t.Errorf("a check with nothing changed pushed a status: %+v", pushed.Status.Conditions)
	}
	if got := fa.metrics.Load(); got != 2 {
		t.Errorf("%d GET_METRICS calls after one check, want 2", got)
	}

	fa.set(with(healthyFigures(), agentclient.MetricMemFreeBytes, float64(50<<20)), false)
	pushed := n.check(t)
	if pushed == nil {
		t.Fatal("memory pressure pushed no status")
	}
	mem := expectCondition(t, pushed, corev1.NodeMemoryPressure, corev1.ConditionTrue, "KubeletHasInsufficientMemory")
	if mem.LastTransitionTime.Equal(&diskFalse.LastTransitionTime) {
		t.Errorf("MemoryPressure's transition time did not move: %v", mem.LastTransitionTime)
	}
	if d := expectCondition(t, pushed, corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"); !d.LastTransitionTime.Equal(&diskFalse.LastTransitionTime) {
		t.Errorf("DiskPressure's transition time moved without a transition: %v, was %v", d.LastTransitionTime, diskFalse.LastTransitionTime)
	}
	if r := expectCondition(t, pushed, corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"); !r.LastTransitionTime.Equal(&ready.LastTransitionTime) {
		t.Errorf("Ready's transition time moved: %v, was %v", r.LastTransitionTime, ready.LastTransitionTime)
	}
	if n.check(t) != nil {
		t.Error("the same pressure pushed a status again")
	}

	fa.set(with(healthyFigures(), agentclient.MetricFSAvailableBytes, 1e9), false)
	if pushed = n.check(t); pushed == nil {
		t.Fatal("disk pressure pushed no status")
	}
	expectCondition(t, pushed, corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory")
	expectCondition(t, pushed, corev1.NodeDiskPressure, corev1.ConditionTrue, "KubeletHasDiskPressure")

	fa.set(nil, true)
	if pushed = n.check(t); pushed == nil {
		t.Fatal("GET_METRICS refused pushed no status")
	}
	for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure} {
		c := expectCondition(t, pushed, typ, corev1.ConditionUnknown, ReasonAgentMetricsUnavailable)
		if want := "GET_METRICS"; !strings.Contains(c.Message, want) {
			t.Errorf("%s: message %q does not name %s", typ, c.Message, want)
		}
	}
	expectCondition(t, pushed, corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID")
	if r := expectCondition(t, pushed, corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"); !r.LastTransitionTime.Equal(&ready.LastTransitionTime) {
		t.Errorf("Ready's transition time moved: %v, was %v", r.LastTransitionTime, ready.LastTransitionTime)
	}

	fa.set(healthyFigures(), false)
	if pushed = n.check(t); pushed == nil {
		t.Fatal("figures back pushed no status")
	}
	expectCondition(t, pushed, corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory")
	expectCondition(t, pushed, corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure")
}

// TestNodePressureWithoutThresholds: no thresholds, no GET_METRICS, and
// every pressure condition False as the kubelet's.
func TestNodePressureWithoutThresholds(t *testing.T) {
	fa, url := newFiguresAgent(t)
	n := newNodeUnderTest(t, url, Thresholds{})
	n.check(t)
	if got := fa.metrics.Load(); got != 0 {
		t.Errorf("%d GET_METRICS calls without thresholds", got)
	}
	node := n.current()
	expectCondition(t, node, corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory")
	expectCondition(t, node, corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure")
	expectCondition(t, node, corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID")
}

// TestNodePressureAgentAway: an agent that does not answer leaves the
// pressure conditions Unknown (its figures are not at hand) and is asked
// for none.
func TestNodePressureAgentAway(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "agent away", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	n := newNodeUnderTest(t, srv.URL, DefaultThresholds())
	node := n.current()
	expectCondition(t, node, corev1.NodeReady, corev1.ConditionFalse, "AgentUnreachable")
	for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure} {
		c := expectCondition(t, node, typ, corev1.ConditionUnknown, ReasonAgentMetricsUnavailable)
		if want := "does not answer"; !strings.Contains(c.Message, want) {
			t.Errorf("%s: message %q lacks %q", typ, c.Message, want)
		}
	}
}
