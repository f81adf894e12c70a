package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/provider"
)

// fleet is the set of virtual nodes this process serves: a fixed list of
// agents, or the agents the legacy masters list, one node each, added and
// removed as they come and go.
type fleet struct {
	o      *opts
	cfg    *provider.Config
	client kubernetes.Interface
	log    *logrus.Entry
	errs   chan error

	mu    sync.Mutex
	nodes map[string]*member // by agent id (static: endpoint)
	ports map[int]bool       // kubelet API ports held by running nodes
}

type member struct {
	name   string
	prov   *provider.Provider
	cancel context.CancelFunc
}

// start runs a node for one agent.
func (f *fleet) start(ctx context.Context, key string, a provider.AgentConfig, name string) error {
	port := f.takePort()
	nctx, cancel := context.WithCancel(ctx)
	n, prov, err := newNode(nctx, f.o, f.cfg, f.client, a, name, port, f.log)
	if err != nil {
		cancel()
		f.releasePort(port)
		return fmt.Errorf("node %s (agent %s): %w", name, a.Endpoint, err)
	}
	f.mu.Lock()
	f.nodes[key] = &member{name: name, prov: prov, cancel: cancel}
	f.mu.Unlock()
	go func() {
		err := n.Run(nctx)
		f.releasePort(port) // Run has closed the listener by now
		if err != nil && nctx.Err() == nil {
			select {
			case f.errs <- fmt.Errorf("node %s: %w", name, err):
			default:
			}
		}
	}()
	go func() {
		if err := n.WaitReady(nctx, f.o.startupTimeout); err != nil {
			if nctx.Err() == nil {
				select {
				case f.errs <- fmt.Errorf("node %s not ready: %w", name, err):
				default:
				}
			}
			return
		}
		f.log.WithField("node", name).Info("node ready")
		if err := prov.CleanOrphans(nctx); err != nil {
			f.log.WithError(err).WithField("node", name).Warn("orphan cleanup failed")
		}
	}()
	return nil
}

// discover follows the leading master's agent list.
func (f *fleet) discover(ctx context.Context) error {
	w, err := discovery.NewAgentWatcher(discovery.AgentWatcherConfig{
		Master: f.cfg.Master, Interval: f.cfg.AgentPollInterval.Duration, Logger: f.log.WithField("master", f.cfg.Master)})
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
	f.mu.Unlock()
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
			m.prov.SetLegacyUsage(agentclient.Resources(a.Legacy))
		}
	case discovery.AgentRemoved:
		if m == nil {
			return
		}
		log.WithField("node", m.name).Warn("the master declared the agent gone: its pods are lost, its node removed")
		m.prov.AgentGone("the legacy master lists the agent no more")
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
// time to be written.
func (f *fleet) remove(ctx context.Context, key string, m *member) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(5 * time.Second):
	}
	m.cancel()
	f.mu.Lock()
	if f.nodes[key] == m {
		delete(f.nodes, key)
	}
	f.mu.Unlock()
	if err := f.client.CoreV1().Nodes().Delete(ctx, m.name, metav1.DeleteOptions{}); err != nil {
		f.log.WithError(err).WithField("node", m.name).Warn("deleting the node failed")
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
