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
	"github.com/vk-titus/vk-titus/provider"
	"github.com/vk-titus/vk-titus/vknode"
)

// fleet is the set of virtual nodes this process serves: a fixed list of
// agents, or the agents the legacy masters list, one node each, added and
// removed as they come and go.
//
// Nothing a node does at run time stops the process or another node: the
// API server being away is retried inside vknode (registration, status,
// informers), and a node whose pod controller stopped is built anew after a
// back-off (supervise). Only configuration errors at startup (a static
// agent's node that cannot be built) make run return.
//
// Lock rule: mu guards nodes, ports and each member's prov and legacy; it is
// never held while calling into a provider or the API server.
type fleet struct {
	o      *opts
	cfg    *provider.Config
	client kubernetes.Interface
	shared *vknode.Shared
	tls    *tls.Config // kubelet API; nil: not served
	log    *logrus.Entry
	wg     sync.WaitGroup // supervise goroutines

	mu    sync.Mutex
	nodes map[string]*member // by agent id (static: endpoint)
	ports map[int]bool       // kubelet API ports held by running nodes
}

type member struct {
	name   string
	agent  provider.AgentConfig
	log    *logrus.Entry
	cancel context.CancelFunc // ends the member: every instance of its node
	done   chan struct{}      // closed once all its node started has stopped

	// under fleet.mu: the running instance's provider (it changes when the
	// node is built anew) and the legacy usage the master last reported,
	// which a new provider is told.
	prov      *provider.Provider
	legacy    agentclient.Resources
	hasLegacy bool
	// Also under fleet.mu: the master declared the agent gone and its node
	// is being removed; readd is the agent if it came back meanwhile (its
	// new node starts once the old one is gone: two nodes of one name would
	// fight over its pods).
	removing bool
	readd    *discovery.Agent
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

// build makes an instance of a node under ctx.
func (f *fleet) build(ctx context.Context, a provider.AgentConfig, name string) (*instance, error) {
	port := f.takePort()
	ictx, cancel := context.WithCancel(ctx)
	n, prov, err := newNode(ictx, f.o, f.cfg, f.client, f.shared, f.tls, a, name, port, f.log)
	if err != nil {
		cancel()
		f.releasePort(port)
		return nil, fmt.Errorf("node %s (agent %s): %w", name, a.Endpoint, err)
	}
	return &instance{n: n, prov: prov, port: port, ctx: ictx, cancel: cancel}, nil
}

// start runs a node for one agent. Its error is the node's configuration
// (nothing here waits for the API server).
func (f *fleet) start(ctx context.Context, key string, a provider.AgentConfig, name string) error {
	mctx, cancel := context.WithCancel(ctx)
	inst, err := f.build(mctx, a, name)
	if err != nil {
		cancel()
		return err
	}
	m := &member{name: name, agent: a, cancel: cancel, done: make(chan struct{}), prov: inst.prov,
		log: f.log.WithFields(logrus.Fields{"node": name, "agent": a.Endpoint})}
	f.mu.Lock()
	f.nodes[key] = m
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(m.done)
		f.supervise(mctx, m, inst)
	}()
	return nil
}

// supervise runs the member's node until mctx ends, building it anew (after
// a back-off) whenever an instance stops on its own.
func (f *fleet) supervise(mctx context.Context, m *member, inst *instance) {
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
			if inst, err = f.build(mctx, m.agent, m.name); err == nil {
				break
			}
		}
		f.mu.Lock()
		m.prov = inst.prov
		legacy, has := m.legacy, m.hasLegacy
		f.mu.Unlock()
		if has {
			inst.prov.SetLegacyUsage(legacy)
		}
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
		Credential: f.o.mesosCred})
	if err != nil {
		return fmt.Errorf("master %s: %w", f.cfg.Master, err)
	}
	updates := w.Subscribe()
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case u := <-updates:
				for _, ev := range u.Events {
					f.apply(ctx, ev)
				}
			}
		}
	}()
	return nil
}

func (f *fleet) apply(ctx context.Context, ev discovery.AgentEvent) {
	a := ev.Agent
	log := f.log.WithField("agent", a.ID)
	f.mu.Lock()
	m := f.nodes[a.ID]
	removing := m != nil && m.removing
	if removing && ev.Type != discovery.AgentRemoved {
		m.readd = &a // its node is added anew once the old one is gone
	}
	f.mu.Unlock()
	if removing {
		return
	}
	switch ev.Type {
	case discovery.AgentAdded:
		if m != nil {
			return
		}
		name := nodeName(a.ID)
		log.WithField("node", name).Info("agent appeared: adding its node")
		if err := f.start(ctx, a.ID, provider.AgentConfig{Endpoint: a.Endpoint, NodeName: name}, name); err != nil {
			log.WithError(err).Error("adding node failed")
			return
		}
		f.apply(ctx, discovery.AgentEvent{Type: discovery.AgentChanged, Agent: a})
	case discovery.AgentChanged:
		if m != nil {
			r := agentclient.Resources(a.Legacy)
			f.mu.Lock()
			m.legacy, m.hasLegacy = r, true
			prov := m.prov
			f.mu.Unlock()
			prov.SetLegacyUsage(r) // never blocks on the API server (vknode's status relay)
		}
	case discovery.AgentRemoved:
		if m == nil {
			return
		}
		log.WithField("node", m.name).Warn("the master declared the agent gone: its pods are lost, its node removed")
		f.mu.Lock()
		prov := m.prov
		m.removing = true
		f.mu.Unlock()
		prov.AgentGone("the legacy master lists the agent no more")
		go f.remove(ctx, a.ID, m)
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

// remove deletes a gone agent's node once its pods' NodeLost statuses had
// time to be written. Cancelling the member stops everything its node
// started (waited for); the Node object is then deleted and the finalizers
// of its pods taken off, retried while the
// API server is away (a node left behind would look like a NotReady agent
// forever). An agent that came back meanwhile is then added anew.
func (f *fleet) remove(ctx context.Context, key string, m *member) {
	if !vknode.Sleep(ctx, 5*time.Second) {
		return
	}
	m.cancel()
	<-m.done
	b := vknode.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		err := f.client.CoreV1().Nodes().Delete(ctx, m.name, metav1.DeleteOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			// Its pods go with it (the pod garbage collector deletes
			// them): nothing of theirs is left to remove on an agent that
			// is gone, so the bridge's finalizer must not hold them.
			err = provider.ForgetNode(ctx, f.client.CoreV1(), m.name)
		}
		if err == nil {
			break
		}
		d := b.Next()
		m.log.WithError(err).WithField("retryIn", d).Warn("removing the node failed: retrying")
		if !vknode.Sleep(ctx, d) {
			return
		}
	}
	f.mu.Lock()
	if f.nodes[key] == m {
		delete(f.nodes, key)
	}
	readd := m.readd
	f.mu.Unlock()
	if readd != nil {
		m.log.Info("the agent came back while its node was being removed: adding it anew")
		f.apply(ctx, discovery.AgentEvent{Type: discovery.AgentAdded, Agent: *readd})
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
