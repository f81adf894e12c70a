package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/reservation"
	sm "github.com/vk-titus/vk-titus/statemachine"
	"github.com/vk-titus/vk-titus/translate"
)

// Reservations configure the node's dynamic reservation (package
// reservation): the room its pods request is reserved on the agent for the
// bridge's role before they are launched. Without them (agents listed
// without a master) no reservation is made, and pods start at once.
type Reservations struct {
	AgentID         string
	Role, Principal string
	Quantum         discovery.Resources
	Spare           int
	Master          reservation.Master
}

// EnableReservations gives the node a reserver (call before Start): pods
// then wait for their room, told through their inbox.
func (p *Provider) EnableReservations(o Reservations) error {
	r, err := reservation.New(reservation.Config{
		AgentID: o.AgentID, Role: o.Role, Principal: o.Principal, Quantum: o.Quantum, Spare: o.Spare,
		Master: o.Master, Notify: p.roomNews, Log: p.log.WithFields(logrus.Fields{"node": p.opts.NodeName, "role": o.Role}),
	})
	if err != nil {
		return fmt.Errorf("node %s: %w", p.opts.NodeName, err)
	}
	p.reserver = r
	return nil
}

// roomNews is the reserver's answer for a pod (reservation.Config.Notify):
// room, or no room with why, shown as the pod's reason while it waits.
func (p *Provider) roomNews(uid types.UID, granted bool, reason, msg string) {
	rec := p.recordOf(uid)
	if rec == nil {
		return // released meanwhile
	}
	ev := sm.PodRoom
	rec.mu.Lock()
	if granted {
		rec.reason, rec.message = "", ""
	} else {
		ev = sm.PodNoRoom
		rec.reason, rec.message = reason, "no room reserved for the pod on the legacy agent: "+msg
	}
	rec.mu.Unlock()
	p.enqueue(rec, item{pod: ev})
}

// roomActionLocked performs a pod action on the reserver (rec.mu held; the
// reserver takes only its own lock and never calls out under it). Without
// reservations the pod has its room at once.
func (p *Provider) roomActionLocked(rec *podRecord, a sm.PodAction) {
	r := p.reserver
	switch a {
	case sm.DoReserve:
		// Room already reserved (or no reservations) is had in this very
		// step: the pod shows no status of its own for the wait.
		if r == nil || r.Claim(rec.uid, podRoom(rec.pod)) {
			rec.inbox = append(rec.inbox, item{pod: sm.PodRoom})
		}
	case sm.DoHoldRoom:
		if r != nil {
			r.Hold(rec.uid, podRoom(rec.pod))
		}
	case sm.DoUnreserve:
		if r != nil {
			r.Drop(rec.uid)
		}
	case sm.DoReportNoRoom:
		if p.opts.Recorder != nil {
			p.opts.Recorder.Event(rec.pod, corev1.EventTypeWarning, rec.reason, rec.message)
		}
		p.podLog(rec).WithField("reason", rec.reason).Info(rec.message)
	}
}

// podRoom is what the pod holds on the agent at its peak, as its launches
// ask for it.
func podRoom(pod *corev1.Pod) discovery.Resources {
	cpus, mem, disk, gpus := translate.PodResources(pod)
	return discovery.Resources{CPUs: cpus, MemMB: mem, DiskMB: disk, GPUs: gpus}
}

// ObserveReservation tells the node's reserver what the leading master
// lists as reserved for the bridge's role, read by a poll that began at
// polled (discovery.Agent.Reserved, Polled).
func (p *Provider) ObserveReservation(reserved discovery.Resources, polled time.Time) {
	if p.reserver != nil {
		p.reserver.Observe(reserved, polled)
	}
}

// runReserver runs the reserver until ctx ends.
func (p *Provider) runReserver(ctx context.Context) {
	if p.reserver != nil {
		go p.reserver.Run(ctx)
	}
}
