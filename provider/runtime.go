package provider

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// workers serve the pods' inboxes. The work queue hands a record to one
// worker at a time and hands it again if items arrived meanwhile, so each
// pod's events are handled in order by one worker (the kubelet's pod
// workers) while at most n pods are served at once: the goroutine count does
// not grow with the pod count.
type workers struct {
	p     *Provider
	n     int
	queue workqueue.TypedInterface[*podRecord]
}

const defaultWorkers = 32

func newWorkers(p *Provider, n int) *workers {
	if n <= 0 {
		n = defaultWorkers
	}
	return &workers{p: p, n: n, queue: workqueue.NewTyped[*podRecord]()}
}

// run serves the queue until ctx ends.
func (w *workers) run(ctx context.Context) {
	for i := 0; i < w.n; i++ {
		go func() {
			for {
				rec, quit := w.queue.Get()
				if quit {
					return
				}
				w.p.drain(rec)
				w.queue.Done(rec)
			}
		}()
	}
	<-ctx.Done()
	w.queue.ShutDown()
}

// enqueue adds what happened to a pod to its inbox and asks for its worker.
func (p *Provider) enqueue(rec *podRecord, items ...item) {
	rec.mu.Lock()
	rec.inbox = append(rec.inbox, items...)
	rec.mu.Unlock()
	p.work.queue.Add(rec)
}

// broadcast sends ev to every container of every pod (agent health). An
// item already waiting with the same news is not queued again, so an agent
// that flaps while workers are busy does not grow the inboxes.
func (p *Provider) broadcast(ev sm.Event) {
	for _, rec := range p.records() {
		rec.mu.Lock()
		items := make([]item, 0, len(rec.ctrs))
		for _, c := range rec.ctrs {
			if !rec.waiting(c, ev.Type) {
				items = append(items, item{c: c, ev: ev})
			}
		}
		rec.inbox = append(rec.inbox, items...)
		rec.mu.Unlock()
		if len(items) > 0 {
			p.work.queue.Add(rec)
		}
	}
}

// waiting: the inbox holds e for c already (rec.mu held).
func (r *podRecord) waiting(c *ctr, e sm.EventType) bool {
	for _, it := range r.inbox {
		if it.c == c && it.ev.Type == e {
			return true
		}
	}
	return false
}

// drain handles the pod's inbox in order, then publishes its status once.
func (p *Provider) drain(rec *podRecord) {
	for {
		rec.mu.Lock()
		if len(rec.inbox) == 0 {
			pod := p.publishLocked(rec)
			rec.inbox = nil // let a burst's backing array go
			rec.mu.Unlock()
			p.notifyPod(pod)
			return
		}
		it := rec.inbox[0]
		rec.inbox[0] = item{}
		rec.inbox = rec.inbox[1:]
		rec.mu.Unlock()
		p.handle(rec, it)
	}
}

// task is one action to perform off the lock, with what it needs captured
// under it.
type task struct {
	c        *ctr
	a        sm.Action
	id       string
	restarts int32
	launch   *translate.Launch
	log      *logrus.Entry
	release  bool // the pod-level release (c nil)
}

// handle steps one item and everything it leads to: the tables under the
// lock, the agent calls without it, their answers first in line.
func (p *Provider) handle(rec *podRecord, first item) {
	pending := []item{first}
	for len(pending) > 0 {
		it := pending[0]
		pending = pending[1:]
		var todo []task
		rec.mu.Lock()
		switch {
		case it.c == nil:
			p.stepPodLocked(rec, it.pod, &todo)
		case it.gen != 0 && it.gen != it.c.timerGen,
			it.run != "" && it.run != it.c.runID(rec.uid):
			// A timer that was replaced or a WAIT answer for a run that is
			// no longer current: stale news.
		default:
			if it.gen != 0 {
				it.c.timer = nil
			}
			p.stepLocked(rec, it.c, it.ev, &todo)
			p.progressLocked(rec, &todo)
		}
		rec.mu.Unlock()
		var results []item
		for _, t := range todo {
			results = append(results, p.act(rec, t)...)
		}
		pending = append(results, pending...)
	}
}

// stepPodLocked runs a pod-level event through the pod table.
func (p *Provider) stepPodLocked(rec *podRecord, e sm.PodEventType, todo *[]task) {
	t, err := sm.StepPod(rec.state, e)
	if err != nil {
		p.podLog(rec).WithField("state", rec.state).Debug(err)
		return
	}
	if rec.state != t.To {
		p.podLog(rec).WithFields(logrus.Fields{"state": t.To, "from": rec.state, "event": e}).Debug("pod transition")
	}
	rec.state = t.To
	for _, a := range t.Actions {
		p.podActionLocked(rec, a, todo)
	}
	p.progressLocked(rec, todo)
}

// progressLocked feeds the pod table what the containers' states amount to,
// until nothing moves: an init container that succeeded lets the next one
// start, a terminating pod's containers hear the deletion again, and so on.
func (p *Provider) progressLocked(rec *podRecord, todo *[]task) {
	for range len(rec.ctrs) + 4 {
		e := sm.Progress(rec.facts())
		t, err := sm.StepPod(rec.state, e)
		if err != nil {
			p.podLog(rec).WithField("state", rec.state).Debug(err)
			return
		}
		before := rec.facts()
		from := rec.state
		rec.state = t.To
		for _, a := range t.Actions {
			p.podActionLocked(rec, a, todo)
		}
		if from == t.To && sameFacts(before, rec.facts()) {
			return
		}
		if from != t.To {
			p.podLog(rec).WithFields(logrus.Fields{"state": t.To, "from": from, "event": e}).Debug("pod transition")
		}
	}
}

func sameFacts(a, b []sm.Facts) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// podActionLocked turns a pod action into container events, or into calls
// of the reserver (room.go).
func (p *Provider) podActionLocked(rec *podRecord, a sm.PodAction, todo *[]task) {
	send := func(c *ctr, ev sm.EventType) { p.stepLocked(rec, c, sm.Event{Type: ev}, todo) }
	switch a {
	case sm.DoStartInit:
		for _, c := range rec.ctrs {
			if c.role == sm.RoleApp || sm.StepDone(sm.Facts{Role: c.role, State: c.state}) {
				continue
			}
			if c.state == sm.Accepted {
				send(c, sm.Launch)
			}
			return // one init step at a time
		}
	case sm.DoStartApps:
		for _, c := range rec.ctrs {
			if c.role == sm.RoleApp && c.state == sm.Accepted {
				send(c, sm.Launch)
			}
		}
	case sm.DoAdoptAll:
		for _, c := range rec.ctrs {
			if c.ran {
				send(c, sm.Adopt)
			}
		}
	case sm.DoRejectAll:
		for _, c := range rec.ctrs {
			p.stepLocked(rec, c, sm.Event{Type: sm.InvalidSpec, Reason: rec.reason, Message: rec.message}, todo)
		}
	case sm.DoStopSidecars:
		for _, c := range rec.ctrs {
			if c.role == sm.RoleSidecar {
				send(c, sm.DeleteRequested)
			}
		}
	case sm.DoDeleteAll:
		for _, c := range rec.ctrs {
			send(c, sm.DeleteRequested)
		}
	case sm.DoRelease:
		*todo = append(*todo, task{release: true, log: p.podLog(rec)})
	case sm.DoReserve, sm.DoHoldRoom, sm.DoUnreserve, sm.DoReportNoRoom:
		p.roomActionLocked(rec, a)
	}
}

// stepLocked runs ev through the container table for c, applies what it
// means for the status, performs the actions that need no I/O (timers, WAIT
// registration) and queues the agent calls in todo.
func (p *Provider) stepLocked(rec *podRecord, c *ctr, ev sm.Event, todo *[]task) {
	from := c.state
	pol := rec.policy(c)
	t, err := sm.Step(from, ev, pol)
	log := p.podLog(rec).WithFields(logrus.Fields{"task": c.runID(rec.uid), "container": c.name, "event": sm.Refine(ev, pol)})
	if err != nil {
		// Stale news (a kill answered after the exit) lands here: logged,
		// state kept.
		log.WithField("state", from).Debug(err)
		return
	}
	p.apply(rec, c, t, ev)
	// Per-transition lines are debug: at thousands of pods they would cost
	// more than the transitions (the counters and events stay).
	if from != t.To {
		log.WithField("state", t.To).WithField("from", from).Debug("transition")
	}
	transitions.WithLabelValues(string(from), string(t.To)).Inc()
	for _, a := range t.Actions {
		switch a {
		case sm.DoWait:
			p.waits.watch(rec, c, c.runID(rec.uid))
		case sm.DoStartGrace:
			p.after(rec, c, rec.killGrace(c), sm.GraceExpired)
		case sm.DoScheduleRestart:
			p.after(rec, c, p.restartDelay(c), sm.RestartDue)
		case sm.DoRetryLaunch:
			p.after(rec, c, 2*time.Second, sm.Launch)
		case sm.DoRetryRemove:
			c.removeTries++
			p.after(rec, c, removeDelay(c.removeTries), sm.RemoveDue)
		case sm.DoRemove:
			p.stopTimer(c)
			p.waits.cancel(c.runID(rec.uid))
			fallthrough
		default:
			*todo = append(*todo, task{c: c, a: a, id: c.runID(rec.uid), restarts: c.restarts, launch: c.launch, log: log})
		}
	}
}

// apply records what a transition means for the container's visible status.
func (p *Provider) apply(rec *podRecord, c *ctr, t sm.Transition, ev sm.Event) {
	now := metav1.Now()
	switch ev.Type {
	case sm.ContainerExited, sm.InvalidSpec, sm.LaunchRejected, sm.ReconciledNotFound, sm.AgentGone:
		if sm.InfoOf(t.To).Terminal || t.To == sm.BackOff {
			c.exit = ev
		}
	case sm.RestartDue:
		c.restarts++
	case sm.ReconciledFound:
		c.restarts = max(c.restarts, ev.Run)
	}
	if ev.Type == sm.AgentGone && t.To == sm.Lost {
		rec.reason, rec.message = "NodeLost", fmt.Sprintf("agent %s is gone", p.agent.Endpoint())
		c.exit = sm.Event{ExitCode: 137, Reason: "NodeLost", Message: rec.message}
	}
	if t.To == sm.BackOff {
		// The run that just ended becomes lastState, as the kubelet shows it.
		ok := ev.ExitCode == 0 && ev.Signal == 0
		state := sm.Failed
		if ok {
			state = sm.Succeeded
		}
		c.since = now
		c.last = c.terminated(state)
		c.last.ContainerID = "mesos://" + c.runID(rec.uid)
	}
	if t.To == sm.Running && c.state != sm.Running {
		p.probes.containerStarted(rec, c)
	}
	c.state = t.To
	if sm.InfoOf(t.To).View != sm.ViewLast && c.shown != t.To {
		if sm.InfoOf(c.shown).View != sm.InfoOf(t.To).View {
			c.since = now
		}
		if t.To == sm.Running {
			c.startedAt = now
		}
		c.shown = t.To
	}
	if r := t.Record; r != nil && p.opts.Recorder != nil {
		p.opts.Recorder.Event(rec.pod, r.Type, r.Reason, eventMessage(r.Reason, rec, c, ev))
	}
}

func eventMessage(reason string, rec *podRecord, c *ctr, ev sm.Event) string {
	switch reason {
	case "Created":
		return fmt.Sprintf("Created container %s on the legacy agent as %s", c.name, c.runID(rec.uid))
	case "Started":
		return fmt.Sprintf("Started container %s", c.name)
	case "Killing":
		return fmt.Sprintf("Stopping container %s", c.name)
	case "BackOff":
		return fmt.Sprintf("Back-off restarting failed container %s in pod %s", c.name, rec.pod.Name)
	case "ContainerLost":
		return fmt.Sprintf("Container %s is no longer known to the legacy agent", c.name)
	}
	if ev.Message != "" {
		return fmt.Sprintf("container %s: %s", c.name, ev.Message)
	}
	return fmt.Sprintf("container %s: %s", c.name, reason)
}

// act performs one agent call, with no lock held; its result comes back as
// events for the same container.
func (p *Provider) act(rec *podRecord, t task) []item {
	if err := p.fenced(); err != nil {
		t.log.WithError(err).Debug("fenced: not acting")
		return nil
	}
	if t.release {
		p.dropRecord(rec)
		if p.release != nil {
			rec.mu.Lock()
			ref := podRef{rec.pod.Namespace, rec.pod.Name, rec.uid}
			rec.mu.Unlock()
			p.release.queue.Add(ref)
		}
		return nil
	}
	ctx := p.ctx
	c, log := t.c, t.log
	events := func(evs ...sm.Event) []item {
		out := make([]item, len(evs))
		for i, ev := range evs {
			out[i] = item{c: c, ev: ev}
		}
		return out
	}
	switch t.a {
	case sm.DoLaunch:
		spec, err := p.launchSpec(rec, c, t.launch)
		switch {
		case errors.Is(err, translate.ErrInvalidSpec):
			return events(sm.Event{Type: sm.LaunchRejected, Reason: "InvalidContainerInfo", Message: err.Error()})
		case err != nil:
			log.WithError(err).Warn("launch: pod cannot be translated yet, will retry")
			return events(sm.Event{Type: sm.LaunchUnavailable, Message: err.Error()})
		}
		if !rec.launched.Swap(true) {
			admitToLaunch.Observe(time.Since(rec.admitted).Seconds())
		}
		existed, err := p.agent.Launch(ctx, t.id, spec)
		switch {
		case err == nil && existed:
			return events(sm.Event{Type: sm.LaunchExists})
		case err == nil:
			if t.restarts >= 2 {
				// Keep only the previous run's sandbox, for --previous.
				p.remove(ctx, runID(rec.uid, c.name, t.restarts-2), log)
			}
			return events(sm.Event{Type: sm.LaunchAccepted}, sm.Event{Type: sm.ContainerRunning})
		case errors.Is(err, agentclient.ErrUnavailable):
			log.WithError(err).Warn("launch: agent unavailable, will retry")
			p.health.suspect()
			return events(sm.Event{Type: sm.LaunchUnavailable, Message: err.Error()})
		default:
			log.WithError(err).Warn("launch rejected")
			return events(sm.Event{Type: sm.LaunchRejected, Reason: "LaunchRejected", Message: err.Error()})
		}
	case sm.DoReconcile:
		return events(p.reconcile(ctx, rec, c, t)...)
	case sm.DoKill, sm.DoKillForce:
		sig := syscall.SIGTERM
		if t.a == sm.DoKillForce {
			sig = syscall.SIGKILL
		}
		err := p.agent.Kill(ctx, t.id, sig)
		switch {
		case errors.Is(err, agentclient.ErrNotFound):
			return events(sm.Event{Type: sm.ReconciledNotFound})
		case errors.Is(err, agentclient.ErrUnavailable):
			p.suspect()
			return events(sm.Event{Type: sm.AgentUnreachable})
		case err != nil:
			log.WithError(err).Warn("kill refused")
		}
	case sm.DoRemove:
		// Every run the container may have left, newest first: a launch
		// removes the run two before it, but that REMOVE may have missed
		// the agent (and its retry died with a bridge that crashed), and a
		// bridge that restarted adopts the restart count the API last
		// showed, which may lag the agent's newest ended runs by a launch
		// or two. Every one must be gone before the pod is released; REMOVE
		// is idempotent (404 once done, a cheap local answer), so a retry
		// sends them all again.
		var failed error
		for r := t.restarts + removeAhead; r >= 0; r-- {
			if err := p.agent.Remove(ctx, runID(rec.uid, c.name, r)); err != nil && !errors.Is(err, agentclient.ErrNotFound) {
				failed = fmt.Errorf("%s: %w", runID(rec.uid, c.name, r), err)
			}
		}
		switch {
		case failed != nil && p.Gone():
			// Declared gone: its sandboxes went with it.
			return events(sm.Event{Type: sm.AgentGone, Message: failed.Error()})
		case failed != nil:
			log.WithError(failed).Warn("remove failed: trying again")
			return events(sm.Event{Type: sm.RemoveFailed, Message: failed.Error()})
		}
		return events(sm.Event{Type: sm.RemoveDone})
	}
	return nil
}

// removeAhead is how many runs past the known restart count a removal
// covers: launches the API had not shown yet when the bridge restarted.
const removeAhead = 2

// removeDelay is the back-off before the n-th REMOVE retry: doubling from a
// second up to 64 s, so an agent away for long costs one call a minute
// per pod being deleted (and AgentBack retries at once when it returns).
func removeDelay(n int) time.Duration {
	return time.Second << min(n-1, 6)
}

// fenced is the fence's verdict: nil while this replica may act for the node.
func (p *Provider) fenced() error {
	if p.opts.Fence == nil {
		return nil
	}
	return p.opts.Fence()
}

// launchSpec is the container's launch, translating the pod now if it was
// admitted without one (adopted, or its ConfigMap was missing then).
func (p *Provider) launchSpec(rec *podRecord, c *ctr, have *translate.Launch) (*translate.Launch, error) {
	if have != nil {
		return have, nil
	}
	rec.mu.Lock()
	pod := rec.pod
	rec.mu.Unlock()
	launches, annotation, err := translate.PodLaunches(pod, resolver{p.opts.ConfigMaps, p.opts.Secrets})
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", rec.key, err)
	}
	var spec *translate.Launch
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.annotation == "" {
		rec.annotation = annotation
	}
	for i := range launches {
		for _, x := range rec.ctrs {
			if x.name == launches[i].ContainerName && x.launch == nil {
				x.launch = &launches[i]
			}
		}
		if launches[i].ContainerName == c.name {
			spec = &launches[i]
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("pod %s: container %s: %w", rec.key, c.name, translate.ErrInvalidSpec)
	}
	return spec, nil
}

// reconcile asks what became of an adopted or unreachable container: the
// agent's container list says whether a run of it is live (the newest one
// is the container's run from now on); a run that is not live is asked with
// one WAIT, which answers at once with its exit, or 404. Without a current
// list (the agent away) nothing is decided: the container is asked again
// when the agent answers (AgentBack).
func (p *Provider) reconcile(ctx context.Context, rec *podRecord, c *ctr, t task) []sm.Event {
	newest, live, known := p.health.newestRun(rec.uid, c.name)
	if !known {
		return nil
	}
	if live && newest >= t.restarts {
		return []sm.Event{{Type: sm.ReconciledFound, Run: newest}}
	}
	wctx, cancel := context.WithTimeout(ctx, p.opts.Config.Timeouts.AgentCall.or(10*time.Second))
	defer cancel()
	exit, err := p.agent.Wait(wctx, t.id)
	switch {
	case err == nil:
		return []sm.Event{{Type: sm.ContainerExited, ExitCode: exit.Code, Signal: exit.Signal, Reason: exit.Reason, Message: exit.Message}}
	case errors.Is(err, agentclient.ErrNotFound):
		return []sm.Event{{Type: sm.ReconciledNotFound}}
	default:
		p.suspect()
		return []sm.Event{{Type: sm.AgentUnreachable}}
	}
}

// suspect follows a failed call: health looks at the agent now, and the
// sweep asks again what the failure left disconnected if it still answers.
func (p *Provider) suspect() {
	p.health.suspect()
	p.sweep.again()
}

func (p *Provider) remove(ctx context.Context, id string, log *logrus.Entry) {
	err := p.agent.Remove(ctx, id)
	if err != nil && !errors.Is(err, agentclient.ErrNotFound) {
		log.WithError(err).WithField("task", id).Warn("remove failed; the sweep retries")
		p.sweep.removeLater(id)
	}
}

// restartDelay is the kubelet's crash-loop back-off: doubling from the base
// up to the cap.
func (p *Provider) restartDelay(c *ctr) time.Duration {
	d := p.backoff
	for i := int32(0); i < c.restarts && d < p.maxBack; i++ {
		d *= 2
	}
	if d > p.maxBack {
		d = p.maxBack
	}
	return d
}

// after fires ev on c once d has passed (rec.mu held). A timer is not a
// goroutine until it fires, so thousands of pending grace periods cost only
// memory; its generation makes a replaced timer's firing stale.
func (p *Provider) after(rec *podRecord, c *ctr, d time.Duration, ev sm.EventType) {
	p.stopTimer(c)
	c.timerGen++
	gen := c.timerGen
	c.timer = time.AfterFunc(d, func() { p.enqueue(rec, item{c: c, ev: sm.Event{Type: ev}, gen: gen}) })
}

func (p *Provider) stopTimer(c *ctr) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.timerGen++
}
