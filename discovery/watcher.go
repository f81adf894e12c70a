package discovery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpmaster"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// BridgeContainerPrefix starts the id of every container the bridge
// launches; everything else on an agent belongs to the legacy platform.
const BridgeContainerPrefix = "vkt-"

// Resources are the scalar resources the bridge accounts for.
type Resources struct {
	CPUs, MemMB, DiskMB, GPUs float64
}

// Minus is r − o, never below zero.
func (r Resources) Minus(o Resources) Resources {
	return Resources{
		CPUs: math.Max(0, r.CPUs-o.CPUs), MemMB: math.Max(0, r.MemMB-o.MemMB),
		DiskMB: math.Max(0, r.DiskMB-o.DiskMB), GPUs: math.Max(0, r.GPUs-o.GPUs),
	}
}

func (r *Resources) add(rs []mesos.Resource) {
	for _, x := range rs {
		if x.Scalar == nil {
			continue
		}
		switch x.Name {
		case "cpus":
			r.CPUs += x.Scalar.Value
		case "mem":
			r.MemMB += x.Scalar.Value
		case "disk":
			r.DiskMB += x.Scalar.Value
		case "gpus":
			r.GPUs += x.Scalar.Value
		}
	}
}

func resourcesOf(rs []mesos.Resource) Resources {
	var r Resources
	r.add(rs)
	return r
}

// Agent is one legacy agent as the leading master lists it.
type Agent struct {
	ID       string
	Hostname string
	// Endpoint is the agent's base URL (operator API at Endpoint+"/api/v1"):
	// from its libprocess pid "slave(1)@ip:port", as Mesos tools derive it,
	// else hostname:port.
	Endpoint   string
	Attributes map[string]string
	// Total is what the agent offers (reserved or not); Allocated what its
	// tasks hold as the master accounts it (framework tasks only: the
	// bridge's standalone containers are not counted, by a real Mesos master
	// nor by the reference one).
	Total, Allocated Resources
	// Reserved is what is dynamically reserved on the agent for the
	// watcher's role (AgentWatcherConfig.Role), from GET_AGENTS'
	// total_resources.
	Reserved Resources
	// Polled is when the poll that read these figures began. It is not
	// compared by equal: an agent whose figures did not change is no news.
	// A reserver takes Reserved as the master's word only when it made no
	// call since Polled.
	Polled time.Time
	// Legacy is what the legacy platform's live tasks on this agent hold
	// (GET_TASKS): what the bridge must leave alone.
	Legacy Resources
	// Recovered: a master that just failed over knows the agent from its
	// registry but has not heard from it yet (Mesos' recovered_agents); the
	// values are the last ones seen from an earlier leader.
	Recovered bool
}

// Allocatable is what the bridge may use on the agent: its total minus what
// legacy tasks hold.
func (a Agent) Allocatable() Resources { return a.Total.Minus(a.Legacy) }

func (a Agent) equal(b Agent) bool {
	if a.ID != b.ID || a.Hostname != b.Hostname || a.Endpoint != b.Endpoint || a.Total != b.Total ||
		a.Allocated != b.Allocated || a.Reserved != b.Reserved || a.Legacy != b.Legacy || a.Recovered != b.Recovered ||
		len(a.Attributes) != len(b.Attributes) {
		return false
	}
	for k, v := range a.Attributes {
		if w, ok := b.Attributes[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// AgentEventType says what happened to an agent.
type AgentEventType int

// Agent event types.
const (
	AgentAdded AgentEventType = iota + 1
	AgentRemoved
	AgentChanged
)

func (t AgentEventType) String() string {
	switch t {
	case AgentAdded:
		return "added"
	case AgentRemoved:
		return "removed"
	case AgentChanged:
		return "changed"
	}
	return "unknown"
}

// AgentEvent is one change: for AgentRemoved, Agent is its last known state.
type AgentEvent struct {
	Type  AgentEventType
	Agent Agent
}

// AgentUpdate is what a subscriber receives: the events since the last
// update it received, and the whole current set (sorted by id).
type AgentUpdate struct {
	Events []AgentEvent
	Agents []Agent
}

// AgentWatcherConfig configures an AgentWatcher.
type AgentWatcherConfig struct {
	// Master is zk://host:port[,host:port]/path (the leader is followed in
	// ZooKeeper) or http://host:port (a fixed master; its 307 redirects to
	// the leader are followed). One of Master and Detector is required.
	Master string
	// Detector, when given, is used instead of a new one for Master (and
	// is not closed by Close).
	Detector *Detector
	// Interval between polls of GET_AGENTS and GET_TASKS. Default 5 s.
	Interval time.Duration
	// CallTimeout bounds each operator call. Default 10 s. (mesos-go's
	// httpcli would otherwise apply its own 5 s dial and response-header
	// timeouts.)
	CallTimeout time.Duration
	// FailoverGrace: after the leading master changes, agents missing from
	// the new leader's list are kept this long, because a Mesos master that
	// just won the election learns its agents from their re-registrations
	// (the reference master keeps no registry at all). Default 30 s; agents
	// re-register within their heartbeat interval (15 s by default).
	FailoverGrace time.Duration
	// Logger; default: discard.
	Logger logrus.FieldLogger
	// Credential is sent as HTTP Basic authentication on every operator
	// call, for masters started with --authenticate_http_readwrite or
	// --authenticate_http_readonly. Nil: none.
	Credential *mesosauth.Credential
	// CredentialFlag names where Credential comes from in a 401's error
	// (default "--mesos-credentials").
	CredentialFlag string
	// Role is whose dynamic reservations Agent.Reserved counts. Empty:
	// none are counted.
	Role string
}

// AgentWatcher polls the leading master's GET_AGENTS and GET_TASKS and
// keeps the agent set, telling subscribers what changed. While the master
// or ZooKeeper is unreachable it keeps the last set: an agent nobody can
// ask about is not an agent that is gone.
type AgentWatcher struct {
	cfg      AgentWatcherConfig
	log      logrus.FieldLogger
	detector *Detector
	ownDet   bool

	sendersMu sync.Mutex               // guards senders: poll and Operate share them
	senders   map[string]*masterClient // by leader URL

	mu           sync.Mutex
	agents       map[string]Agent
	synced       bool
	lastSync     time.Time
	lastErr      error
	leader       string // "<master id>/<elected time>@<url>" of the last successful poll
	leaderChange time.Time
	subs         []*agentSub

	poke chan struct{}
	stop chan struct{}
	done chan struct{}
}

type agentSub struct {
	ch       chan AgentUpdate
	sentBase map[string]Agent // the subscriber's view before the pending update
	sentTo   map[string]Agent // the view the pending (or last) update leads to
}

type masterClient struct {
	sender   calls.Sender
	location *string // Location of the last 307, for fixed-URL masters
	mu       *sync.Mutex
	// unauthorized is the error a 401 from this master stands for.
	unauthorized error
}

// NewAgentWatcher starts watching. Subscribe to hear about changes.
func NewAgentWatcher(cfg AgentWatcherConfig) (*AgentWatcher, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.FailoverGrace <= 0 {
		cfg.FailoverGrace = 30 * time.Second
	}
	if cfg.CredentialFlag == "" {
		cfg.CredentialFlag = "--mesos-credentials"
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
	}
	w := &AgentWatcher{
		cfg:     cfg,
		log:     log.WithField("component", "agent-watcher"),
		senders: map[string]*masterClient{},
		agents:  map[string]Agent{},
		poke:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	switch {
	case cfg.Detector != nil:
		w.detector = cfg.Detector
	case strings.HasPrefix(cfg.Master, "zk://"):
		d, err := NewDetector(cfg.Master, log)
		if err != nil {
			return nil, err
		}
		w.detector, w.ownDet = d, true
	case strings.HasPrefix(cfg.Master, "http://"), strings.HasPrefix(cfg.Master, "https://"):
		cfg.Master = strings.TrimRight(cfg.Master, "/")
		w.cfg.Master = cfg.Master
	default:
		return nil, fmt.Errorf("discovery: master %q: expecting zk://host:port/path or http://host:port", cfg.Master)
	}
	go w.run()
	return w, nil
}

// Close stops polling and closes every subscription.
func (w *AgentWatcher) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	if w.ownDet {
		w.detector.Close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs {
		close(s.ch)
	}
	w.subs = nil
}

// Agents returns the current agent set, sorted by id; synced is false until
// the first successful poll.
func (w *AgentWatcher) Agents() (agents []Agent, synced bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sorted(w.agents), w.synced
}

// Agent returns one agent.
func (w *AgentWatcher) Agent(id string) (Agent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.agents[id]
	return a, ok
}

// LastSync is when the last poll succeeded, and the error of the last
// failed poll since (nil when the last poll succeeded).
func (w *AgentWatcher) LastSync() (time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastSync, w.lastErr
}

// Subscribe returns a channel of updates. The first update (once synced)
// lists every agent as added. The channel holds one update; if the reader
// falls behind, pending updates are merged (the events then describe the
// difference from what the reader last received), so the watcher never
// blocks and the reader never misses a change. Closed by Close.
func (w *AgentWatcher) Subscribe() <-chan AgentUpdate {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &agentSub{ch: make(chan AgentUpdate, 1), sentTo: map[string]Agent{}}
	select {
	case <-w.stop:
		close(s.ch)
		return s.ch
	default:
	}
	w.subs = append(w.subs, s)
	if w.synced {
		w.deliverLocked(s)
	}
	return s.ch
}

func sorted(m map[string]Agent) []Agent {
	out := make([]Agent, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func diff(from, to map[string]Agent) []AgentEvent {
	var ev []AgentEvent
	for _, a := range sorted(to) {
		old, ok := from[a.ID]
		switch {
		case !ok:
			ev = append(ev, AgentEvent{AgentAdded, a})
		case !old.equal(a):
			ev = append(ev, AgentEvent{AgentChanged, a})
		}
	}
	for _, a := range sorted(from) {
		if _, ok := to[a.ID]; !ok {
			ev = append(ev, AgentEvent{AgentRemoved, a})
		}
	}
	return ev
}

func (w *AgentWatcher) deliverLocked(s *agentSub) {
	base := s.sentTo
	select {
	case <-s.ch: // not read yet: the reader still has the older view
		base = s.sentBase
	default:
	}
	ev := diff(base, w.agents)
	if len(ev) == 0 {
		s.sentTo = base
		return
	}
	snap := make(map[string]Agent, len(w.agents))
	for k, v := range w.agents {
		snap[k] = v
	}
	s.ch <- AgentUpdate{Events: ev, Agents: sorted(snap)}
	s.sentBase, s.sentTo = base, snap
}

func (w *AgentWatcher) run() {
	defer close(w.done)
	var changes <-chan MasterInfo
	if w.detector != nil {
		changes = w.detector.Changes()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-w.stop:
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
		case <-w.poke:
		case <-timer.C:
		}
		next := w.cfg.Interval
		if err := w.poll(); err != nil {
			w.mu.Lock()
			first := w.lastErr == nil
			w.lastErr = err
			w.mu.Unlock()
			if first {
				w.log.WithError(err).Warn("cannot list agents; keeping the last known set")
			} else {
				w.log.WithError(err).Debug("cannot list agents")
			}
			if notLeader(err) {
				next = min(next, 500*time.Millisecond) // the leader moved: ask it soon
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// leaderURL is the URL to ask now.
func (w *AgentWatcher) leaderURL() (string, error) {
	if w.detector != nil {
		m, ok := w.detector.Leader()
		if !ok {
			return "", fmt.Errorf("no leading master known in ZooKeeper")
		}
		return m.URL(), nil
	}
	return w.cfg.Master, nil
}

func (w *AgentWatcher) client(base string) *masterClient {
	w.sendersMu.Lock()
	defer w.sendersMu.Unlock()
	if c := w.senders[base]; c != nil {
		return c
	}
	mc := &masterClient{location: new(string), mu: &sync.Mutex{},
		unauthorized: mesosauth.Unauthorized("master "+hostOf(base), w.cfg.CredentialFlag, w.cfg.Credential)}
	cli := httpcli.New(
		httpcli.Endpoint(base+"/api/v1"),
		httpcli.Do(httpcli.With(
			httpcli.Timeout(w.cfg.CallTimeout),
			httpcli.Transport(func(t *http.Transport) { t.MaxIdleConnsPerHost = 2 }),
			httpcli.WrapRoundTripper(w.cfg.Credential.Wrap),
		)),
		// mesos-go turns a 307 into CodeNotLeader and drops the Location; keep
		// it, so a fixed-URL watcher can go straight to the leader.
		httpcli.WrapDoer(func(next httpcli.DoFunc) httpcli.DoFunc {
			return func(req *http.Request) (*http.Response, error) {
				res, err := next(req)
				if res != nil && res.StatusCode == http.StatusTemporaryRedirect {
					mc.mu.Lock()
					*mc.location = res.Header.Get("Location")
					mc.mu.Unlock()
				}
				return res, err
			}
		}),
	)
	mc.sender = httpmaster.NewSender(cli.Send)
	w.senders[base] = mc
	return mc
}

func (w *AgentWatcher) call(ctx context.Context, mc *masterClient, c *master.Call) (*master.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	res, err := mc.sender.Send(ctx, calls.NonStreaming(c))
	if res != nil {
		defer res.Close()
	}
	if err != nil {
		if apierrors.CodeNotAuthenticated.Matches(err) {
			// Asking again cannot help: poll says so once per interval.
			return nil, fmt.Errorf("%s: %w", c.Type, mc.unauthorized)
		}
		return nil, fmt.Errorf("%s: %w", c.Type, err)
	}
	var out master.Response
	if err := res.Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: decode: %w", c.Type, err)
	}
	return &out, nil
}

func (w *AgentWatcher) poll() error {
	base, err := w.leaderURL()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer cancel()

	polled := time.Now()
	masterID, agentsResp, tasksResp, err := w.fetch(ctx, base)
	if leader := w.redirected(base, err); leader != "" {
		base = leader
		masterID, agentsResp, tasksResp, err = w.fetch(ctx, base)
	}
	if err != nil {
		return err
	}

	legacy := map[string]Resources{}
	if gt := tasksResp.GetGetTasks(); gt != nil {
		for _, t := range append(append([]mesos.Task(nil), gt.Tasks...), gt.UnreachableTasks...) {
			if t.State != nil && terminal(*t.State) {
				continue
			}
			r := legacy[t.AgentID.Value]
			r.add(t.Resources)
			legacy[t.AgentID.Value] = r
		}
	}
	next := map[string]Agent{}
	ga := agentsResp.GetGetAgents()
	for _, a := range ga.GetAgents() {
		ag := agentFrom(a.AgentInfo, a.GetPID())
		ag.Total = resourcesOf(a.TotalResources)
		if len(a.TotalResources) == 0 {
			ag.Total = resourcesOf(a.AgentInfo.Resources)
		}
		ag.Allocated = resourcesOf(a.AllocatedResources)
		ag.Reserved = reservedFor(a.TotalResources, w.cfg.Role)
		ag.Legacy = legacy[ag.ID]
		ag.Polled = polled
		next[ag.ID] = ag
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	// A new leader (or the same address with a new id or election time: a
	// restarted or re-elected master) starts with the agents that have
	// re-registered so far.
	if leader := masterID + "@" + base; w.leader != leader {
		if w.leader != "" {
			w.log.WithFields(logrus.Fields{"from": w.leader, "to": leader}).Info("listing agents from a new leading master")
			w.leaderChange = now
		}
		w.leader = leader
	}
	for _, ai := range ga.GetRecoveredAgents() {
		ag := agentFrom(ai, "")
		if _, ok := next[ag.ID]; ok {
			continue
		}
		if old, ok := w.agents[ag.ID]; ok {
			ag = old
		} else {
			ag.Total = resourcesOf(ai.Resources)
		}
		ag.Recovered = true
		next[ag.ID] = ag
	}
	if now.Sub(w.leaderChange) < w.cfg.FailoverGrace {
		for id, old := range w.agents {
			if _, ok := next[id]; !ok {
				next[id] = old // not re-registered with the new leader yet
			}
		}
	}
	changed := len(diff(w.agents, next)) > 0
	w.agents = next
	firstSync := !w.synced
	w.synced, w.lastSync, w.lastErr = true, now, nil
	if changed || firstSync {
		for _, s := range w.subs {
			w.deliverLocked(s)
		}
	}
	return nil
}

// fetch asks the master who it is (GET_MASTER), its agents and its tasks.
func (w *AgentWatcher) fetch(ctx context.Context, base string) (masterID string, agents, tasks *master.Response, err error) {
	mc := w.client(base)
	m, err := w.call(ctx, mc, calls.GetMaster())
	if err != nil {
		return "", nil, nil, fmt.Errorf("master %s: %w", base, err)
	}
	agents, err = w.call(ctx, mc, calls.GetAgents())
	if err != nil {
		return "", nil, nil, fmt.Errorf("master %s: %w", base, err)
	}
	tasks, err = w.call(ctx, mc, calls.GetTasks())
	if err != nil {
		return "", nil, nil, fmt.Errorf("master %s: %w", base, err)
	}
	// The election time is part of the identity: a master that stepped
	// down (ZooKeeper unreachable) and was elected again starts with empty
	// registries just like a new one.
	gm := m.GetGetMaster()
	return fmt.Sprintf("%s/%.6f", gm.GetMasterInfo().GetID(), gm.GetElectedTime()), agents, tasks, nil
}

// hostOf is base's host:port, as errors name the master.
func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

// baseOf turns a redirect Location ("//host:port/api/v1" as Mesos writes
// it, or an absolute URL) into a base URL.
func baseOf(loc string) string {
	if loc == "" {
		return ""
	}
	if strings.HasPrefix(loc, "//") {
		loc = "http:" + loc
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + u.Host
}

func agentFrom(ai mesos.AgentInfo, pid string) Agent {
	a := Agent{Hostname: ai.Hostname, Attributes: map[string]string{}}
	if ai.ID != nil {
		a.ID = ai.ID.Value
	}
	port := 5051
	if ai.Port != nil {
		port = int(*ai.Port)
	}
	a.Endpoint = "http://" + net.JoinHostPort(ai.Hostname, strconv.Itoa(port))
	if _, hp, ok := strings.Cut(pid, "@"); ok && hp != "" {
		a.Endpoint = "http://" + hp
	}
	for _, at := range ai.Attributes {
		switch {
		case at.Text != nil:
			a.Attributes[at.Name] = at.Text.Value
		case at.Scalar != nil:
			a.Attributes[at.Name] = strconv.FormatFloat(at.Scalar.Value, 'f', -1, 64)
		}
	}
	return a
}

// notLeader: mesos-go's Code.Matches does not unwrap.
// redirected is where to ask again after err from base: the leader a fixed
// master that does not lead redirected to (followed once), else "".
func (w *AgentWatcher) redirected(base string, err error) string {
	if err == nil || w.detector != nil || !notLeader(err) {
		return ""
	}
	mc := w.client(base)
	mc.mu.Lock()
	loc := *mc.location
	mc.mu.Unlock()
	if leader := baseOf(loc); leader != base {
		return leader
	}
	return ""
}

func notLeader(err error) bool {
	var ae *apierrors.Error
	return errors.As(err, &ae) && apierrors.CodeNotLeader.Matches(ae)
}

func terminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_LOST,
		mesos.TASK_ERROR, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}
