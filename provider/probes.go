package provider

import (
	"container/heap"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	sm "github.com/vk-titus/vk-titus/statemachine"
)

// probeKind is which of the kubelet's three probes.
type probeKind string

const (
	startupProbe   probeKind = "Startup"
	livenessProbe  probeKind = "Liveness"
	readinessProbe probeKind = "Readiness"
)

// probeState is one container's probe bookkeeping (under the pod's lock).
type probeState struct {
	gen       int // bumped when the container (re)starts: older schedules are stale
	started   bool
	ready     bool
	successes map[probeKind]int32
	failures  map[probeKind]int32
}

// due is one scheduled probe run.
type due struct {
	at   time.Time
	rec  *podRecord
	c    *ctr
	kind probeKind
	gen  int
}

type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// prober runs every container's probes from one timer heap and a fixed pool
// of workers: no goroutine or ticker per pod, however many pods probe.
type prober struct {
	p    *Provider
	mu   sync.Mutex
	h    dueHeap
	wake chan struct{}
	work chan due
	http *http.Client
}

const probeWorkers = 16

func newProber(p *Provider) *prober {
	return &prober{p: p, wake: make(chan struct{}, 1), work: make(chan due, probeWorkers),
		http: &http.Client{
			// The kubelet does not follow redirects to other hosts and does not
			// verify probe certificates; neither do we.
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 10 {
					return http.ErrUseLastResponse
				}
				return nil
			},
		}}
}

func (pr *prober) run(ctx context.Context) {
	for i := 0; i < probeWorkers; i++ {
		go func() {
			for d := range pr.work {
				pr.execute(ctx, d)
			}
		}()
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		pr.mu.Lock()
		next := time.Hour
		now := time.Now()
		var ready []due
		for pr.h.Len() > 0 && !pr.h[0].at.After(now) {
			ready = append(ready, heap.Pop(&pr.h).(due))
		}
		if pr.h.Len() > 0 {
			next = pr.h[0].at.Sub(now)
		}
		pr.mu.Unlock()
		for _, d := range ready {
			select {
			case pr.work <- d:
			case <-ctx.Done():
				return
			}
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			close(pr.work)
			return
		case <-t.C:
		case <-pr.wake:
		}
	}
}

func (pr *prober) schedule(d due) {
	pr.mu.Lock()
	heap.Push(&pr.h, d)
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
}

func probeOf(c *corev1.Container, kind probeKind) *corev1.Probe {
	switch kind {
	case startupProbe:
		return c.StartupProbe
	case livenessProbe:
		return c.LivenessProbe
	}
	return c.ReadinessProbe
}

// specOf is the spec of a probed container: app containers and native
// sidecars are probed, as by the kubelet; init containers are not.
func specOf(rec *podRecord, c *ctr) *corev1.Container {
	list := rec.pod.Spec.Containers
	switch c.role {
	case sm.RoleInit:
		return nil
	case sm.RoleSidecar:
		list = rec.pod.Spec.InitContainers
	}
	for i := range list {
		if list[i].Name == c.name {
			return &list[i]
		}
	}
	return nil
}

// containerStarted begins probing a container that just started running
// (rec.mu held). Until a startup probe succeeds the others wait, as in the
// kubelet; without a readiness probe a running container is ready.
func (pr *prober) containerStarted(rec *podRecord, c *ctr) {
	c.probes = probeState{gen: c.probes.gen + 1, successes: map[probeKind]int32{}, failures: map[probeKind]int32{}}
	spec := specOf(rec, c)
	if spec == nil {
		c.probes.started, c.probes.ready = true, true
		return
	}
	c.probes.started = spec.StartupProbe == nil
	c.probes.ready = spec.ReadinessProbe == nil
	kinds := []probeKind{startupProbe}
	if c.probes.started {
		kinds = []probeKind{livenessProbe, readinessProbe}
	}
	for _, k := range kinds {
		if pb := probeOf(spec, k); pb != nil {
			pr.schedule(due{at: time.Now().Add(time.Duration(pb.InitialDelaySeconds) * time.Second), rec: rec, c: c, kind: k, gen: c.probes.gen})
		}
	}
}

// execute runs one probe and applies its result under the pod's lock.
func (pr *prober) execute(ctx context.Context, d due) {
	d.rec.mu.Lock()
	spec := specOf(d.rec, d.c)
	stale := d.gen != d.c.probes.gen || d.c.state != sm.Running || spec == nil
	var pb *corev1.Probe
	if !stale {
		pb = probeOf(spec, d.kind)
	}
	podIP, ns, name := pr.p.hostIP, d.rec.pod.Namespace, d.rec.pod.Name
	d.rec.mu.Unlock()
	if stale || pb == nil {
		return
	}
	timeout := time.Duration(pb.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := pr.probe(pctx, podIP, ns, name, spec, pb)
	cancel()

	d.rec.mu.Lock()
	if d.gen != d.c.probes.gen || d.c.state != sm.Running {
		d.rec.mu.Unlock()
		return
	}
	failed := pr.record(d, pb, err)
	period := time.Duration(pb.PeriodSeconds) * time.Second
	if period <= 0 {
		period = 10 * time.Second
	}
	next := d
	next.at = time.Now().Add(period)
	if d.kind == startupProbe && d.c.probes.started {
		// Startup passed: liveness and readiness take over.
		for _, k := range []probeKind{livenessProbe, readinessProbe} {
			if probeOf(spec, k) != nil {
				pr.schedule(due{at: time.Now().Add(time.Duration(probeOf(spec, k).InitialDelaySeconds) * time.Second),
					rec: d.rec, c: d.c, kind: k, gen: d.gen})
			}
		}
	} else {
		pr.schedule(next)
	}
	pod := pr.p.publishLocked(d.rec)
	d.rec.mu.Unlock()
	pr.p.notifyPod(pod)
	if failed != nil {
		pr.p.enqueue(d.rec, item{c: d.c, ev: *failed})
	}
}

// record applies thresholds (rec.mu held); it hands back the LivenessFailed
// event for the pod's worker when a liveness or startup probe gave up.
func (pr *prober) record(d due, pb *corev1.Probe, err error) *sm.Event {
	ps := &d.c.probes
	success, failure := pb.SuccessThreshold, pb.FailureThreshold
	if success <= 0 {
		success = 1
	}
	if failure <= 0 {
		failure = 3
	}
	if err == nil {
		ps.failures[d.kind] = 0
		ps.successes[d.kind]++
		if ps.successes[d.kind] >= success {
			switch d.kind {
			case startupProbe:
				ps.started = true
			case readinessProbe:
				ps.ready = true
			}
		}
		return nil
	}
	ps.successes[d.kind] = 0
	ps.failures[d.kind]++
	if r := pr.p.opts.Recorder; r != nil {
		r.Eventf(d.rec.pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", d.kind, err)
	}
	if ps.failures[d.kind] < failure {
		return nil
	}
	switch d.kind {
	case readinessProbe:
		ps.ready = false
	case livenessProbe, startupProbe:
		ps.failures[d.kind] = 0
		return &sm.Event{Type: sm.LivenessFailed,
			Message: fmt.Sprintf("Container %s failed %s probe, will be restarted", d.c.name, strings.ToLower(string(d.kind)))}
	}
	return nil
}

// probe performs one check the way the kubelet's prober does.
func (pr *prober) probe(ctx context.Context, podIP, ns, podName string, c *corev1.Container, pb *corev1.Probe) error {
	switch {
	case pb.HTTPGet != nil:
		g := pb.HTTPGet
		port, err := resolvePort(g.Port, c)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = podIP
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
		if u.Path == "" {
			u.Path = "/"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.35")
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		res, err := pr.http.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 10<<10))
		res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", res.StatusCode)
		}
		return nil
	case pb.TCPSocket != nil:
		port, err := resolvePort(pb.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		host := pb.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case pb.Exec != nil:
		return pr.p.execProbe(ctx, ns, podName, c.Name, pb.Exec.Command)
	case pb.GRPC != nil:
		return grpcProbe(ctx, podIP, pb.GRPC.Port, pb.GRPC.Service)
	default:
		return fmt.Errorf("probe has no handler (exec, httpGet, tcpSocket or grpc)")
	}
}

func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no port named %q in container %s", p.StrVal, c.Name)
}
