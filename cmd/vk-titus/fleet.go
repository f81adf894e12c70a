package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/ownership"
	"github.com/vk-titus/vk-titus/provider"
	"github.com/vk-titus/vk-titus/vknode"
)

// fleet is the set of virtual nodes this process may serve: a fixed list of
// agents, or the agents the legacy masters list, one node each. Which of
// them this replica serves is the ownership manager's call (package
// ownership): a node runs only between its Serve and its Stop, under the
// fence of this replica's lease on it, and every replica is told the whole
// set (SetNodes).
//
// Nothing a node does at run time stops the process or another node: the
// API server being away is retried inside vknode (registration, status,
// informers), and a node whose pod controller stopped is built anew after a
// back-off (supervise). Only configuration errors (a node that cannot be
// built) are logged and leave the node down, its lease held, until the
// manager moves it.
//
// Lock rule: mu guards known, nodes, ports, watcher and each member's prov;
// it is never held while calling into a provider, the manager or the API
// server.
type fleet struct {
	o      *opts
	cfg    *provider.Config
	client kubernetes.Interface
	shared *vknode.Shared
	tls    *tls.Config // kubelet API; nil: not served
	log    *logrus.Entry
	own    *ownership.Manager
	wg     sync.WaitGroup // supervise goroutines

	mu    sync.Mutex
	known map[string]*candidate // by node name: every agent this process could serve
	nodes map[string]*member    // by node name: the nodes it serves now
	ports map[int]bool          // kubelet API ports held by running nodes
	// watcher follows the leading master (discover); nil when the agents
	// are listed in the config: no reservations then.
	watcher *discovery.AgentWatcher
}

// candidate is an agent the fleet knows of, and the legacy usage and
// reservation the master last reported for it (a node started later is
// told them).
type candidate struct {
	agent     provider.AgentConfig
	agentID   string
	legacy    agentclient.Resources
	reserved  discovery.Resources
	polled    time.Time
	hasLegacy bool
}

type member struct {
	name   string
	agent  provider.AgentConfig
	log    *logrus.Entry
	cancel context.CancelFunc // ends the member: every instance of its node
	done   chan struct{}      // closed once all its node started has stopped
	// prov is the running instance's provider (it changes when the node is
	// built anew), under fleet.mu.
	prov *provider.Provider
}

// instance is one build of a member's node: its own ctx, so that a node
// built anew leaves nothing of the previous one running (its provider's
// goroutines, its informers, its event broadcaster end with ictx).
type instance struct {
	n      *vknode.Node
	prov   *provider.Provider
	port   int
	ctx    context.Context
	cancel context.CancelFunc
}

// build makes an instance of a node under ctx, its mutations gated on fence.
func (f *fleet) build(ctx context.Context, fence func() error, a provider.AgentConfig, name string) (*instance, error) {
	port := f.takePort()
	ictx, cancel := context.WithCancel(ctx)
	n, prov, err := newNode(ictx, f.o, f.cfg, f.client, f.shared, f.tls, fence, a, f.reservations(name), name, port, f.log)
	if err != nil {
		cancel()
		f.releasePort(port)
		return nil, fmt.Errorf("node %s (agent %s): %w", name, a.Endpoint, err)
	}
	return &instance{n: n, prov: prov, port: port, ctx: ictx, cancel: cancel}, nil
}

// Serve starts the node the manager gave this replica (ownership.Handler):
// it runs under the fence's context, so it stops, in-flight calls
// cancelled, the moment the fence ends, and the provider checks the fence
// before every agent call. The node is built on its own goroutine: building
// asks the agent who it is (Provider.Start), and the manager's loop, which
// calls Serve, must go on renewing every lease in time.
func (f *fleet) Serve(fence *ownership.Fence) {
	name := fence.Node()
	log := f.log.WithField("node", name)
	f.mu.Lock()
	c := f.known[name]
	if c == nil {
		f.mu.Unlock()
		log.Warn("asked to serve a node no agent stands for: its Stop follows")
		return
	}
	mctx, cancel := context.WithCancel(fence.Context())
	m := &member{name: name, agent: c.agent, cancel: cancel, done: make(chan struct{}),
		log: log.WithField("agent", c.agent.Endpoint)}
	f.nodes[name] = m
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(m.done)
		inst, err := f.build(mctx, fence.Err, m.agent, name)
		if err != nil {
			m.log.WithError(err).Error("building the node failed: it stays down until another replica takes it")
			return
		}
		f.install(m, inst)
		m.log.Info("serving the node")
		f.supervise(mctx, fence.Err, m, inst)
	}()
}

// reservations are the node's reservation settings: nil for an agent no
// master lists, or with --mesos-role "".
func (f *fleet) reservations(name string) *provider.Reservations {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.known[name]
	if f.watcher == nil || f.o.mesosRole == "" || c == nil || c.agentID == "" {
		return nil
	}
	r := &provider.Reservations{AgentID: c.agentID, Role: f.o.mesosRole, Quantum: f.o.quantum,
		Spare: f.o.reservationSpare, Master: f.watcher}
	if f.o.mesosCred != nil {
		r.Principal = f.o.mesosCred.Principal
	}
	return r
}

// install makes inst the member's running instance and tells its provider
// the legacy usage and reservation the master last reported.
func (f *fleet) install(m *member, inst *instance) {
	f.mu.Lock()
	m.prov = inst.prov
	var c candidate
	if k := f.known[m.name]; k != nil {
		c = *k
	}
	f.mu.Unlock()
	if c.hasLegacy {
		inst.prov.SetLegacyUsage(c.legacy)
		inst.prov.ObserveReservation(c.reserved, c.polled)
	}
}

// Stop stops serving a node (ownership.Handler) and returns once nothing of
// it runs. A node whose agent the master declared gone is removed first:
// its pods are marked lost, their statuses given time to be written, then
// the Node object is deleted and its pods' finalizers taken off (nothing of
// them is left to remove on a gone agent). Only the owner does this, under
// its still valid fence.
func (f *fleet) Stop(ctx context.Context, name string, reason ownership.Reason) error {
	f.mu.Lock()
	m := f.nodes[name]
	var prov *provider.Provider
	if m != nil {
		prov = m.prov
	}
	f.mu.Unlock()
	if m == nil {
		return nil
	}
	m.log.WithField("reason", reason).Info("no longer serving the node")
	if reason == ownership.ReasonRemoved && prov != nil {
		prov.AgentGone("the legacy master lists the agent no more")
		vknode.Sleep(ctx, 5*time.Second) // the lost pods' statuses are written
	}
	m.cancel()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("node %s: still stopping: %w", name, ctx.Err())
	}
	f.mu.Lock()
	if f.nodes[name] == m {
		delete(f.nodes, name)
	}
	f.mu.Unlock()
	if reason == ownership.ReasonRemoved {
		return f.removeNode(ctx, m)
	}
	return nil
}

// supervise runs the member's node until mctx ends, building it anew (after
// a back-off) whenever an instance stops on its own.
func (f *fleet) supervise(mctx context.Context, fence func() error, m *member, inst *instance) {
	b := vknode.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		err := f.runInstance(inst)
		if mctx.Err() != nil {
			return
		}
		for {
			d := b.Next()
			m.log.WithError(err).WithField("retryIn", d).Error("node stopped: building it anew")
			if !vknode.Sleep(mctx, d) {
				return
			}
			if inst, err = f.build(mctx, fence, m.agent, m.name); err == nil {
				break
			}
		}
		f.install(m, inst)
	}
}

// runInstance runs one instance until it stops, and waits until it has
// freed everything (its port last: the listener is closed by then).
func (f *fleet) runInstance(inst *instance) error {
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		f.whenReady(inst)
	}()
	err := inst.n.Run(inst.ctx)
	inst.cancel()
	<-ready
	f.releasePort(inst.port)
	return err
}

// whenReady waits for the node's registration, which goes on however long
// the API server is away (--startup-timeout only says when to warn), then
// runs the provider's reconciliation sweeps (they need the pod informer
// synced, which a ready node has) until the instance ends.
func (f *fleet) whenReady(inst *instance) {
	log := f.log.WithField("node", inst.n.Name())
	for {
		err := inst.n.WaitReady(inst.ctx, f.o.startupTimeout)
		if err == nil {
			break
		}
		if inst.ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return
		}
		log.WithField("startupTimeout", f.o.startupTimeout).Warn("node not ready yet: still registering")
	}
	log.Info("node ready")
	inst.prov.Reconcile(inst.ctx)
}

// wait waits (at most d) for every node to have stopped after ctx ended.
func (f *fleet) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// discover follows the leading master's agent list.
func (f *fleet) discover(ctx context.Context) error {
	w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{
		Master: f.cfg.Master, Interval: f.cfg.AgentPollInterval.Duration, Logger: f.log.WithField("master", f.cfg.Master),
		Credential: f.o.mesosCred, Role: f.o.mesosRole})
	if err != nil {
		return fmt.Errorf("master %s: %w", f.cfg.Master, err)
	}
	f.mu.Lock()
	f.watcher = w
	f.mu.Unlock()
	updates := w.Subscribe()
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case u := <-updates:
				for _, ev := range u.Events {
					f.apply(ev)
				}
			}
		}
	}()
	return nil
}

// apply keeps the set of known agents and hands it to the manager; the
// manager starts and stops the nodes (Serve, Stop).
func (f *fleet) apply(ev discovery.AgentEvent) {
	a := ev.Agent
	name := nodeName(a.ID)
	log := f.log.WithFields(logrus.Fields{"agent": a.ID, "node": name})
	f.mu.Lock()
	c := f.known[name]
	var prov *provider.Provider
	if m := f.nodes[name]; m != nil {
		prov = m.prov
	}
	changed := false
	switch ev.Type {
	case discovery.AgentAdded, discovery.AgentChanged:
		if c == nil {
			log.Info("agent appeared")
			c = &candidate{agent: provider.AgentConfig{Endpoint: a.Endpoint, NodeName: name}}
			f.known[name], changed = c, true
		}
		c.agentID = a.ID
		c.legacy, c.hasLegacy = agentclient.Resources(a.Legacy), true
		c.reserved, c.polled = a.Reserved, a.Polled
	case discovery.AgentRemoved:
		if c != nil {
			log.Warn("the master declared the agent gone: its pods are lost, its node removed by its owner")
			delete(f.known, name)
			changed = true
		}
	}
	names := f.knownNamesLocked()
	f.mu.Unlock()
	if ev.Type != discovery.AgentRemoved && prov != nil {
		prov.SetLegacyUsage(agentclient.Resources(a.Legacy)) // never blocks on the API server (vknode's status relay)
		prov.ObserveReservation(a.Reserved, a.Polled)
	}
	if changed {
		f.setNodes(names)
	}
}

func (f *fleet) knownNamesLocked() []string {
	names := make([]string, 0, len(f.known))
	for n := range f.known {
		names = append(names, n)
	}
	return names
}

func (f *fleet) setNodes(names []string) {
	if err := f.own.SetNodes(names); err != nil {
		f.log.WithError(err).Error("some agents cannot be served (their node names are invalid)")
	}
}

// takePort holds the lowest free kubelet API port from --listen-port up,
// passing over the metrics port: agents come and go for the life of the
// process, and a port that only grew would one day land on a port in use.
func (f *fleet) takePort() int {
	metrics := -1
	if _, p, err := net.SplitHostPort(f.o.metricsAddr); err == nil {
		metrics, _ = strconv.Atoi(p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	port := f.o.listenPort
	for f.ports[port] || port == metrics {
		port++
	}
	f.ports[port] = true
	return port
}

func (f *fleet) releasePort(port int) {
	f.mu.Lock()
	delete(f.ports, port)
	f.mu.Unlock()
}

// removeNode deletes a gone agent's Node object and takes the bridge's
// finalizer off its pods (the pod garbage collector deletes them with the
// node; nothing of theirs is left on an agent that is gone), retried while
// the API server is away, until ctx (the manager's stop timeout) ends.
func (f *fleet) removeNode(ctx context.Context, m *member) error {
	b := vknode.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		err := f.client.CoreV1().Nodes().Delete(ctx, m.name, metav1.DeleteOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			err = provider.ForgetNode(ctx, f.client.CoreV1(), m.name)
		}
		if err == nil {
			return nil
		}
		d := b.Next()
		m.log.WithError(err).WithField("retryIn", d).Warn("removing the node failed: retrying")
		if !vknode.Sleep(ctx, d) {
			return fmt.Errorf("removing node %s: %w", m.name, err)
		}
	}
}

var invalidName = regexp.MustCompile(`[^a-z0-9.-]+`)

// nodeName turns an agent id into a node name (a DNS subdomain).
func nodeName(agentID string) string {
	n := strings.Trim(invalidName.ReplaceAllString(strings.ToLower(agentID), "-"), "-.")
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}
