// Package provider is the virtual-kubelet provider: it turns the pods bound
// to one virtual node into imperative calls on one legacy agent, moving each
// pod and each of its containers through the statemachine tables and pushing
// every status change back (PodNotifier), with no per-pod polling.
//
// One Provider serves one agent and one node. The design is the kubelet's
// pod workers with etcd raft's Ready loop:
//
//   - Everything that happens to a pod (the pod controller's calls, WAIT
//     answers, timers, agent health, the reconciliation sweep) becomes an
//     item in the pod's inbox. One worker at a time serves a pod (the work
//     queue never hands the same record to two workers), in order.
//   - The worker steps the tables under the record's lock, which is pure
//     and quick, collects the actions they hand back, releases the lock,
//     then performs the agent calls; their results are stepped next, before
//     anything else in the inbox. No agent call runs under a lock.
//   - Records are keyed by pod UID: a same-named successor is another pod.
//   - The status is published once the inbox is drained, so a burst of
//     changes is one write.
//
// Invariants: every state in which a container may run has, on deletion, a
// path through KILL and REMOVE (statemachine's TestDeleteKills); a container
// the agent holds without a live record for its run is killed and removed
// by the sweep (sweep.go), which repeats; adoption needs only the agent's
// answer and the pod object.
//
// Lock order: Provider.mu, then podRecord.mu, then the waiter's, health's
// and the reserver's own locks; none is held across an agent, master or
// API call.
package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/reservation"
	"github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// Options wire a Provider.
type Options struct {
	NodeName string
	Agent    AgentConfig
	Config   *Config
	Client   *agentclient.Client
	Recorder record.EventRecorder
	// Pods, ConfigMaps and Secrets are the node's informer listers.
	Pods       corev1listers.PodLister
	ConfigMaps corev1listers.ConfigMapLister
	Secrets    corev1listers.SecretLister
	// PodClient removes a deleted pod once its containers have stopped; nil
	// leaves that to the pod controller's delayed deletion.
	PodClient corev1client.PodsGetter
	// Fence, when set, says whether this replica may still act for the
	// node (its ownership lease): nil, or the error every agent call and
	// release is refused with once it may not. The node is being stopped
	// then; nothing is retried.
	Fence func() error
	// Eviction are the thresholds of the node's pressure conditions
	// (--eviction-hard). The zero value has none: every pressure condition
	// is False and the agent's figures are never asked for.
	Eviction Thresholds
	Log      *logrus.Entry
}

// Provider implements nodeutil.Provider and node.PodNotifier for one agent.
type Provider struct {
	opts    Options
	agent   *agentclient.Client
	log     *logrus.Entry
	hostIP  string
	backoff time.Duration
	maxBack time.Duration

	mu     sync.RWMutex
	pods   map[types.UID]*podRecord
	byName map[string]*podRecord // namespace/name → the newest pod of that name

	notifyMu sync.RWMutex
	notify   func(*corev1.Pod)

	// ctx is Start's: every goroutine and call of the provider ends with it.
	ctx     context.Context
	work    *workers
	waits   *waiter
	health  *health
	probes  *prober
	release *releaser
	sweep   *sweeper
	// reserver keeps the pods' room reserved on the agent; nil: no
	// reservations (room.go).
	reserver *reservation.Reserver
	usage    usage
	started  metav1.Time
}

// New builds a provider; Start must run before pods arrive.
func New(o Options) *Provider {
	p := &Provider{
		opts:    o,
		agent:   o.Client,
		log:     o.Log.WithField("agent", o.Client.Endpoint()),
		hostIP:  o.Agent.address(),
		backoff: o.Config.Timeouts.RestartBackoff.or(10 * time.Second),
		maxBack: o.Config.Timeouts.MaxBackoff.or(5 * time.Minute),
		pods:    map[types.UID]*podRecord{},
		byName:  map[string]*podRecord{},
		started: metav1.Now(),
		ctx:     context.Background(),
	}
	maxWaits := o.Config.MaxWaits
	if maxWaits == 0 {
		maxWaits = 4096
	}
	p.health = newHealth(p)
	p.waits = newWaiter(p, maxWaits)
	p.probes = newProber(p)
	p.work = newWorkers(p, o.Config.MaxLaunches)
	p.sweep = newSweeper(p)
	if o.PodClient != nil {
		p.release = newReleaser(o.PodClient, p.log)
	}
	states.add(p)
	return p
}

func podKey(namespace, name string) string { return namespace + "/" + name }

// record is the newest pod of that name the provider knows.
func (p *Provider) record(namespace, name string) *podRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.byName[podKey(namespace, name)]
}

func (p *Provider) recordOf(uid types.UID) *podRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.pods[uid]
}

func (p *Provider) records() []*podRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*podRecord, 0, len(p.pods))
	for _, r := range p.pods {
		out = append(out, r)
	}
	return out
}

// CreatePod admits a pod and hands it to its worker, which starts its
// containers (or adopts what ran before). It is idempotent, as the pod
// controller may call it again.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	if p.recordOf(pod.UID) != nil {
		return nil
	}
	rec, ev, err := p.admit(pod, false)
	if err != nil || ev == "" {
		return err
	}
	p.enqueue(rec, item{pod: ev})
	return nil
}

// admit translates a pod and registers its record. A pod that can never run
// is marked invalid; a transient error (a referenced ConfigMap or Secret not
// there yet) is returned for the pod controller to retry with back-off, as
// the kubelet waits for volumes, unless nothing has to be launched now: a
// pod that ran before (adopted from the agent's answer alone) or one being
// deleted needs no translation, and its launches translate when due.
// Admission races (the pod controller and the deletion watcher): the record
// registered first wins, and the loser gets it back with no event ("").
func (p *Provider) admit(pod *corev1.Pod, deleting bool) (*podRecord, statemachine.PodEventType, error) {
	rec := newPodRecord(pod)
	ran := false
	for _, c := range rec.ctrs {
		newest, live, _ := p.health.newestRun(pod.UID, c.name)
		if !live {
			newest = -1
		}
		c.adoptFrom(pod, newest)
		ran = ran || c.ran
	}
	ev := statemachine.PodCreate
	if ran {
		ev = statemachine.PodAdopt
		rec.launched.Store(true) // its launch was another process's
	}
	launches, annotation, err := translate.PodLaunches(pod, resolver{p.opts.ConfigMaps, p.opts.Secrets})
	log := p.podLog(rec)
	switch {
	case err == nil:
		// The pod controller writes status with the provider's copy of the
		// pod, metadata included, so the annotation reaches the API with the
		// first status update: no call of its own.
		rec.annotation = annotation
		byName := make(map[string]*translate.Launch, len(launches))
		for i := range launches {
			byName[launches[i].ContainerName] = &launches[i]
		}
		for _, c := range rec.ctrs {
			c.launch = byName[c.name]
		}
	case errors.Is(err, translate.ErrInvalidSpec) && !ran:
		log.WithError(err).Warn("pod cannot be translated")
		rec.reason, rec.message = "InvalidContainerInfo", err.Error()
		ev = statemachine.PodInvalid
	case !ran && !deleting:
		return nil, "", fmt.Errorf("pod %s: %w", rec.key, err)
	default:
		log.WithError(err).Info("pod not translated; adopting it from the agent's answer")
	}
	p.mu.Lock()
	if first := p.pods[rec.uid]; first != nil {
		p.mu.Unlock()
		return first, "", nil
	}
	p.pods[rec.uid] = rec
	p.byName[rec.key] = rec
	p.mu.Unlock()
	log.WithField("event", ev).Debug("pod accepted")
	return rec, ev, nil
}

// UpdatePod takes the new spec; the kubelet lets little change on a running
// pod and nothing of it reaches a legacy container that already runs.
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	rec := p.recordOf(pod.UID)
	if rec == nil {
		return errdefs.NotFoundf("pod %s/%s is not known to the provider", pod.Namespace, pod.Name)
	}
	rec.mu.Lock()
	rec.pod = pod.DeepCopy()
	rec.mu.Unlock()
	return nil
}

// DeletePod hands the deletion to the pod's worker: SIGTERM, the grace
// period, SIGKILL, REMOVE, as the tables say. It may be called several
// times; a pod deleted while the bridge was down is admitted first, so what
// it left on the agent is killed, not orphaned.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	rec := p.recordOf(pod.UID)
	if rec == nil {
		var err error
		if rec, _, err = p.admit(pod, true); err != nil {
			return err
		}
	}
	rec.mu.Lock()
	if rec.state == statemachine.PodReleased {
		rec.mu.Unlock()
		return nil // already done: a late call
	}
	rec.pod = pod.DeepCopy()
	if pod.DeletionGracePeriodSeconds != nil {
		g := time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		rec.grace = &g
	}
	rec.mu.Unlock()
	p.enqueue(rec, item{pod: statemachine.PodDelete})
	return nil
}

// PodDeleting (vknode.DeletionWatcher) starts the deletion of a pod that
// virtual-kubelet will not hand over: one that stopped running before it was
// deleted, which virtual-kubelet deletes from the API itself. Only a pod with
// the bridge's finalizer waits for it; a pod the bridge never marked (from an
// earlier version) is the sweep's when it leaves the API.
func (p *Provider) PodDeleting(pod *corev1.Pod) {
	if !slices.Contains(pod.Finalizers, Finalizer) {
		return
	}
	if rec := p.recordOf(pod.UID); rec != nil {
		rec.mu.Lock()
		st := rec.state
		rec.mu.Unlock()
		if st == statemachine.PodTerminating || st == statemachine.PodReleased {
			return
		}
	}
	if err := p.DeletePod(p.ctx, pod); err != nil {
		p.log.WithError(err).WithField("pod", podKey(pod.Namespace, pod.Name)).Warn("deleting the pod failed")
	}
}

// GetPod returns the pod with its current status.
func (p *Provider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	rec := p.record(namespace, name)
	if rec == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not known to the provider", namespace, name)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.podWithStatus(), nil
}

// GetPodStatus returns the pod's current status.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods lists every pod the provider runs.
func (p *Provider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	recs := p.records()
	out := make([]*corev1.Pod, 0, len(recs))
	for _, rec := range recs {
		rec.mu.Lock()
		out = append(out, rec.podWithStatus())
		rec.mu.Unlock()
	}
	return out, nil
}

// NotifyPods registers the status callback (node.PodNotifier).
func (p *Provider) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	p.notifyMu.Lock()
	p.notify = cb
	p.notifyMu.Unlock()
}

// publish hands the pod's status to the pod controller if anything a client
// could see changed. rec.mu is held; the callback runs after it is released.
func (p *Provider) publishLocked(rec *podRecord) *corev1.Pod {
	// A pod waiting for its room shows nothing new until it has it or is
	// refused (the kubelet writes no status before admission): a write
	// for the wait would be followed at once by the launch's, on a
	// resourceVersion the pod controller's cache may not have yet.
	if rec.state == statemachine.PodReserving && rec.reason == "" {
		return nil
	}
	if !rec.refreshStatus(p.hostIP) {
		return nil
	}
	return rec.podWithStatus()
}

func (p *Provider) notifyPod(pod *corev1.Pod) {
	if pod == nil {
		return
	}
	p.notifyMu.RLock()
	cb := p.notify
	p.notifyMu.RUnlock()
	if cb != nil {
		cb(pod)
	}
}

// dropRecord forgets a released pod; a successor of the same name keeps its
// own entry.
func (p *Provider) dropRecord(rec *podRecord) {
	p.mu.Lock()
	if p.pods[rec.uid] == rec {
		delete(p.pods, rec.uid)
	}
	if p.byName[rec.key] == rec {
		delete(p.byName, rec.key)
	}
	p.mu.Unlock()
}

func (p *Provider) podLog(rec *podRecord) *logrus.Entry {
	return p.log.WithField("pod", rec.key)
}

// resolver reads what volumes reference from the node's informer caches.
type resolver struct {
	cms     corev1listers.ConfigMapLister
	secrets corev1listers.SecretLister
}

func (r resolver) ConfigMap(namespace, name string) (map[string][]byte, error) {
	cm, err := r.cms.ConfigMaps(namespace).Get(name)
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", namespace, name, err)
	}
	out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out, nil
}

func (r resolver) Secret(namespace, name string) (map[string][]byte, error) {
	s, err := r.secrets.Secrets(namespace).Get(name)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
	}
	return s.Data, nil
}
