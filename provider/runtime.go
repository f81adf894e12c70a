package provider

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	sm "github.com/vk-titus/vk-titus/statemachine"
)

// fire delivers an event from outside the pod's lock (a WAIT result, a timer,
// agent health) and publishes the outcome.
func (p *Provider) fire(rec *podRecord, c *ctr, ev sm.Event) {
	rec.mu.Lock()
	p.step(rec, c, ev)
	p.finish(rec)
}

// step runs ev through the state machine for container c and performs the
// actions the transition hands back; actions may answer with further events
// (a launch answering "accepted"), which are stepped in turn. rec.mu is held.
func (p *Provider) step(rec *podRecord, c *ctr, ev sm.Event) {
	queue := []sm.Event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		from := c.state
		t, err := sm.Step(from, ev, rec.policy(c))
		log := p.podLog(rec).WithFields(logrus.Fields{"task": c.runID(rec.uid), "container": c.name, "event": sm.Refine(ev, rec.policy(c))})
		if err != nil {
			// Stale news (a timer from a previous run, a WAIT answering after
			// a kill) lands here: logged, state kept.
			log.WithField("state", from).Debug(err)
			continue
		}
		p.apply(rec, c, t, ev)
		// Per-transition lines are debug: at thousands of pods they would
		// cost more than the transitions (the counters and events stay).
		if from != t.To {
			log.WithField("state", t.To).WithField("from", from).Debug("transition")
		}
		transitions.WithLabelValues(string(from), string(t.To)).Inc()
		for _, a := range t.Actions {
			queue = append(queue, p.act(rec, c, a, log)...)
		}
	}
	p.advance(rec)
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

// advance starts what may start now: init containers one at a time in order,
// then every app container; and it carries a pending deletion through once
// the containers can be reached.
func (p *Provider) advance(rec *podRecord) {
	if rec.deleting {
		for _, c := range rec.ctrs {
			switch {
			case c.state == sm.Accepted && c.adopt:
				// It may still run on the agent: find out before ending it.
				p.step(rec, c, sm.Event{Type: sm.Adopt})
			case c.state == sm.Accepted, c.state == sm.Starting, c.state == sm.Running, c.state == sm.BackOff:
				p.step(rec, c, sm.Event{Type: sm.DeleteRequested})
			}
		}
		return
	}
	for _, c := range rec.ctrs {
		if c.init && c.state == sm.Succeeded {
			continue
		}
		if c.state == sm.Accepted && c.timer == nil {
			p.start(rec, c)
		}
		if c.init {
			return
		}
	}
}

func (p *Provider) start(rec *podRecord, c *ctr) {
	if c.adopt {
		p.step(rec, c, sm.Event{Type: sm.Adopt})
		return
	}
	p.step(rec, c, sm.Event{Type: sm.Launch})
}

// act performs one action; its result comes back as events.
func (p *Provider) act(rec *podRecord, c *ctr, a sm.Action, log *logrus.Entry) []sm.Event {
	ctx := context.Background()
	id := c.runID(rec.uid)
	switch a {
	case sm.DoLaunch:
		existed, err := p.agent.Launch(ctx, id, &c.launch)
		switch {
		case err == nil && existed:
			return []sm.Event{{Type: sm.LaunchExists}}
		case err == nil:
			if c.restarts >= 2 {
				// Keep only the previous run's sandbox, for --previous.
				p.remove(ctx, runID(rec.uid, c.name, c.restarts-2), log)
			}
			return []sm.Event{{Type: sm.LaunchAccepted}, {Type: sm.ContainerRunning}}
		case errors.Is(err, agentclient.ErrUnavailable):
			log.WithError(err).Warn("launch: agent unavailable, will retry")
			return []sm.Event{{Type: sm.LaunchUnavailable, Message: err.Error()}}
		default:
			log.WithError(err).Warn("launch rejected")
			return []sm.Event{{Type: sm.LaunchRejected, Reason: "LaunchRejected", Message: err.Error()}}
		}
	case sm.DoWait:
		p.waits.watch(rec, c, id)
	case sm.DoReconcile:
		if p.health.isLive(id) {
			return []sm.Event{{Type: sm.ReconciledFound}}
		}
		// Not live: a WAIT tells how it ended, or 404 that it never was.
		p.waits.watch(rec, c, id)
	case sm.DoKill, sm.DoKillForce:
		sig := syscall.SIGTERM
		if a == sm.DoKillForce {
			sig = syscall.SIGKILL
		}
		err := p.agent.Kill(ctx, id, sig)
		switch {
		case errors.Is(err, agentclient.ErrNotFound):
			return []sm.Event{{Type: sm.ReconciledNotFound}}
		case errors.Is(err, agentclient.ErrUnavailable):
			return []sm.Event{{Type: sm.AgentUnreachable}}
		case err != nil:
			log.WithError(err).Warn("kill refused")
		}
	case sm.DoStartGrace:
		grace := c.launch.KillGrace
		if rec.grace != nil {
			grace = *rec.grace
		}
		p.after(rec, c, grace, sm.GraceExpired)
	case sm.DoScheduleRestart:
		p.after(rec, c, p.restartDelay(c), sm.RestartDue)
	case sm.DoRetryLaunch:
		p.after(rec, c, 2*time.Second, sm.Launch)
	case sm.DoRemove:
		p.stopTimer(c)
		p.waits.cancel(id)
		p.remove(ctx, id, log)
		if c.restarts > 0 {
			p.remove(ctx, runID(rec.uid, c.name, c.restarts-1), log)
		}
	}
	return nil
}

func (p *Provider) remove(ctx context.Context, id string, log *logrus.Entry) {
	err := p.agent.Remove(ctx, id)
	if err != nil && !errors.Is(err, agentclient.ErrNotFound) {
		log.WithError(err).WithField("task", id).Warn("remove failed; the sandbox stays on the agent")
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

// after fires ev on c once d has passed. A timer is not a goroutine until it
// fires, so thousands of pending grace periods cost only memory.
func (p *Provider) after(rec *podRecord, c *ctr, d time.Duration, ev sm.EventType) {
	p.stopTimer(c)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		rec.mu.Lock()
		if c.timer == t {
			c.timer = nil
		}
		p.step(rec, c, sm.Event{Type: ev})
		p.finish(rec)
	})
	c.timer = t
}

func (p *Provider) stopTimer(c *ctr) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}
