// Package reservation keeps, on one legacy agent, a Mesos dynamic
// reservation for the bridge's role that covers what the node's pods
// request, so the legacy allocator (a real Mesos master does not count the
// bridge's standalone containers) never places its tasks on the bridge's
// room.
//
// One Reserver per agent (node), one goroutine (Run), no per-pod loop. Pods
// claim their room (Claim: a new pod, which waits for the grant; Hold: a pod
// that runs already, counted at once); the reserver grants claims out of
// what is reserved and, when they need more, reserves up in whole quanta
// (Config.Quantum) with one RESERVE_RESOURCES call for the lot, falling
// back to the exact shortfall when whole quanta do not fit. When pods go
// (Drop) it unreserves down, keeping Config.Spare quanta beyond the need
// (hysteresis: a pod that comes back costs no call). A claim the master
// refuses room for is told so once (Notify) and retried when room may
// exist (Kick: a reservation released, the legacy use dropped) and on a
// bounded back-off.
//
// What is reserved is the master's word: Observe takes it from GET_AGENTS
// (discovery.Agent.Reserved) when no call was made since that poll began,
// so a reservation lost in a master failover, or made before a bridge
// restart, is seen. The reserver calls the master only after its first
// observation, and gives room back only while every pod of the node has
// been admitted (Settle), so a restarted bridge does not unreserve the
// room of running pods it has not adopted yet.
//
// Lock rule: mu guards the claims and figures; it is never held across a
// master call or Notify.
package reservation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"
	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/discovery"
)

// Reasons of a refusal, as the pod's event says them.
const (
	// ReasonOutOfCapacity: the master has no unreserved room for the claim
	// (legacy tasks or other roles hold it): 409.
	ReasonOutOfCapacity = "OutOfLegacyCapacity"
	// ReasonFailed: the master could not be asked or refused the call
	// otherwise.
	ReasonFailed = "ReservationFailed"
)

// Master sends operator calls to the leading master
// (discovery.AgentWatcher.Operate).
type Master interface {
	Operate(ctx context.Context, c *master.Call) error
}

// Config wires a Reserver.
type Config struct {
	AgentID string
	// Role and Principal go into every reservation ({DYNAMIC, role,
	// principal}); Principal is empty when the bridge has no credential.
	Role, Principal string
	// Quantum is the block reservations grow and shrink by, per resource;
	// a resource with no quantum is reserved exactly as needed.
	Quantum discovery.Resources
	// Spare is how many quanta are kept reserved beyond the need before
	// room is given back.
	Spare  int
	Master Master
	// Notify tells a claim's pod its fate: granted, or refused with a
	// reason and message (once per refusal episode). Called from Run's
	// goroutine, no lock held; it must not block.
	Notify func(uid types.UID, granted bool, reason, msg string)
	Log    *logrus.Entry
}

// Back-off of retries after a refusal or failure.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

type claim struct {
	need    discovery.Resources
	seq     uint64
	granted bool
	refused bool // told it was refused; told again only after a grant
}

// Reserver keeps one agent's reservation; see the package doc.
type Reserver struct {
	cfg  Config
	kick chan struct{}

	mu       sync.Mutex
	claims   map[types.UID]*claim
	seq      uint64
	reserved discovery.Resources // for the role, as the master last said or our calls made it
	known    bool                // reserved was observed at least once
	lastCall time.Time           // when the last call returned
	// unadmitted: pods of the node not admitted yet (Settle); -1 until the
	// first Settle.
	unadmitted int
	retry      time.Duration
}

// New builds a Reserver; Run does the work.
func New(cfg Config) (*Reserver, error) {
	switch {
	case cfg.AgentID == "":
		return nil, errors.New("reservation: no agent id")
	case cfg.Role == "":
		return nil, errors.New("reservation: no role")
	case cfg.Master == nil || cfg.Notify == nil || cfg.Log == nil:
		return nil, errors.New("reservation: Master, Notify and Log are required")
	case cfg.Spare < 0:
		return nil, fmt.Errorf("reservation: spare quanta %d < 0", cfg.Spare)
	}
	q := cfg.Quantum
	if q.CPUs < 0 || q.MemMB < 0 || q.DiskMB < 0 || q.GPUs < 0 {
		return nil, fmt.Errorf("reservation: negative quantum %+v", q)
	}
	return &Reserver{cfg: cfg, kick: make(chan struct{}, 1), claims: map[types.UID]*claim{}, unadmitted: -1, retry: minRetry}, nil
}

// Kick asks for a step now: room may exist (coalesced).
func (r *Reserver) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Claim registers a pod that waits for its room and reports whether the
// room is there already: reserved, not granted to others, and no claim
// waiting before it. Then it is granted at once and no Notify follows
// (the pod goes on in the same step, without a status of its own for the
// wait); otherwise Notify tells it. A claim already there is left as it
// is (false).
func (r *Reserver) Claim(uid types.UID, need discovery.Resources) bool {
	r.mu.Lock()
	if r.claims[uid] != nil {
		r.mu.Unlock()
		return false
	}
	granted, waiting := r.grantedLocked()
	r.seq++
	c := &claim{need: need, seq: r.seq}
	c.granted = r.known && !waiting && fits(r.reserved, plus(granted, need))
	r.claims[uid] = c
	r.mu.Unlock()
	r.Kick() // the spare may want topping up, or the claim its room
	return c.granted
}

// Hold registers a pod that runs already (adopted after a restart): its
// room counts as granted at once, and is reserved if it is not.
func (r *Reserver) Hold(uid types.UID, need discovery.Resources) { r.add(uid, need, true) }

func (r *Reserver) add(uid types.UID, need discovery.Resources, granted bool) {
	r.mu.Lock()
	if r.claims[uid] == nil {
		r.seq++
		r.claims[uid] = &claim{need: need, seq: r.seq, granted: granted}
	}
	r.mu.Unlock()
	r.Kick()
}

// Drop gives a pod's room back (its pod ended or went); unknown uids are
// ignored.
func (r *Reserver) Drop(uid types.UID) {
	r.mu.Lock()
	_, had := r.claims[uid]
	delete(r.claims, uid)
	r.mu.Unlock()
	if had {
		r.Kick()
	}
}

// Observe takes what the master lists as reserved for the role, read by a
// poll that began at polled; it is ignored when a call returned since (the
// poll may predate it).
func (r *Reserver) Observe(reserved discovery.Resources, polled time.Time) {
	r.mu.Lock()
	stale := polled.Before(r.lastCall)
	changed := !r.known || r.reserved != reserved
	if !stale {
		r.reserved, r.known = reserved, true
	}
	r.mu.Unlock()
	if !stale && changed {
		r.Kick()
	}
}

// Settle says how many of the node's pods are not admitted yet (present in
// the API, not ended, no record): room is given back only while none is.
func (r *Reserver) Settle(unadmitted int) {
	r.mu.Lock()
	was := r.unadmitted
	r.unadmitted = unadmitted
	r.mu.Unlock()
	if was != 0 && unadmitted == 0 {
		r.Kick()
	}
}

// Reserved is what the reserver holds as reserved for the role now.
func (r *Reserver) Reserved() discovery.Resources {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reserved
}

// Run steps on every kick and retry until ctx ends.
func (r *Reserver) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
		}
		if again := r.step(ctx); again > 0 {
			t.Reset(again)
		}
	}
}

// step grants what fits, then makes at most one reserve attempt (quanta,
// then the exact shortfall) or one unreserve. It answers when to try again
// (0: on the next kick).
func (r *Reserver) step(ctx context.Context) time.Duration {
	r.mu.Lock()
	if !r.known {
		r.mu.Unlock()
		return 0
	}
	notes := r.grantLocked()
	granted, pending := r.needsLocked()
	reserved, unadmitted := r.reserved, r.unadmitted
	r.mu.Unlock()
	r.tell(notes)

	if len(pending) > 0 || !fits(reserved, granted) {
		return r.reserveFor(ctx, granted, pending, reserved)
	}
	keep := plus(ceilTo(granted, r.cfg.Quantum), times(r.cfg.Quantum, r.cfg.Spare))
	excess := positive(minus(reserved, keep))
	if isZero(excess) || unadmitted != 0 {
		return 0
	}
	if err := r.call(ctx, calls.UnreserveResources(r.agentID(), r.resources(excess)...), excess, false); err != nil {
		r.cfg.Log.WithError(err).WithField("resources", excess).Warn("unreserving failed: retrying")
		return r.backoff()
	}
	r.cfg.Log.WithFields(logrus.Fields{"resources": excess, "reserved": r.Reserved()}).Info("room given back")
	return 0
}

// reserveFor reserves for the granted claims (held pods may exceed what is
// reserved) and the pending ones: whole quanta for all of them, else the
// exact shortfall of the granted and the first pending, else the pending
// ones are refused.
func (r *Reserver) reserveFor(ctx context.Context, granted discovery.Resources, pending []types.UID, reserved discovery.Resources) time.Duration {
	all, first := granted, granted
	r.mu.Lock()
	for i, uid := range pending {
		if c := r.claims[uid]; c != nil { // not dropped since
			all = plus(all, c.need)
		}
		if i == 0 {
			first = all
		}
	}
	r.mu.Unlock()
	var err error
	tried := false
	for _, want := range []discovery.Resources{ceilTo(all, r.cfg.Quantum), first} {
		delta := positive(minus(want, reserved))
		if isZero(delta) {
			continue
		}
		tried = true
		if err = r.call(ctx, calls.ReserveResources(r.agentID(), r.resources(delta)...), delta, true); err == nil {
			r.cfg.Log.WithFields(logrus.Fields{"resources": delta, "reserved": r.Reserved()}).Info("room reserved")
			r.mu.Lock()
			notes := r.grantLocked()
			r.retry = minRetry
			r.mu.Unlock()
			r.tell(notes)
			r.Kick() // claims still pending get their own attempt
			return 0
		}
		if !apierrors.Code(http.StatusConflict).Matches(err) {
			break // the master is away or refuses the call itself
		}
	}
	if !tried {
		return 0 // the claims changed meanwhile: the kick that did it steps again
	}
	reason := ReasonFailed
	if apierrors.Code(http.StatusConflict).Matches(err) {
		reason = ReasonOutOfCapacity
	}
	r.refuse(pending, reason, err)
	return r.backoff()
}

// call sends c and, when it succeeded, books delta (reserved when up).
func (r *Reserver) call(ctx context.Context, c *master.Call, delta discovery.Resources, up bool) error {
	err := r.cfg.Master.Operate(ctx, c)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCall = time.Now()
	if err != nil {
		return err
	}
	if up {
		r.reserved = plus(r.reserved, delta)
	} else {
		r.reserved = positive(minus(r.reserved, delta))
	}
	return nil
}

type note struct {
	uid         types.UID
	granted     bool
	reason, msg string
}

// grantLocked grants the waiting claims that fit in what is reserved
// beyond the granted ones, oldest first.
func (r *Reserver) grantLocked() []note {
	granted, pending := r.needsLocked()
	var out []note
	for _, uid := range pending {
		c := r.claims[uid]
		if next := plus(granted, c.need); fits(r.reserved, next) {
			granted, c.granted, c.refused = next, true, false
			out = append(out, note{uid: uid, granted: true})
		}
	}
	return out
}

// grantedLocked sums the granted claims and says whether any waits, in one
// pass without sorting (Claim's fast path).
func (r *Reserver) grantedLocked() (granted discovery.Resources, waiting bool) {
	for _, c := range r.claims {
		if c.granted {
			granted = plus(granted, c.need)
		} else {
			waiting = true
		}
	}
	return granted, waiting
}

// needsLocked sums the granted claims and lists the waiting ones, oldest
// first.
func (r *Reserver) needsLocked() (granted discovery.Resources, pending []types.UID) {
	for uid, c := range r.claims {
		if c.granted {
			granted = plus(granted, c.need)
		} else {
			pending = append(pending, uid)
		}
	}
	sort.Slice(pending, func(i, j int) bool { return r.claims[pending[i]].seq < r.claims[pending[j]].seq })
	return granted, pending
}

// refuse tells the waiting claims, once, that they got no room.
func (r *Reserver) refuse(pending []types.UID, reason string, err error) {
	r.mu.Lock()
	var out []note
	for _, uid := range pending {
		if c := r.claims[uid]; c != nil && !c.granted && !c.refused {
			c.refused = true
			out = append(out, note{uid: uid, reason: reason, msg: err.Error()})
		}
	}
	r.mu.Unlock()
	if len(out) > 0 {
		r.cfg.Log.WithError(err).WithField("pods", len(out)).Warn("no room reserved: the pods wait")
	}
	r.tell(out)
}

func (r *Reserver) tell(notes []note) {
	for _, n := range notes {
		r.cfg.Notify(n.uid, n.granted, n.reason, n.msg)
	}
}

// backoff is the next retry delay, doubling up to maxRetry.
func (r *Reserver) backoff() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.retry
	r.retry = min(r.retry*2, maxRetry)
	return d
}

func (r *Reserver) agentID() mesos.AgentID { return mesos.AgentID{Value: r.cfg.AgentID} }

// resources renders x as scalars reserved for the role, in the refined
// format.
func (r *Reserver) resources(x discovery.Resources) []mesos.Resource {
	typ := mesos.Resource_ReservationInfo_DYNAMIC
	role := r.cfg.Role
	ri := mesos.Resource_ReservationInfo{Type: &typ, Role: &role}
	if r.cfg.Principal != "" {
		p := r.cfg.Principal
		ri.Principal = &p
	}
	var out []mesos.Resource
	for _, s := range []struct {
		name string
		v    float64
	}{{"cpus", x.CPUs}, {"mem", x.MemMB}, {"disk", x.DiskMB}, {"gpus", x.GPUs}} {
		if s.v > 0 {
			out = append(out, mesos.Resource{Name: s.name, Type: mesos.SCALAR.Enum(),
				Scalar: &mesos.Value_Scalar{Value: s.v}, Reservations: []mesos.Resource_ReservationInfo{ri}})
		}
	}
	return out
}

// Arithmetic on the four scalars. Amounts are rounded to Mesos' three
// decimals, so sums of fractional cpus compare as the master compares them.

func each(a, b discovery.Resources, f func(x, y float64) float64) discovery.Resources {
	return discovery.Resources{
		CPUs: milli(f(a.CPUs, b.CPUs)), MemMB: milli(f(a.MemMB, b.MemMB)),
		DiskMB: milli(f(a.DiskMB, b.DiskMB)), GPUs: milli(f(a.GPUs, b.GPUs)),
	}
}

func milli(x float64) float64 { return math.Round(x*1000) / 1000 }

func plus(a, b discovery.Resources) discovery.Resources {
	return each(a, b, func(x, y float64) float64 { return x + y })
}

func minus(a, b discovery.Resources) discovery.Resources {
	return each(a, b, func(x, y float64) float64 { return x - y })
}

func positive(a discovery.Resources) discovery.Resources {
	return each(a, a, func(x, _ float64) float64 { return math.Max(0, x) })
}

func times(q discovery.Resources, n int) discovery.Resources {
	return each(q, q, func(x, _ float64) float64 { return x * float64(n) })
}

// ceilTo rounds a up to whole quanta of q, per resource (exact where q has
// none).
func ceilTo(a, q discovery.Resources) discovery.Resources {
	return each(a, q, func(x, y float64) float64 {
		if y <= 0 || x <= 0 {
			return x
		}
		return math.Ceil(milli(x/y)) * y
	})
}

// fits: b is within a on every resource.
func fits(a, b discovery.Resources) bool {
	d := minus(a, b)
	return d.CPUs >= 0 && d.MemMB >= 0 && d.DiskMB >= 0 && d.GPUs >= 0
}

func isZero(a discovery.Resources) bool { return a == discovery.Resources{} }
