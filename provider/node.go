package provider

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// KubeletVersion is what the node reports as its kubelet version.
const KubeletVersion = "v1.35.4-vk-titus"

// health follows the agent's health and owns the node's status: Ready is the
// agent answering. The bridge itself answering is what Ping (the lease)
// reports, so a dead agent shows as NotReady at once instead of the node
// going Unknown when its heartbeat stops. The pressure conditions come from
// the agent's figures (GET_METRICS), read with each health check while the
// agent answers and thresholds are set (Options.Eviction; pressure.go).
type health struct {
	p *Provider

	mu     sync.Mutex
	up     bool
	upCh   chan struct{} // closed while the agent answers
	live   *liveSet      // the agent's containers as last listed; nil: not listed since it came into view
	info   agentclient.Info
	figs   figures               // the agent's figures as last read
	legacy agentclient.Resources // held by the legacy platform's own tasks
	since  time.Time             // when the agent stopped answering
	// refused: the agent answers but refuses the bridge's credentials. It
	// is there, so its containers are not lost: NotReady, no gone clock.
	refused error
	gone    bool
	node    *corev1.Node
	notify  func(*corev1.Node)
	kick    chan struct{}
}

func newHealth(p *Provider) *health {
	return &health{p: p, upCh: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// Ping is the node's heartbeat: the bridge process is alive.
func (p *Provider) Ping(ctx context.Context) error { return ctx.Err() }

// NotifyNodeStatus registers the node status callback (node.NodeProvider).
func (p *Provider) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	p.health.mu.Lock()
	p.health.notify = cb
	p.health.mu.Unlock()
}

// ConfigureNode fills the node spec nodeutil registers: labels, addresses,
// the kubelet endpoint, capacity from the agent. Call after Start. nodeIP is
// where the API server reaches this process's kubelet API, which is not the
// agent's address: pods get that one.
func (p *Provider) ConfigureNode(node *corev1.Node, nodeIP string, kubeletPort int32, os string) {
	h := p.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels["type"] = "virtual-kubelet"
	node.Labels["kubernetes.io/role"] = "agent"
	node.Labels[corev1.LabelOSStable] = strings.ToLower(os)
	node.Labels[corev1.LabelArchStable] = runtime.GOARCH
	node.Labels[corev1.LabelHostname] = node.Name
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: nodeIP},
		{Type: corev1.NodeHostName, Address: node.Name},
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = kubeletPort
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		OperatingSystem: strings.ToLower(os), Architecture: runtime.GOARCH,
		KubeletVersion: KubeletVersion, ContainerRuntimeVersion: "mesos://" + p.agent.Endpoint(),
		MachineID: h.info.ID, SystemUUID: h.info.ID,
	}
	// The provider keeps its own copy: the caller registers its node
	// without taking h.mu.
	h.node = node.DeepCopy()
	h.applyInfo()
	h.applyReady()
	h.node.DeepCopyInto(node)
}

// applyInfo sets capacity and attribute labels from the agent (h.mu held).
func (h *health) applyInfo() {
	if h.node == nil {
		return
	}
	cfg := h.p.opts.Config
	res := h.info.Resources
	cpu := resource.NewMilliQuantity(int64(res.CPUs*1000), resource.DecimalSI)
	mem := resource.NewQuantity(int64(res.MemMB)*1024*1024, resource.BinarySI)
	if o := cfg.Resources; o != nil {
		if o.CPU != "" {
			q := resource.MustParse(o.CPU)
			cpu = &q
		}
		if o.Memory != "" {
			q := resource.MustParse(o.Memory)
			mem = &q
		}
	}
	pods := cfg.MaxPods
	if pods == 0 {
		pods = 10000
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *cpu,
		corev1.ResourceMemory:           *mem,
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(res.DiskMB)*1024*1024, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	if res.GPUs > 0 {
		capacity["nvidia.com/gpu"] = *resource.NewQuantity(int64(res.GPUs), resource.DecimalSI)
	}
	h.node.Status.Capacity = capacity
	// What the legacy world's own tasks hold on a shared agent is not the
	// scheduler's to give away.
	allocatable := capacity.DeepCopy()
	for name, used := range map[corev1.ResourceName]*resource.Quantity{
		corev1.ResourceCPU:    resource.NewMilliQuantity(int64(h.legacy.CPUs*1000), resource.DecimalSI),
		corev1.ResourceMemory: resource.NewQuantity(int64(h.legacy.MemMB)*1024*1024, resource.BinarySI),
	} {
		q := allocatable[name]
		q.Sub(*used)
		if q.Sign() < 0 {
			q = resource.Quantity{}
		}
		allocatable[name] = q
	}
	h.node.Status.Allocatable = allocatable
	for k, v := range h.info.Attributes {
		h.node.Labels[translate.AttributeLabelPrefix+k] = v
	}
}

// applyReady sets the node conditions from the agent's health and figures
// (h.mu held). It reports whether a condition's status, reason or message
// changed: the node's status is worth writing then.
func (h *health) applyReady() bool {
	if h.node == nil {
		return false
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "legacy agent " + h.p.agent.Endpoint() + " is answering", LastHeartbeatTime: now, LastTransitionTime: now}
	switch {
	case h.refused != nil:
		ready.Status, ready.Reason = corev1.ConditionFalse, "AgentUnauthorized"
		ready.Message = h.refused.Error()
	case !h.up:
		ready.Status, ready.Reason = corev1.ConditionFalse, "AgentUnreachable"
		ready.Message = "legacy agent " + h.p.agent.Endpoint() + " does not answer"
	}
	// Figures of an agent that does not answer are not at hand, whatever
	// was read last.
	figs := h.figs
	switch {
	case h.refused != nil:
		figs = figures{err: h.refused}
	case !h.up:
		figs = figures{err: errors.New(ready.Message)}
	}
	conds := append([]corev1.NodeCondition{ready}, pressureConditionsFor(h.p.opts.Eviction, figs)...)
	// The kubelet leaves NetworkUnavailable to the network plugin; here the
	// containers share the agent's host network, which is there whenever
	// the agent is.
	conds = append(conds, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "AgentHostNetwork", Message: "containers run on the legacy agent's host network"})
	changed := false
	for i := range conds {
		c := &conds[i]
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		var old *corev1.NodeCondition
		for j := range h.node.Status.Conditions {
			if h.node.Status.Conditions[j].Type == c.Type {
				old = &h.node.Status.Conditions[j]
			}
		}
		if old != nil && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		}
		if old == nil || old.Status != c.Status || old.Reason != c.Reason || old.Message != c.Message {
			changed = true
			if h.up { // an agent away is logged as such, once
				h.logPressure(old, c, figs)
			}
		}
	}
	h.node.Status.Conditions = conds
	h.node.Status.Phase = corev1.NodeRunning
	return changed
}

// logPressure logs a pressure condition that changed, with the figures it
// was read from; the first one of a node only when it is not False.
func (h *health) logPressure(old, c *corev1.NodeCondition, figs figures) {
	switch c.Type {
	case corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure:
	default:
		return
	}
	if old == nil && c.Status == corev1.ConditionFalse {
		return
	}
	log := h.p.log.WithFields(figs.logFields()).WithFields(logrus.Fields{
		"condition": c.Type, "status": c.Status, "reason": c.Reason, "message": c.Message})
	if c.Status == corev1.ConditionFalse {
		log.Info("node condition changed")
	} else {
		log.Warn("node condition changed")
	}
}

// Start asks the agent who it is and what runs on it, before the node is
// registered and the pod controller hands over pods, so that pods already
// running are adopted instead of launched. An agent that does not answer
// yet leaves the node NotReady until it does.
func (p *Provider) Start(ctx context.Context) {
	p.ctx = ctx
	h := p.health
	if err := h.check(ctx); err != nil {
		p.log.WithError(err).Warn("agent not answering at start; node stays NotReady until it does")
	}
	go h.run(ctx)
	go p.probes.run(ctx)
	go p.work.run(ctx)
	p.runReserver(ctx)
	if p.release != nil {
		go p.release.run(ctx)
	}
	go func() {
		<-ctx.Done()
		unregister(p) // the agent was removed: its series go with it
	}()
}

// check asks the agent; it returns nil when it answered.
func (h *health) check(ctx context.Context) error {
	err := h.p.agent.Health(ctx)
	var info agentclient.Info
	var live *liveSet
	var listErr error
	if err == nil {
		info, err = h.p.agent.Agent(ctx)
	}
	var figs figures
	if err == nil && !h.p.opts.Eviction.Empty() {
		// One GET_METRICS per check, only while the agent answers: its
		// failure leaves the pressure conditions Unknown, never Ready.
		figs.values, figs.err = h.p.agent.Metrics(ctx)
	}
	h.mu.Lock()
	relist := !h.up || h.live == nil
	h.mu.Unlock()
	if err == nil && relist {
		// The live set is read when the agent comes (back) into view, for
		// the reconciliation that follows; afterwards WAITs and the overflow
		// sweep keep it current, so a steady agent is not listed (10,000
		// containers) at every health check.
		//
		// A busy agent with thousands of containers can be slow to list
		// them; that is not the agent being away. Only GET_HEALTH and
		// GET_AGENT decide reachability (and so, in time, agent-gone, which
		// loses every pod): the last live set stands until a listing works.
		if live, listErr = h.listLive(ctx); listErr != nil {
			h.p.log.WithError(listErr).Warn("agent answers but could not list its containers: keeping the last list")
		}
	}
	h.mu.Lock()
	was := h.up
	h.up = err == nil
	refused := errors.Is(err, agentclient.ErrUnauthorized)
	if refused && h.refused == nil {
		h.p.log.WithError(err).Error("the agent refuses the bridge's credentials: the node stays NotReady until they are fixed")
	}
	h.refused = nil
	if refused {
		h.refused = err
	}
	goneNow := false
	switch {
	case h.up, refused:
		h.since = time.Time{}
	case h.since.IsZero():
		h.since = time.Now()
	case !h.gone && time.Since(h.since) > h.p.opts.Config.Timeouts.AgentGone.or(5*time.Minute):
		goneNow = true
	}
	if h.up {
		h.info = info
		h.figs = figs
		if relist && listErr == nil {
			h.live = live
		}
		if !was {
			close(h.upCh)
		}
		h.applyInfo()
	} else if was {
		h.upCh = make(chan struct{})
		h.live = nil // what it held is unknown until it answers again
	}
	changed := was != h.up
	var node *corev1.Node
	if h.applyReady() {
		node = h.node.DeepCopy()
	}
	cb := h.notify
	listed := h.up && relist && listErr == nil
	h.mu.Unlock()
	if goneNow {
		h.p.AgentGone(fmt.Sprintf("unreachable since %s", h.since.Format(time.RFC3339)))
	}
	if listed {
		// A fresh list: what waits for the agent's answer (adoption,
		// reconciliation) can be decided now, and the sweep looks for
		// containers without a pod (those of lost or deleted pods).
		h.p.sweep.again()
		if !changed {
			h.p.broadcast(sm.Event{Type: sm.AgentBack})
		}
	}
	if !changed {
		if node != nil && cb != nil {
			cb(node) // the NotReady reason or a pressure condition changed
		}
		return err
	}
	ev, reason, typ := sm.AgentBack, "NodeReady", corev1.EventTypeNormal
	if err != nil {
		ev, reason, typ = sm.AgentUnreachable, "NodeNotReady", corev1.EventTypeWarning
		h.p.log.WithError(err).Warn("agent unreachable")
	} else {
		h.p.log.Info("agent answering")
	}
	if r := h.p.opts.Recorder; r != nil {
		// The kubelet's own node reference: events attach to the node by name.
		ref := &corev1.ObjectReference{Kind: "Node", Name: h.p.opts.NodeName, UID: types.UID(h.p.opts.NodeName)}
		r.Eventf(ref, typ, reason, "Node %s status is now: %s (legacy agent %s)", h.p.opts.NodeName, reason, h.p.agent.Endpoint())
	}
	if node != nil && cb != nil {
		cb(node)
	}
	h.p.broadcast(sm.Event{Type: ev})
	return err
}

func (h *health) run(ctx context.Context) {
	interval := h.p.opts.Config.Timeouts.HealthInterval.or(5 * time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.kick:
		}
		_ = h.check(ctx)
	}
}

// suspect asks for a health check now (a call just failed).
func (h *health) suspect() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// waitUp blocks until the agent answers or ctx ends.
func (h *health) waitUp(ctx context.Context) bool {
	h.mu.Lock()
	ch := h.upCh
	h.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// liveSet is the agent's container list: the ids, and for each pod UID the
// rest of its containers' ids (container name, -r<N> for later runs).
type liveSet struct {
	ids   map[string]bool
	byUID map[types.UID][]string
}

func newLiveSet(ids []string) *liveSet {
	l := &liveSet{ids: make(map[string]bool, len(ids)), byUID: map[types.UID][]string{}}
	for _, id := range ids {
		l.ids[id] = true
		if uid, rest, ok := translate.ParseContainerID(id); ok {
			l.byUID[uid] = append(l.byUID[uid], rest)
		}
	}
	return l
}

// newest is the newest live run of the pod's container name.
func (l *liveSet) newest(uid types.UID, name string) (int32, bool) {
	best, found := int32(-1), false
	for _, rest := range l.byUID[uid] {
		run := int32(0)
		if rest != name {
			n, ok := strings.CutPrefix(rest, name+"-r")
			if !ok {
				continue
			}
			r, err := strconv.ParseInt(n, 10, 32)
			if err != nil || r < 1 {
				continue
			}
			run = int32(r)
		}
		if run > best {
			best, found = run, true
		}
	}
	return best, found
}

// newestRun is the newest run of a pod's container the agent lists as live;
// known is false while there is no current list (the agent away).
func (h *health) newestRun(uid types.UID, name string) (run int32, live, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.live == nil || !h.up {
		return -1, false, false
	}
	run, live = h.live.newest(uid, name)
	return run, live, true
}

func (h *health) listLive(ctx context.Context) (*liveSet, error) {
	list, err := h.p.agent.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return newLiveSet(ids), nil
}

// refreshLive re-reads the live set (one GET_CONTAINERS for the overflow
// sweep or the reconciliation sweep).
func (h *health) refreshLive(ctx context.Context) (map[string]bool, error) {
	live, err := h.listLive(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.live = live
	h.mu.Unlock()
	return live.ids, nil
}

// SetLegacyUsage tells the node what the legacy platform's own tasks hold on
// the agent (from the master): allocatable shrinks by it. When it drops,
// pods waiting for room may get it: the reserver tries again.
func (p *Provider) SetLegacyUsage(r agentclient.Resources) {
	h := p.health
	h.mu.Lock()
	if h.legacy == r {
		h.mu.Unlock()
		return
	}
	dropped := r.CPUs < h.legacy.CPUs || r.MemMB < h.legacy.MemMB || r.DiskMB < h.legacy.DiskMB || r.GPUs < h.legacy.GPUs
	if dropped && p.reserver != nil {
		p.reserver.Kick()
	}
	h.legacy = r
	h.applyInfo()
	var node *corev1.Node
	if h.node != nil {
		node = h.node.DeepCopy()
	}
	cb := h.notify
	h.mu.Unlock()
	if node != nil && cb != nil {
		cb(node)
	}
}

// AgentGone ends every pod container on the agent as lost (NodeLost): the
// master declared the agent gone, or it stayed unreachable past the
// timeout. It happens once.
func (p *Provider) AgentGone(reason string) {
	p.health.mu.Lock()
	already := p.health.gone
	p.health.gone = true
	p.health.mu.Unlock()
	if already {
		return
	}
	p.log.WithField("reason", reason).Warn("agent gone: its pods are lost")
	p.broadcast(sm.Event{Type: sm.AgentGone, Message: reason})
}

// Gone reports whether the agent has been declared gone.
func (p *Provider) Gone() bool {
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	return p.health.gone
}
