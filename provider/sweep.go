package provider

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// sweeper is the reconciliation that repeats: one GET_CONTAINERS per pass
// (every Timeouts.Reconcile, and whenever the agent comes back into view)
// compared with the records and the node's pods. It finds
//   - containers without a pod: a pod deleted while the bridge was down, a
//     lost pod whose container the agent still runs, a run older than its
//     container's current one; they are killed (SIGKILL: their pod's grace
//     is over or it has none) and removed;
//   - pods without a container: a followed run the agent no longer lists is
//     asked with a WAIT, which answers at once;
//   - sandboxes a REMOVE could not reach (the agent away): tried again;
//   - pods that left the API without a DeletePod (virtual-kubelet deletes
//     a pod that stopped running itself): their records are deleted and
//     their containers removed;
//   - stuck states: containers waiting to be reconciled, or marked
//     disconnected by a failed call while the agent answers, are asked again.
//
// A pass reads the records under their locks one at a time and calls the
// agent with none held.
type sweeper struct {
	p    *Provider
	kick chan struct{}

	mu       sync.Mutex
	removals map[string]int         // REMOVEs to try again → passes tried
	finished map[types.UID][]string // finished pods without a record → their runs
}

const defaultReconcileInterval = time.Minute

var orphansKilled = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "vktitus", Name: "orphans_killed_total",
	Help: "Containers found on an agent without a pod that owns them, killed and removed by the sweep.",
})

func init() { Registry.MustRegister(orphansKilled) }

func newSweeper(p *Provider) *sweeper {
	return &sweeper{p: p, kick: make(chan struct{}, 1), removals: map[string]int{}, finished: map[types.UID][]string{}}
}

// again asks for a pass now (the agent came back into view).
func (s *sweeper) again() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Reconcile sweeps now and then repeatedly until ctx ends. Call it once the
// node's pod informer has synced (the node is ready): a pod not yet seen
// would be taken for gone, and its container for an orphan.
func (p *Provider) Reconcile(ctx context.Context) {
	interval := p.opts.Config.Timeouts.Reconcile.or(defaultReconcileInterval)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.sweep.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		if err := p.sweep.pass(ctx); err != nil {
			p.log.WithError(err).Warn("reconciliation sweep: the agent did not list its containers")
		}
		t.Reset(interval)
	}
}

func (s *sweeper) pass(ctx context.Context) error {
	p := s.p
	if err := p.fenced(); err != nil {
		return err // another replica may own the node by now
	}
	live, err := p.health.refreshLive(ctx)
	if err != nil {
		return err
	}
	// Runs the records own: the current run of every container that has
	// not ended. Followed runs the agent no longer lists are asked again.
	owned := map[string]bool{}
	recs := p.records()
	for _, rec := range recs {
		var again []item
		rec.mu.Lock()
		for _, c := range rec.ctrs {
			id := c.runID(rec.uid)
			if !sm.InfoOf(c.state).Terminal {
				owned[id] = true
			}
			switch c.state {
			case sm.Starting, sm.Running, sm.Restarting, sm.Killing:
				if !live[id] {
					p.waits.watch(rec, c, id)
				}
			case sm.Reconciling, sm.Disconnected:
				// The agent just listed its containers: it answers.
				again = append(again, item{c: c, ev: sm.Event{Type: sm.AgentBack}})
			}
		}
		rec.mu.Unlock()
		if len(again) > 0 {
			p.enqueue(rec, again...)
		}
	}
	pending := map[types.UID]bool{}
	if p.opts.Pods != nil {
		pods, err := p.opts.Pods.List(labels.Everything())
		if err != nil {
			return err
		}
		present := make(map[types.UID]bool, len(pods))
		for _, pod := range pods {
			if pod.Spec.NodeName != p.opts.NodeName {
				continue
			}
			present[pod.UID] = true
			switch {
			case pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed:
				// A pod the pod controller has yet to hand over (or to
				// delete) keeps its containers until it does.
				pending[pod.UID] = true
			case p.recordOf(pod.UID) == nil:
				s.rememberFinished(pod)
			}
		}
		s.gone(recs, present)
		if p.reserver != nil {
			// Room is given back only once no pod that may still launch
			// waits to be admitted; a pod being deleted never launches.
			unadmitted := 0
			for _, pod := range pods {
				if pending[pod.UID] && pod.DeletionTimestamp == nil && p.recordOf(pod.UID) == nil {
					unadmitted++
				}
			}
			p.reserver.Settle(unadmitted)
		}
	}
	for id := range live {
		if owned[id] {
			continue
		}
		uid, rest, ok := translate.ParseContainerID(id)
		if !ok {
			continue // not the bridge's (the legacy platform's own tasks)
		}
		// The records are read again: a pod handed over since the snapshot
		// above (the pod controller admits pods while the sweep runs) owns
		// its container as much as one handed over before.
		rec := p.recordOf(uid)
		if rec == nil && pending[uid] || rec != nil && s.owns(rec, rest) {
			continue
		}
		s.kill(ctx, id)
	}
	s.retryRemovals(ctx)
	return nil
}

// gone finishes what the pod controller will not: virtual-kubelet deletes a
// pod that has stopped running straight from the API, without DeletePod, so
// its record would never be released nor its containers removed. A record
// whose pod left the API is deleted now; the ended runs of a finished pod
// this process never had a record of (it finished before a restart) are
// removed once the pod leaves.
func (s *sweeper) gone(recs []*podRecord, present map[types.UID]bool) {
	for _, rec := range recs {
		if !present[rec.uid] {
			s.p.enqueue(rec, item{pod: sm.PodDelete})
		}
	}
	s.mu.Lock()
	var ids []string
	for uid, runs := range s.finished {
		if !present[uid] {
			ids = append(ids, runs...)
			delete(s.finished, uid)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.removeLater(id)
	}
}

// rememberFinished notes the runs a finished pod may have left on the agent:
// its containers' current and previous ones (the older were removed as the
// newer launched). Bounded by the pods on the node.
func (s *sweeper) rememberFinished(pod *corev1.Pod) {
	var runs []string
	for _, st := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		runs = append(runs, runID(pod.UID, st.Name, st.RestartCount))
		if st.RestartCount > 0 {
			runs = append(runs, runID(pod.UID, st.Name, st.RestartCount-1))
		}
	}
	s.mu.Lock()
	s.finished[pod.UID] = runs
	s.mu.Unlock()
}

// owns: the id's run (rest: container name, -r<N> for later runs) is its
// container's current run, or a newer one (a crash right after a restart's
// launch: the container's next launch of that run finds it already there
// and follows it), and the container has not ended.
func (s *sweeper) owns(rec *podRecord, rest string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.ctrs {
		if sm.InfoOf(c.state).Terminal {
			continue
		}
		if rest == c.name {
			return c.restarts == 0
		}
		n, ok := strings.CutPrefix(rest, c.name+"-r")
		if !ok {
			continue
		}
		if run, err := strconv.ParseInt(n, 10, 32); err == nil && int32(run) >= c.restarts {
			return true
		}
	}
	return false
}

// removeLater keeps a REMOVE the agent did not take (it was away) for the
// next passes: an ended container is not listed as live, so nothing else
// would find its sandbox again. Bounded: past maxRemovals ids, or after
// removeAttempts passes, an id is dropped with a warning.
func (s *sweeper) removeLater(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.removals[id]; ok || len(s.removals) < maxRemovals {
		s.removals[id] += 0
		return
	}
	s.p.log.WithField("task", id).Warn("too many removals pending: this sandbox stays on the agent")
}

const (
	maxRemovals    = 65536
	removeAttempts = 10
)

func (s *sweeper) retryRemovals(ctx context.Context) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.removals))
	for id := range s.removals {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		err := s.p.agent.Remove(ctx, id)
		s.mu.Lock()
		switch {
		case err == nil || errors.Is(err, agentclient.ErrNotFound):
			delete(s.removals, id)
		case s.removals[id]+1 >= removeAttempts:
			delete(s.removals, id)
			s.p.log.WithError(err).WithField("task", id).Warn("remove keeps failing: giving up, the sandbox stays on the agent")
		default:
			s.removals[id]++
		}
		s.mu.Unlock()
	}
}

// kill ends a container no pod owns: SIGKILL, one WAIT for its end (REMOVE
// needs it ended), REMOVE.
func (s *sweeper) kill(ctx context.Context, id string) {
	p := s.p
	log := p.log.WithField("task", id)
	log.Warn("container without a pod on the agent: killing and removing it")
	orphansKilled.Inc()
	if err := p.agent.Kill(ctx, id, syscall.SIGKILL); err != nil {
		log.WithError(err).Warn("orphan kill failed; the next sweep retries")
		return
	}
	wctx, cancel := context.WithTimeout(ctx, p.opts.Config.Timeouts.AgentCall.or(10*time.Second))
	_, err := p.agent.Wait(wctx, id)
	cancel()
	if err != nil {
		log.WithError(err).Warn("orphan did not end in time; the next sweep removes it")
		return
	}
	p.remove(ctx, id, log)
}
