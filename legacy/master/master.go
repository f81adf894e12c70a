package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// Version is reported by GET_VERSION and written into MasterInfo.
const Version = "1.11.0-vk-titus-reference"

// Defaults for Config.
const (
	DefaultListen       = "127.0.0.1:5050"
	DefaultAgentTimeout = 75 * time.Second
	DefaultKillGrace    = 3 * time.Second
	// Retention of finished jobs and tasks (gc.go).
	DefaultJobRetentionCount   = 1000
	DefaultJobRetentionAge     = 24 * time.Hour
	DefaultTaskRetentionPerJob = 100
	DefaultPruneInterval       = 10 * time.Second
)

// Config describes one reference master. Zero values take the documented
// defaults.
type Config struct {
	// Listen is where Run serves. Default 127.0.0.1:5050. New only uses it
	// to learn the port and IP when Port/Hostname are empty.
	Listen string
	// ZK is the election URL, zk://host:port[,host:port]/path. Empty: a
	// standalone master that always leads (no ZooKeeper), whose jobs live
	// in memory only.
	ZK string
	// JobsZKPath is where the job API keeps its job records, in the
	// ZooKeeper of ZK. Default: ZK's path + "-jobs" (/mesos → /mesos-jobs),
	// beside the election path rather than in it, where only contenders
	// belong.
	JobsZKPath string
	// Hostname goes into MasterInfo (hostname, address.hostname). Default:
	// the host of Listen, else 127.0.0.1.
	Hostname string
	// Port goes into MasterInfo. Default: the port of Listen.
	Port int32
	// ID is the master's id. Default: random, new for every start (as in
	// Mesos, a restarted master is a new master).
	ID string
	// AgentTimeout is how long an agent may go without re-registering
	// (its heartbeat) before it is removed and its legacy tasks are LOST.
	// Default 75 s, Mesos' agent_ping_timeout × max_agent_ping_timeouts.
	AgentTimeout time.Duration
	// ZKSessionTimeout is the election session's timeout. Default 10 s.
	ZKSessionTimeout time.Duration
	// KillGrace is how long KillTask waits between SIGTERM and SIGKILL.
	// Default 3 s, Mesos' KillPolicy default.
	KillGrace time.Duration
	// JobRetentionCount is how many finished jobs the job API keeps (the
	// most recently finished); older ones are pruned from memory and
	// ZooKeeper, and their ids answer 404. Default 1000.
	JobRetentionCount int
	// JobRetentionAge is how long a finished job is kept after it
	// finished. Default 24 h.
	JobRetentionAge time.Duration
	// TaskRetentionPerJob is how many finished tasks a job keeps (the
	// newest; a batch index's latest task is always kept). Default 100.
	TaskRetentionPerJob int
	// PruneInterval is how often the leader prunes. Default 10 s.
	PruneInterval time.Duration
	// Logger receives the master's logs. Default logrus.StandardLogger().
	Logger logrus.FieldLogger
	// AgentClient tunes the clients the master uses to launch, wait for and
	// kill legacy tasks; its Credential is what the master sends to agents
	// that demand authentication (--agent-credential).
	AgentClient agentclient.Options
	// HTTPAuth is --authenticate_http_readonly, --authenticate_http_readwrite
	// and --http_credentials: which endpoints need HTTP Basic credentials
	// (Handler; doc.go). Zero: none.
	HTTPAuth mesosauth.Flags
}

func (c Config) withDefaults() (Config, error) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return c, fmt.Errorf("master: listen %q: %w", c.Listen, err)
	}
	if c.Hostname == "" {
		c.Hostname = host
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			c.Hostname = "127.0.0.1"
		}
	}
	if c.Port == 0 {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return c, fmt.Errorf("master: listen %q: no usable port (give Port)", c.Listen)
		}
		c.Port = int32(n)
	}
	if c.ID == "" {
		c.ID = newUUID()
	}
	if c.AgentTimeout <= 0 {
		c.AgentTimeout = DefaultAgentTimeout
	}
	if c.ZKSessionTimeout <= 0 {
		c.ZKSessionTimeout = discovery.DefaultSessionTimeout
	}
	if c.KillGrace <= 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.JobRetentionCount <= 0 {
		c.JobRetentionCount = DefaultJobRetentionCount
	}
	if c.JobRetentionAge <= 0 {
		c.JobRetentionAge = DefaultJobRetentionAge
	}
	if c.TaskRetentionPerJob <= 0 {
		c.TaskRetentionPerJob = DefaultTaskRetentionPerJob
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = DefaultPruneInterval
	}
	if c.Logger == nil {
		c.Logger = logrus.StandardLogger()
	}
	if c.JobsZKPath != "" && !strings.HasPrefix(c.JobsZKPath, "/") {
		return c, fmt.Errorf("master: jobs ZooKeeper path %q is not absolute", c.JobsZKPath)
	}
	return c, nil
}

// Errors of the Go API; the HTTP layer maps them to status codes.
var (
	// ErrNotLeader: this master does not lead; ask Leader() who does.
	ErrNotLeader = errors.New("not the leading master")
	// ErrNoAgents: no agent is registered (yet): 503, retry later.
	ErrNoAgents = errors.New("no agent is registered")
	// ErrNoCapacity: agents are registered but none has room for the task
	// or matches its constraints: 409.
	ErrNoCapacity = errors.New("no agent has room for the task")
	// ErrInvalidTask: the spec can never be launched: 400.
	ErrInvalidTask = errors.New("invalid task")
	// ErrUnknownTask: no such task: 404.
	ErrUnknownTask = errors.New("unknown task")

	errBadRegistration = errors.New("bad registration")
	// errAgentRemoved: a re-registration of an agent this master removed:
	// 410, and the agent must shut down its containers and register anew.
	errAgentRemoved = errors.New("agent was removed")
)

// maxRemovedAgents bounds the ids of removed agents a master remembers (the
// registry's --registry_max_agent_count in Mesos); past it the oldest is
// forgotten.
const maxRemovedAgents = 10000

// Master is the reference legacy master: leader election in ZooKeeper, an
// agent registry fed by agents' registrations, the Mesos v1 master operator
// API (the read-only subset and dynamic reservations) and a legacy launch
// path that places tasks on agents first-fit. Create it with New, then Start it; Run does both and
// serves HTTP.
type Master struct {
	cfg     Config
	log     logrus.FieldLogger
	info    discovery.MasterInfo
	started time.Time

	contender *contender
	detector  *discovery.Detector
	auth      *mesosauth.Authenticator // nil: every endpoint is open

	mu         sync.Mutex
	leading    bool
	electedAt  time.Time
	termCtx    context.Context // cancelled when this master stops leading
	termCancel context.CancelFunc
	agents     map[string]*agentState
	// removed are the agents this leader removed, by id → when: their
	// re-registration is refused (bounded by maxRemovedAgents).
	removed map[string]time.Time
	tasks   map[TaskID]*task
	clients map[string]*agentclient.Client
	// term counts this master's leaderships; jobs is the job table of the
	// current one, nil while it is being loaded (or when not leading).
	term uint64
	jobs *jobTable
	// removals are the finished tasks' containers to REMOVE (gc.go); nil
	// when not leading.
	removals map[TaskID]*removal
	// prunePending: deletes of pruned records that failed (storeMu).
	prunePending pendingPrune

	store    *jobStore // nil when standalone: jobs are not persisted
	storeMu  sync.Mutex
	jobsKick chan struct{}

	stopOnce sync.Once
	cancel   context.CancelFunc
	stopped  bool // under mu: no new background work (see spawn)
	wg       sync.WaitGroup
}

// spawn runs f in the background unless the master is stopping. The
// WaitGroup is only added to under mu and before Stop sets stopped, so
// Stop's Wait never races an Add.
func (m *Master) spawn(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); f() }()
}

type agentState struct {
	info         mesos.AgentInfo
	endpoint     string
	pid          string
	version      string
	total        Resources
	registered   time.Time
	reregistered time.Time
	lastSeen     time.Time
	containers   map[string]protocol.Container
	// reserved are the agent's dynamic reservations (reserve.go).
	reserved reservations
}

// New validates cfg and builds a master. It does not contend or serve yet.
func New(cfg Config) (*Master, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	auth, err := mesosauth.NewAuthenticator(cfg.HTTPAuth)
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	ip := resolveIPv4(cfg.Hostname)
	mip, _ := discovery.IPToMesos(ip)
	pid := fmt.Sprintf("master@%s:%d", ip, cfg.Port)
	m := &Master{
		cfg: cfg,
		log: cfg.Logger.WithField("master_id", cfg.ID),
		info: discovery.MasterInfo{
			ID:       cfg.ID,
			IP:       mip,
			Port:     uint32(cfg.Port),
			PID:      pid,
			Hostname: cfg.Hostname,
			Version:  Version,
			Address:  &discovery.Address{Hostname: cfg.Hostname, IP: ip.String(), Port: cfg.Port},
		},
		started:  time.Now(),
		auth:     auth,
		agents:   map[string]*agentState{},
		removed:  map[string]time.Time{},
		tasks:    map[TaskID]*task{},
		clients:  map[string]*agentclient.Client{},
		jobsKick: make(chan struct{}, 1),
	}
	m.termCtx, m.termCancel = context.WithCancel(context.Background())
	m.termCancel()
	if cfg.ZK != "" {
		u, err := discovery.ParseZKURL(cfg.ZK)
		if err != nil {
			return nil, fmt.Errorf("master: --zk: %w", err)
		}
		data, err := json.Marshal(m.info)
		if err != nil {
			return nil, err
		}
		m.contender = &contender{
			url: u, data: data, masterID: cfg.ID, sessionTimeout: cfg.ZKSessionTimeout,
			log: m.log.WithField("zk", u.String()), onLeading: m.setLeading,
		}
		root := cfg.JobsZKPath
		if root == "" {
			root = u.Path + "-jobs"
		}
		m.store = &jobStore{root: path.Clean(root), fence: m.contender.fence, log: m.log.WithField("jobs_zk", path.Clean(root))}
	}
	return m, nil
}

// resolveIPv4 is the IPv4 address MasterInfo.ip carries: the hostname
// itself when it is one, else its first IPv4 address, else loopback.
func resolveIPv4(host string) net.IP {
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		return ip.To4()
	}
	if ips, err := net.LookupIP(host); err == nil {
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil {
				return v4
			}
		}
	}
	return net.IPv4(127, 0, 0, 1).To4()
}

// Start begins contending for leadership (or leads at once when no ZK URL
// is configured) and removing agents that stop heartbeating. Stop ends it.
func (m *Master) Start(ctx context.Context) error {
	ctx, m.cancel = context.WithCancel(ctx)
	if m.contender != nil {
		d, err := discovery.NewDetector(m.cfg.ZK, m.log, discovery.WithSessionTimeout(m.cfg.ZKSessionTimeout))
		if err != nil {
			return err
		}
		m.detector = d
		m.spawn(func() { m.contender.run(ctx) })
	} else {
		m.setLeading(true)
	}
	m.spawn(func() { m.sweep(ctx) })
	m.spawn(func() { m.runJobs(ctx) })
	return nil
}

// Stop steps down (closing the ZooKeeper session, so the next master
// leads at once) and stops every background task. Tasks on agents keep
// running: they belong to the agents.
func (m *Master) Stop() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		m.stopped = true
		m.mu.Unlock()
		if m.cancel != nil {
			m.cancel()
		}
		m.setLeading(false) // cancels followers and pending kills
		m.wg.Wait()
		m.setLeading(false) // the contender may have raced the first
		if m.detector != nil {
			m.detector.Close()
		}
	})
}

// Info is this master's MasterInfo, as written into ZooKeeper.
func (m *Master) Info() discovery.MasterInfo { return m.info }

// IsLeader reports whether this master leads now.
func (m *Master) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

// Leader returns the leading master as this master knows it: itself when it
// leads, else what its detector last saw in ZooKeeper.
func (m *Master) Leader() (discovery.MasterInfo, bool) {
	if m.IsLeader() {
		return m.info, true
	}
	if m.detector == nil {
		return discovery.MasterInfo{}, false
	}
	info, ok := m.detector.Leader()
	if ok && info.ID == m.info.ID {
		// ZooKeeper still names us but we stepped down (lost session):
		// there is no leader to send anyone to.
		return discovery.MasterInfo{}, false
	}
	return info, ok
}

// setLeading is the contender's callback. A newly elected master starts
// with empty registries, as a Mesos master without a replicated registry
// would: agents re-register (on the leader change they see in ZooKeeper,
// or at the latest with their next heartbeat) and report their containers,
// and running legacy tasks are adopted from those reports. Jobs, which
// Titus keeps in its own store, are read back from ZooKeeper by the job
// loop (loadJobs).
func (m *Master) setLeading(v bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leading == v {
		return
	}
	m.leading = v
	if v {
		m.electedAt = time.Now()
		m.agents = map[string]*agentState{}
		m.removed = map[string]time.Time{}
		m.tasks = map[TaskID]*task{}
		m.term++
		m.jobs = nil
		m.removals = map[TaskID]*removal{}
		if m.store == nil {
			m.jobs = newJobTable() // standalone: nothing to load
		}
		m.termCtx, m.termCancel = context.WithCancel(context.Background())
		m.kickJobs()
		m.log.Info("leading")
		return
	}
	m.jobs = nil
	m.removals = nil
	m.termCancel() // stops task followers and pending kills
	m.log.Info("no longer leading")
}

func (m *Master) client(endpoint string) *agentclient.Client {
	c := m.clients[endpoint]
	if c == nil {
		c = agentclient.New(endpoint, m.cfg.AgentClient)
		m.clients[endpoint] = c
	}
	return c
}

// heartbeatInterval is what agents are asked for: five heartbeats per
// timeout, so four may be lost.
func (m *Master) heartbeatInterval() time.Duration {
	return m.cfg.AgentTimeout / 5
}

// register handles an agent's (re-)registration; see package protocol.
func (m *Master) register(req *protocol.RegisterRequest) (protocol.RegisterResponse, error) {
	if req.AgentInfo.ID == nil || req.AgentInfo.ID.Value == "" {
		return protocol.RegisterResponse{}, fmt.Errorf("%w: agent_info.id is required", errBadRegistration)
	}
	u, err := url.Parse(req.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return protocol.RegisterResponse{}, fmt.Errorf("%w: endpoint %q is not an http(s) URL", errBadRegistration, req.Endpoint)
	}
	id := req.AgentInfo.ID.Value
	now := time.Now()

	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		return protocol.RegisterResponse{}, ErrNotLeader
	}
	a := m.agents[id]
	if at, ok := m.removed[id]; ok && a == nil {
		if !req.Fresh {
			m.mu.Unlock()
			return protocol.RegisterResponse{}, fmt.Errorf("%w: agent %s was removed at %s (missed heartbeats); it must shut down its containers and register anew",
				errAgentRemoved, id, at.Format(time.RFC3339))
		}
		delete(m.removed, id)
		m.log.WithField("agent", id).Info("removed agent registers anew, empty")
	}
	isNew := a == nil
	if isNew {
		a = &agentState{registered: now}
		m.agents[id] = a
		// A master that does not know the agent (a new leader) takes the
		// reservations the agent holds; a fresh agent holds none.
		reported := req.Reservations
		if req.Fresh {
			reported = nil
		}
		a.reserved = adoptReservations(reported, scalarsOf(req.AgentInfo.Resources), m.log.WithField("agent", id))
	} else if a.endpoint != req.Endpoint {
		m.log.WithFields(logrus.Fields{"agent": id, "old": a.endpoint, "new": req.Endpoint}).
			Warn("agent re-registered from a new endpoint")
	}
	a.info = req.AgentInfo
	a.endpoint = req.Endpoint
	a.pid = "slave(1)@" + u.Host
	a.version = req.Version
	a.total = scalarsOf(req.AgentInfo.Resources)
	a.lastSeen = now
	if !isNew {
		a.reregistered = now
	}
	changed := isNew || len(a.containers) != len(req.Containers)
	reported := make(map[string]protocol.Container, len(req.Containers))
	for _, c := range req.Containers {
		if c.Kind == "" {
			c.Kind = protocol.KindOf(c.ID)
		}
		if _, had := a.containers[c.ID]; !had {
			changed = true
		}
		reported[c.ID] = c
	}
	a.containers = reported
	adopt := m.adoptLocked(id, a)
	if changed {
		m.kickJobs() // room, or tasks to recover, for the job loop
	}
	ctx := m.termCtx
	held := a.reserved.mesos()
	m.mu.Unlock()

	if isNew {
		m.log.WithFields(logrus.Fields{
			"agent": id, "endpoint": req.Endpoint, "resources": a.total.String(), "containers": len(req.Containers),
		}).Info("agent registered")
	}
	for _, t := range adopt {
		m.spawn(func() { m.follow(ctx, t.id, t.client) })
	}
	return protocol.RegisterResponse{
		MasterID:            m.info.ID,
		AgentID:             id,
		Registered:          isNew,
		HeartbeatIntervalMS: m.heartbeatInterval().Milliseconds(),
		Reservations:        held,
	}, nil
}

type adopted struct {
	id     TaskID
	client *agentclient.Client
}

// adoptLocked turns the legacy containers an agent reports, and this
// master does not know, into RUNNING tasks: after a failover these are the
// previous leader's tasks (Mesos' agents re-register with their tasks the
// same way), and anything else the legacy platform runs on the agent holds
// resources just the same.
func (m *Master) adoptLocked(agentID string, a *agentState) []adopted {
	var out []adopted
	for _, c := range a.containers {
		if c.Kind != protocol.KindLegacy {
			continue
		}
		id := TaskID(c.ID)
		if _, ok := m.tasks[id]; ok {
			continue
		}
		now := time.Now()
		t := &task{
			Task: Task{
				ID: id, Name: c.ID, AgentID: agentID, Endpoint: a.endpoint,
				Resources: Resources(c.Resources).Clone(), Adopted: true, Created: now,
			},
		}
		if m.jobs != nil {
			// A job's task placed by an earlier leader: re-attached by id
			// (loadJobs links those adopted before the records were in).
			if jt := m.jobs.tasks[id]; jt != nil && !jt.ended() {
				t.jt = jt
			}
		}
		m.tasks[id] = t
		m.setLocked(t, mesos.TASK_RUNNING, "adopted from the agent's report", nil, now)
		m.log.WithFields(logrus.Fields{"task": id, "agent": agentID}).Info("adopted running legacy task")
		out = append(out, adopted{id, m.client(a.endpoint)})
	}
	return out
}

// allocationsLocked is what each registered agent's legacy tasks hold:
// the legacy containers it reported, plus this master's own live tasks the
// agent has not reported yet (launched since its last report), minus tasks
// the master has seen end since (WAIT_CONTAINER answered: newer news than
// the report). The bridge's standalone containers are not counted, as a
// Mesos master does not count them: the bridge keeps the legacy path off
// its room with a dynamic reservation (reserve.go). One pass over the
// tasks serves every agent.
func (m *Master) allocationsLocked() map[string]Resources {
	out := make(map[string]Resources, len(m.agents))
	for id, a := range m.agents {
		used := Resources{}
		for _, c := range a.containers {
			if c.Kind != protocol.KindLegacy {
				continue
			}
			if t := m.tasks[TaskID(c.ID)]; t != nil && isTerminal(t.State) {
				continue
			}
			used.Add(c.Resources)
		}
		out[id] = used
	}
	for _, t := range m.tasks {
		a := m.agents[t.AgentID]
		if a == nil || isTerminal(t.State) {
			continue
		}
		if _, reported := a.containers[string(t.ID)]; !reported {
			out[t.AgentID].Add(t.Resources)
		}
	}
	return out
}

// sweep removes agents that missed their heartbeats for AgentTimeout.
func (m *Master) sweep(ctx context.Context) {
	every := min(max(m.cfg.AgentTimeout/10, 20*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.removeExpired(time.Now())
	}
}

func (m *Master) removeExpired(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading {
		return
	}
	for id, a := range m.agents {
		if now.Sub(a.lastSeen) <= m.cfg.AgentTimeout {
			continue
		}
		delete(m.agents, id)
		m.rememberRemovedLocked(id, now)
		m.log.WithFields(logrus.Fields{"agent": id, "last_seen": a.lastSeen.Format(time.RFC3339Nano)}).
			Warn("agent removed: no re-registration within the agent timeout")
		for _, t := range m.tasks {
			if t.AgentID == id && !isTerminal(t.State) {
				m.setLocked(t, mesos.TASK_LOST, fmt.Sprintf("agent %s removed: missed heartbeats for %v", id, m.cfg.AgentTimeout), nil, now)
				if t.cancel != nil {
					t.cancel()
				}
			}
		}
	}
}

// rememberRemovedLocked records that id was removed at now, forgetting the
// oldest removal past maxRemovedAgents. Call with m.mu held.
func (m *Master) rememberRemovedLocked(id string, now time.Time) {
	if len(m.removed) >= maxRemovedAgents {
		oldest, first := "", time.Time{}
		for rid, at := range m.removed {
			if oldest == "" || at.Before(first) {
				oldest, first = rid, at
			}
		}
		delete(m.removed, oldest)
	}
	m.removed[id] = now
}

// AgentView is one registered agent as the Go API shows it.
type AgentView struct {
	Info         mesos.AgentInfo
	Endpoint     string
	PID          string
	Registered   time.Time
	Reregistered time.Time
	LastSeen     time.Time
	Total        Resources
	Allocated    Resources
	// Reserved is every dynamic reservation on the agent, all roles.
	Reserved   Resources
	TotalMesos []mesos.Resource // GET_AGENTS' total_resources, reservations split off
	Containers []protocol.Container
}

// Agents lists the registered agents, by id. It is empty unless this
// master leads.
func (m *Master) Agents() []AgentView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AgentView, 0, len(m.agents))
	allocated := m.allocationsLocked()
	for _, id := range m.agentIDsLocked() {
		a := m.agents[id]
		v := AgentView{
			Info: a.info, Endpoint: a.endpoint, PID: a.pid, Registered: a.registered,
			Reregistered: a.reregistered, LastSeen: a.lastSeen, Total: a.total.Clone(),
			Allocated: allocated[id], Reserved: a.reserved.sum(), TotalMesos: totalResources(a.info.Resources, a.reserved),
		}
		for _, c := range a.containers {
			v.Containers = append(v.Containers, c)
		}
		sort.Slice(v.Containers, func(i, j int) bool { return v.Containers[i].ID < v.Containers[j].ID })
		out = append(out, v)
	}
	return out
}

func (m *Master) agentIDsLocked() []string {
	ids := make([]string, 0, len(m.agents))
	for id := range m.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Run listens on cfg.Listen, contends, serves until ctx is done, then steps
// down and shuts the server down.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.Port == 0 {
		cfg.Port = int32(ln.Addr().(*net.TCPAddr).Port)
	}
	m, err := New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if err := m.Start(ctx); err != nil {
		srv.Close()
		return err
	}
	m.log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "zk": cfg.ZK, "http_auth": cfg.HTTPAuth.String()}).Info("serving /api/v1 and /api/v3")
	select {
	case err = <-errc:
		m.Stop()
		return err
	case <-ctx.Done():
	}
	m.log.Info("shutting down")
	m.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// newUUID is a random RFC 4122 version 4 UUID, the shape of Mesos ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
