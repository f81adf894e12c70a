// Package provider is the virtual-kubelet provider: it turns the pods bound
// to one virtual node into imperative calls on one legacy agent, moving each
// pod container through the statemachine table and pushing every status
// change back (PodNotifier), with no per-pod polling.
//
// One Provider serves one agent and one node. Each pod has a record whose
// mutex serialises everything that happens to it: lifecycle calls from the
// pod controller, WAIT results, timers. Actions that the state machine hands
// back run under that lock, so a pod never sees two events at once and
// deletion cannot race a launch.
package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
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
	Log       *logrus.Entry
}

// Provider implements nodeutil.Provider and node.PodNotifier for one agent.
type Provider struct {
	opts    Options
	agent   *agentclient.Client
	log     *logrus.Entry
	hostIP  string
	backoff time.Duration
	maxBack time.Duration

	mu   sync.RWMutex
	pods map[string]*podRecord // namespace/name

	notifyMu sync.RWMutex
	notify   func(*corev1.Pod)

	waits   *waiter
	health  *health
	probes  *prober
	release *releaser
	launch  *launcher
	usage   usage
	started metav1.Time
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
		pods:    map[string]*podRecord{},
		started: metav1.Now(),
	}
	maxWaits := o.Config.MaxWaits
	if maxWaits == 0 {
		maxWaits = 4096
	}
	p.health = newHealth(p)
	p.waits = newWaiter(p, maxWaits)
	p.probes = newProber(p)
	p.launch = newLauncher(p, o.Config.MaxLaunches)
	if o.PodClient != nil {
		p.release = newReleaser(o.PodClient, p.log)
	}
	states.add(p)
	return p
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func (p *Provider) record(namespace, name string) *podRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.pods[podKey(namespace, name)]
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

// CreatePod admits a pod: it translates it and starts its first containers.
// It is idempotent, as the pod controller may call it again.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	if r := p.record(pod.Namespace, pod.Name); r != nil && r.uid == pod.UID {
		return nil
	}
	rec, err := p.admit(pod)
	if err != nil {
		return err
	}
	if rec.translated && p.launch.running.Load() {
		// The launch runs on the launcher; until it has, GetPod shows the
		// pod waiting (ContainerCreating) but nothing is published, so the
		// first status write is the launch's outcome, as before.
		rec.refreshStatus(p.hostIP)
		rec.unannounced = true
		rec.mu.Unlock()
		p.launch.queue.Add(rec)
		return nil
	}
	p.advance(rec)
	p.finish(rec)
	return nil
}

// admit translates a pod and registers its record, returned locked. A pod
// that can never run is failed here; a transient error (a referenced
// ConfigMap or Secret not there yet) is returned for the pod controller to
// retry with back-off, as the kubelet waits for volumes.
func (p *Provider) admit(pod *corev1.Pod) (*podRecord, error) {
	key := podKey(pod.Namespace, pod.Name)
	launches, annotation, err := translate.PodLaunches(pod, resolver{p.opts.ConfigMaps, p.opts.Secrets})
	if err != nil && !errors.Is(err, translate.ErrInvalidSpec) {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	rec := newPodRecord(pod)
	rec.mu.Lock()
	p.mu.Lock()
	p.pods[key] = rec
	p.mu.Unlock()

	log := p.podLog(rec)
	if err != nil {
		log.WithError(err).Warn("pod cannot be translated")
		rec.reason, rec.message = "InvalidContainerInfo", err.Error()
		for _, c := range rec.ctrs {
			p.step(rec, c, statemachine.Event{Type: statemachine.InvalidSpec, Reason: "InvalidContainerInfo", Message: err.Error()})
		}
		return rec, nil
	}
	// The pod controller writes status with the provider's copy of the pod,
	// metadata included, so the annotation reaches the API with the first
	// status update: no call of its own.
	rec.annotation = annotation
	byName := make(map[string]translate.Launch, len(launches))
	for _, l := range launches {
		byName[l.ContainerName] = l
	}
	for _, c := range rec.ctrs {
		c.launch = byName[c.name]
		c.adoptFrom(pod)
	}
	rec.translated = true
	log.Debug("pod accepted")
	return rec, nil
}

// UpdatePod takes the new spec; the kubelet lets little change on a running
// pod and nothing of it reaches a legacy container that already runs.
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	rec := p.record(pod.Namespace, pod.Name)
	if rec == nil {
		return errdefs.NotFoundf("pod %s/%s is not known to the provider", pod.Namespace, pod.Name)
	}
	rec.mu.Lock()
	rec.pod = pod.DeepCopy()
	rec.mu.Unlock()
	return nil
}

// DeletePod sends SIGTERM to the pod's containers and lets the state machine
// run the grace period; it may be called several times.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	rec := p.record(pod.Namespace, pod.Name)
	if rec != nil && rec.uid == pod.UID {
		rec.mu.Lock()
	} else {
		// A pod deleted while the bridge was down: adopt what it left on
		// the agent so that it is killed, not orphaned.
		var err error
		if rec, err = p.admit(pod); err != nil {
			return err
		}
	}
	rec.pod = pod.DeepCopy()
	rec.deleting = true
	if pod.DeletionGracePeriodSeconds != nil {
		g := time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		rec.grace = &g
	}
	// Every container hears it, finished ones too: their rows remove the
	// sandbox. Containers that cannot act on it now (unreachable agent)
	// get it again from advance once they can.
	for _, c := range rec.ctrs {
		if c.state == statemachine.Accepted && c.adopt {
			continue // advance reconciles it first
		}
		p.step(rec, c, statemachine.Event{Type: statemachine.DeleteRequested})
	}
	p.advance(rec)
	p.finish(rec)
	return nil
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

// finish publishes the record's status if it changed, drops the record once
// the pod is deleted and terminal, and unlocks it. Every path that locked a
// record ends here, so no change goes unannounced.
func (p *Provider) finish(rec *podRecord) {
	changed := rec.refreshStatus(p.hostIP) || rec.unannounced
	rec.unannounced = false
	var pod *corev1.Pod
	if changed {
		pod = rec.podWithStatus()
	}
	done := rec.deleting && rec.terminal() && !rec.released
	rec.released = rec.released || done
	ref := podRef{rec.pod.Namespace, rec.pod.Name, rec.uid}
	rec.mu.Unlock()
	if done {
		p.mu.Lock()
		if p.pods[rec.key] == rec {
			delete(p.pods, rec.key)
		}
		p.mu.Unlock()
		if p.release != nil {
			p.release.queue.Add(ref)
		}
	}
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
