package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// Registrar keeps an agent registered with the leading master over the
// reference master's private protocol (package legacy/master/protocol):
// it registers at start, re-registers whenever the leader changes (seen in
// ZooKeeper through discovery.Detector), right after the agent served a
// LAUNCH/KILL/REMOVE (when its handler is wrapped with Wrap), and at least
// every heartbeat interval. Every registration carries the containers the
// agent runs, so the master's view of free resources includes the bridge's
// containers too.
type Registrar struct {
	a        *Agent
	log      logrus.FieldLogger
	master   string
	endpoint string
	interval time.Duration
	httpc    *http.Client
	// det follows the leader for every agent of the process (Run); nil:
	// Run follows a zk:// master with a detector of its own.
	det  *discovery.Detector
	kick chan struct{}
	// fresh is set once the agent shut down its containers on the master's
	// refusal, until a registration succeeds (protocol.RegisterRequest.Fresh).
	fresh bool
	// reservations are the agent's dynamic reservations as the master last
	// answered them, reported back in every registration so a new leader
	// learns them (protocol.RegisterRequest.Reservations). In memory only:
	// a Mesos agent checkpoints them; here an agent restarted during a
	// master failover comes back without them, and their reserver, which
	// watches GET_AGENTS, reserves again. Touched by Run's goroutine only.
	reservations []mesos.Resource
}

// errRemoved is the master's refusal of a removed agent (410 Gone).
var errRemoved = errors.New("the master removed this agent")

func checkMasterURL(m string) error {
	switch {
	case m == "":
		return errors.New("agent: no master configured")
	case strings.HasPrefix(m, "zk://"):
		if _, err := discovery.ParseZKURL(m); err != nil {
			return fmt.Errorf("agent: --master: %w", err)
		}
	case strings.HasPrefix(m, "http://"), strings.HasPrefix(m, "https://"):
	default:
		return fmt.Errorf("agent: --master %q: expecting zk://host:port/path or http://host:port", m)
	}
	return nil
}

// registrationClient is the HTTP client registrations go through, with
// cfg.Credential on every request (redirected hops included) and room in
// its pool for one connection per agent of the process. A registration is
// small and quick; a master that does not answer in time is retried (and
// may no longer lead). Redirects from a non-leading master are followed
// with the body (307).
func registrationClient(cfg Config, agents int) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          agents,
		MaxIdleConnsPerHost:   agents,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: cfg.Credential.Wrap(t)}
}

// NewRegistrar prepares registration of a with the master at
// a's Config.Master. Run does the work.
func (a *Agent) NewRegistrar() (*Registrar, error) {
	if err := checkMasterURL(a.cfg.Master); err != nil {
		return nil, err
	}
	return a.newRegistrar(&masterLink{master: strings.TrimRight(a.cfg.Master, "/"), httpc: registrationClient(a.cfg, 1)}), nil
}

// newRegistrar registers a through link, which the agents of one process
// share (Run).
func (a *Agent) newRegistrar(link *masterLink) *Registrar {
	return &Registrar{
		a:        a,
		log:      a.log.WithField("master", link.master),
		master:   link.master,
		endpoint: a.cfg.Endpoint,
		interval: a.cfg.HeartbeatInterval,
		httpc:    link.httpc,
		det:      link.det,
		kick:     make(chan struct{}, 1),
	}
}

// Kick asks for a registration now (coalesced).
func (r *Registrar) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Wrap returns h, kicking a registration after every call that changed the
// agent's containers: the operator API answers those (LAUNCH, KILL, REMOVE)
// with a 2xx and no body, unlike every query. So the master learns of a
// bridge launch at once instead of at the next heartbeat.
func (r *Registrar) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, "/api/v1") {
			h.ServeHTTP(w, req)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, req)
		if rec.code >= 200 && rec.code < 300 && w.Header().Get("Content-Type") == "" {
			r.Kick()
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Run registers until ctx is done.
func (r *Registrar) Run(ctx context.Context) error {
	var changes <-chan discovery.MasterInfo
	leaderURL := ""
	switch {
	case r.det != nil:
		changes = r.det.Changes()
	case strings.HasPrefix(r.master, "zk://"):
		d, err := discovery.NewDetector(r.master, r.log)
		if err != nil {
			return err
		}
		defer d.Close()
		changes = d.Changes()
	default:
		leaderURL = r.master
	}

	interval := r.interval
	retry := 250 * time.Millisecond
	timer := time.NewTimer(0) // register at once
	defer timer.Stop()
	lastMaster, failing := "", false
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-changes:
			if !ok {
				return nil
			}
			if m.IsZero() {
				r.log.Warn("no leading master in ZooKeeper; waiting")
				leaderURL = ""
				continue
			}
			leaderURL = m.URL()
			r.log.WithField("leader", m.String()).Info("leading master changed; re-registering")
		case <-r.kick:
		case <-timer.C:
		}
		if leaderURL == "" {
			continue
		}
		resp, err := r.register(ctx, leaderURL)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if errors.Is(err, errRemoved) && !r.fresh {
			// As a Mesos agent told to shut down by its master: its
			// containers end (their pods were declared lost meanwhile), and
			// it comes back as a new, empty agent.
			r.log.WithError(err).Warn("the master removed this agent: shutting down every container and registering anew")
			r.a.shutdownContainers()
			r.fresh, r.reservations = true, nil
			timer.Reset(0)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				r.log.WithError(err).WithField("url", leaderURL).Warn("registration with the master failed; retrying")
			}
			failing = true
			timer.Reset(min(retry, interval))
			retry = min(retry*2, 5*time.Second)
			continue
		}
		if failing || resp.MasterID != lastMaster || resp.Registered {
			r.log.WithFields(logrus.Fields{
				"master_id": resp.MasterID, "url": leaderURL, "registered": resp.Registered,
			}).Info("registered with the leading master")
		}
		failing, lastMaster, retry, r.fresh = false, resp.MasterID, 250*time.Millisecond, false
		r.reservations = resp.Reservations
		interval = r.interval
		if hb := resp.HeartbeatInterval(); hb > 0 && hb < interval {
			interval = hb
		}
		timer.Reset(interval)
	}
}

func (r *Registrar) register(ctx context.Context, base string) (*protocol.RegisterResponse, error) {
	body, err := json.Marshal(r.request())
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+protocol.RegisterPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := r.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode == http.StatusUnauthorized {
		return nil, mesosauth.Unauthorized("master "+res.Request.URL.Host, "--credential", r.a.cfg.Credential)
	}
	if res.StatusCode == http.StatusGone {
		return nil, fmt.Errorf("%w: %s", errRemoved, strings.TrimSpace(string(b)))
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("master answered %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	var out protocol.RegisterResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("master answer: %w", err)
	}
	return &out, nil
}

func (r *Registrar) request() *protocol.RegisterRequest {
	return &protocol.RegisterRequest{
		AgentInfo:    r.a.AgentInfo(),
		Endpoint:     r.endpoint,
		Version:      Version,
		Containers:   r.a.runningContainers(),
		Reservations: r.reservations,
		Fresh:        r.fresh,
	}
}

// shutdownGrace bounds the wait for one SIGKILLed container to be reaped.
const shutdownGrace = 30 * time.Second

// shutdownContainers ends every container as a Mesos agent does when its
// master shuts it down: each is SIGKILLed and, once ended, removed with its
// sandbox and checkpoint, so that the agent registers anew with nothing of
// its former self.
func (a *Agent) shutdownContainers() {
	a.mu.Lock()
	all := make([]*container, 0, len(a.containers))
	for _, c := range a.containers {
		all = append(all, c)
	}
	a.mu.Unlock()
	for _, c := range all {
		if err := a.kill(mesos.ContainerID{Value: c.id}, syscall.SIGKILL); err != nil {
			a.log.WithError(err).WithField("container", c.id).Warn("shutdown: kill failed")
		}
	}
	for _, c := range all {
		t := time.NewTimer(shutdownGrace)
		select {
		case <-c.done:
		case <-t.C:
			a.log.WithField("container", c.id).Error("shutdown: the container did not end after SIGKILL; left in place")
			continue
		}
		t.Stop()
		if err := a.remove(mesos.ContainerID{Value: c.id}); err != nil {
			a.log.WithError(err).WithField("container", c.id).Warn("shutdown: remove failed")
		}
	}
	a.log.WithField("containers", len(all)).Info("shutdown on the master's order: every container killed and removed")
}

// runningContainers lists running containers with the resources they were
// launched with. Only cpus and mem are kept per container by the agent
// (as its limits), so those are what is reported. Ended containers hold
// nothing, as in Mesos.
func (a *Agent) runningContainers() []protocol.Container {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]protocol.Container, 0, len(a.containers))
	for _, c := range a.containers {
		if c.state != stateRunning {
			continue
		}
		res := map[string]float64{}
		if c.cpusLimit != nil {
			res["cpus"] = *c.cpusLimit
		}
		if c.memLimit != nil {
			res["mem"] = float64(*c.memLimit) / (1 << 20)
		}
		out = append(out, protocol.Container{ID: c.id, Kind: protocol.KindOf(c.id), Resources: res})
	}
	return out
}
