package ownership

import (
	"cmp"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// timing is the lease timing (see Config).
type timing struct {
	leaseDuration time.Duration
	renewDeadline time.Duration
	renewInterval time.Duration
	retryPeriod   time.Duration
}

// batch is how far apart plans driven by time are at least, whatever the
// number of nodes: expiries due within it are handled together.
func (t timing) batch() time.Duration { return t.retryPeriod / 4 }

// phase is where one of this replica's nodes is in its term.
type phase int

const (
	acquiring phase = iota // the acquiring write is in flight
	serving                // held; the caller serves it under its fence
	stopping               // Handler.Stop is running (the lease is still held)
	stopped                // stopped; its release waits its turn (on shutdown: the membership lease's removal)
	releasing              // the release (or removal) write is in flight
)

// owned is a node this replica holds or is acquiring or giving up. Its
// lease is not renewed: it lives as long as this replica's membership
// lease (see nodeExpiry).
type owned struct {
	phase  phase
	reason Reason                // why it stops (stopping and after)
	last   *coordinationv1.Lease // this replica's last successful write: the base of the next
	lost   bool                  // the fence is gone; released only if still ours
}

// actionKind is what the shell must do.
type actionKind int

const (
	actAcquire actionKind = iota // write the node lease held by this replica (from base; nil: create)
	actRevoke                    // revoke the node's fence now (the lease went to another)
	actStop                      // call Handler.Stop (reason)
	actRelease                   // clear the node lease's holder (from base)
	actRemove                    // delete the node lease (base: its resourceVersion); the node left the set
	actJoin                      // write the membership lease (from base; nil: create); on success every fence runs from its send time
	actLeave                     // write the membership lease without holder (from base): leaving; on success as actJoin
	actDepart                    // delete the membership lease (base): every node released
	actCollect                   // delete a leftover lease (base)
)

// action is one thing the core decided; the shell performs it and reports
// the result through the matching core method.
type action struct {
	kind   actionKind
	node   string                // node actions
	base   *coordinationv1.Lease // what a write starts from (never modified)
	reason Reason                // actStop, actRelease, actRemove
	hash   string                // actJoin: the node set announced
	count  int                   // actJoin
}

// core decides everything about ownership and does no I/O and reads no
// clock: observations, the caller's node set and the results of the
// shell's actions come in through its methods (times included), and plan
// says what to do next and when to call it again. It is not safe for
// concurrent use: the manager's loop owns it.
type core struct {
	self        string
	incarnation string
	t           timing

	nodes  map[string]time.Time // the caller's node set: when each was first set
	sorted []string             // nodes, sorted
	hash   string               // of sorted

	replicas map[string]*lease // membership leases by identity (self's included, ignored for liveness)
	leases   map[string]*lease // node leases by node (in the set or not)
	own      map[string]*owned

	// Assignment, recomputed only when its inputs change (dirty): the live
	// replicas (and their node-set hashes) and each node's effective holder.
	live    []string
	hashes  map[string]string
	eff     map[string]string
	desired map[string]string
	dirty   bool

	// A rebalance hands over one node at a time: handover is the node
	// released (or being stopped) for another replica; the next waits until
	// someone holds it, or a lease duration after its release.
	handover      string
	handoverSince time.Time // zero until released

	memberLast *coordinationv1.Lease // last write of the membership lease
	memberAt   time.Time             // next membership write (zero: now)
	memberBusy bool

	// Settling: replicas started together must see each other before they
	// take nodes, or the first would take them all and then hand most over
	// one by one. So a replica acquires (other than adopting) only a
	// RenewInterval after its membership lease was first written, and
	// hands nodes to another only once it has been live as long.
	joinedAt  time.Time
	liveSince map[string]time.Time // live replicas other than self: since when

	// Shutdown: the membership lease is written without holder (leaving:
	// the others stop counting this replica, and its node leases stay
	// live), renewed so until every node is released, then deleted.
	shutting   bool
	leaveDone  bool // a leave write came back (ok or not): the releases may go
	departSent bool
	departDone bool

	collecting map[string]bool // lease names being deleted as leftovers

	// An acquisition that failed (someone else wrote the lease first, and
	// this replica has not seen it yet) is retried at this time, or sooner
	// if the lease is observed anew.
	retryAt map[string]time.Time

	// When to plan: at once (replan: an input that may change a decision)
	// or at wakeAt (zero: no time-driven work). Most inputs change nothing
	// to decide (another replica renewing its membership lease, a renewal
	// of this one's that succeeded): a plan walks every node, so they only
	// record.
	replan bool
	wakeAt time.Time
}

func newCore(self, incarnation string, t timing) *core {
	return &core{self: self, incarnation: incarnation, t: t,
		nodes: map[string]time.Time{}, hash: nodesHash(nil),
		replicas: map[string]*lease{}, leases: map[string]*lease{}, own: map[string]*owned{},
		hashes: map[string]string{}, eff: map[string]string{}, desired: map[string]string{},
		liveSince: map[string]time.Time{}, collecting: map[string]bool{}, retryAt: map[string]time.Time{},
		dirty: true, replan: true}
}

// due reports whether a plan is needed at now.
func (c *core) due(now time.Time) bool {
	return c.replan || (!c.wakeAt.IsZero() && !now.Before(c.wakeAt))
}

// nextPlan is when the next time-driven plan is due (zero: none).
func (c *core) nextPlan() time.Time { return c.wakeAt }

// wake makes a plan due at t at the latest.
func (c *core) wake(t time.Time) {
	if c.wakeAt.IsZero() || t.Before(c.wakeAt) {
		c.wakeAt = t
	}
}

// setNodes replaces the node set; now is when the new ones were learnt (a
// node without a lease counts as free since then).
func (c *core) setNodes(names []string, now time.Time) {
	sorted := sortedSet(names)
	next := make(map[string]time.Time, len(sorted))
	for _, n := range sorted {
		if t, ok := c.nodes[n]; ok {
			next[n] = t
		} else {
			next[n] = now
		}
	}
	c.nodes, c.sorted = next, sorted
	for n := range c.retryAt {
		if _, ok := next[n]; !ok {
			delete(c.retryAt, n)
		}
	}
	if h := nodesHash(sorted); h != c.hash {
		c.hash = h
		c.memberAt = time.Time{} // announce it now
	}
	clear(c.eff)
	c.dirty, c.replan = true, true
}

// observe records a Lease as the informer delivered it at at (nil obj: the
// Lease named name was deleted). A Lease whose resourceVersion did not
// change keeps its observation time.
func (c *core) observe(name string, obj *coordinationv1.Lease, at time.Time) {
	if obj == nil {
		c.forget(name)
		return
	}
	l, ok := parseLease(obj, at)
	if !ok {
		return
	}
	m := c.table(l.kind)
	old := m[l.key]
	if old != nil && old.obj.ResourceVersion == obj.ResourceVersion {
		return
	}
	m[l.key] = l
	if l.kind == kindNode {
		delete(c.retryAt, l.key)
	}
	// A renewal by the same holder changes no decision, unless the lease
	// had expired meanwhile (then the nodes its holder holds come back too).
	if old == nil || old.holder != l.holder || old.incarnation != l.incarnation || old.nodesHash != l.nodesHash ||
		old.duration != l.duration || !at.Before(c.expiry(old)) {
		c.replan = true
	}
}

func (c *core) table(kind string) map[string]*lease {
	if kind == kindReplica {
		return c.replicas
	}
	return c.leases
}

// forget drops the lease named name.
func (c *core) forget(name string) {
	for _, m := range []map[string]*lease{c.leases, c.replicas} {
		for k, l := range m {
			if l.obj.Name == name {
				delete(m, k)
				delete(c.retryAt, k)
				c.replan = true
				return
			}
		}
	}
}

// through records this replica's own write of a lease (written; nil: it
// deleted it) if the observation is still the write's base: an
// observation that moved on is newer than the write and stays.
func (c *core) through(m map[string]*lease, key string, base, written *coordinationv1.Lease, now time.Time) {
	cur := m[key]
	switch {
	case cur == nil && base != nil, cur != nil && base == nil:
		return
	case cur != nil && cur.obj.ResourceVersion != base.ResourceVersion:
		return
	}
	if written == nil {
		delete(m, key)
		return
	}
	if l, ok := parseLease(written, now); ok {
		m[key] = l
	}
}

// acquired reports an acquiring write: ok with the written lease, sent at
// sentAt (the term's fence runs from then, or from a later membership
// renewal's).
func (c *core) acquired(node string, base, written *coordinationv1.Lease, ok bool, sentAt, now time.Time) {
	o := c.own[node]
	if o == nil || o.phase != acquiring {
		return
	}
	c.replan = true
	delete(c.retryAt, node)
	if !ok {
		delete(c.own, node)
		c.retryAt[node] = sentAt.Add(c.t.retryPeriod)
		return
	}
	c.through(c.leases, node, base, written, now)
	o.phase, o.last = serving, written
}

// fenceExpired reports that node's fence expired: it is stopped.
func (c *core) fenceExpired(node string) {
	if o := c.own[node]; o != nil && (o.phase == serving || o.phase == stopping) {
		o.lost = true
		c.replan = true
	}
}

// stopped reports that Handler.Stop returned for node.
func (c *core) stopped(node string) {
	if o := c.own[node]; o != nil && o.phase == stopping {
		o.phase = stopped
		c.replan = true
	}
}

// released reports the release or removal write of node.
func (c *core) released(node string, written *coordinationv1.Lease, ok bool, now time.Time) {
	o := c.own[node]
	if o == nil || o.phase != releasing {
		return
	}
	delete(c.own, node)
	c.replan = true
	if ok {
		c.through(c.leases, node, o.last, written, now)
	}
	if node == c.handover {
		c.handoverSince = now
	}
}

// joined reports a membership write.
func (c *core) joined(written *coordinationv1.Lease, ok bool, sentAt, now time.Time) {
	c.memberBusy = false
	if ok {
		if c.joinedAt.IsZero() && !c.shutting {
			c.joinedAt = sentAt
			c.replan = true // settling starts
		}
		c.memberLast = written
		c.memberAt = sentAt.Add(c.t.renewInterval)
	} else {
		c.memberLast = nil // the next write starts from what is observed
		c.memberAt = sentAt.Add(c.t.retryPeriod)
	}
	if c.shutting && !c.leaveDone {
		c.memberAt = time.Time{} // the leave waited for this write: it goes now
	}
	c.wake(c.memberAt)
	if c.shutting {
		c.replan = true
	}
}

// left reports a leave write (done or failed: either way the releases may
// go now).
func (c *core) left(written *coordinationv1.Lease, ok bool, sentAt, now time.Time) {
	c.leaveDone = true
	c.joined(written, ok, sentAt, now)
}

// departed reports the membership lease's deletion (done or failed: it
// would expire anyway).
func (c *core) departed() { c.departDone, c.replan = true, true }

// collected reports the deletion of a leftover lease.
func (c *core) collected(a action, ok bool, now time.Time) {
	delete(c.collecting, a.base.Name)
	c.replan = true
	if ok {
		c.through(c.table(a.base.Labels[LabelLease]), a.node, a.base, nil, now)
	}
}

// shutdown starts the graceful end: the membership lease says leaving
// first (the others stop counting this replica, so the nodes it releases
// go straight to their new owners, while those it still holds stay live),
// every node is stopped, then released, then the membership lease is
// deleted.
func (c *core) shutdown() { c.shutting, c.replan, c.memberAt = true, true, time.Time{} }

// finished reports whether the graceful end is done.
func (c *core) finished() bool { return c.shutting && c.departDone && len(c.own) == 0 }

// ours reports whether l is held by this very process.
func (c *core) ours(l *lease) bool { return l.holder == c.self && l.incarnation == c.incarnation }

// expiry is when l ends unless it changes again, on the local clock. A
// membership lease ends a lease duration after it was last seen to change.
// A node lease is never renewed: it lives as long as its holder's
// membership lease, or a lease duration after its own last change (an
// acquisition seen before the holder's membership).
func (c *core) expiry(l *lease) time.Time {
	t := l.observedAt.Add(l.duration)
	if l.kind != kindNode {
		return t
	}
	// A leaving holder (its membership without holder) still counts.
	if r := c.replicas[l.holder]; r != nil && c.expiry(r).After(t) {
		t = c.expiry(r)
	}
	return t
}

// held reports whether someone holds l at now.
func (c *core) held(l *lease, now time.Time) bool { return l.holder != "" && now.Before(c.expiry(l)) }

// freeSince is when l became free: released, or expired.
func (c *core) freeSince(l *lease) time.Time {
	if l.holder == "" {
		return l.observedAt
	}
	return c.expiry(l)
}

// plan returns what to do now; nextPlan then says when to plan again
// (besides the inputs that make a plan due at once).
func (c *core) plan(now time.Time) []action {
	p := planner{c: c, now: now}
	c.refresh(&p)
	c.planMember(&p)
	c.planHandover(&p) // before planOwn: a handover done lets the next start
	c.planOwn(&p)
	c.planAcquire(&p)
	c.planCollect(&p)
	slices.SortStableFunc(p.acts, func(a, b action) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	})
	// Time-driven plans at least a batch apart (see timing.batch).
	c.replan, c.wakeAt = false, p.next
	if min := now.Add(c.t.batch()); !p.next.IsZero() && p.next.Before(min) {
		c.wakeAt = min
	}
	return p.acts
}

type planner struct {
	c    *core
	now  time.Time
	acts []action
	next time.Time
}

func (p *planner) do(a action) { p.acts = append(p.acts, a) }

// at asks to plan again at t (if it is later than now).
func (p *planner) at(t time.Time) {
	if t.After(p.now) && (p.next.IsZero() || t.Before(p.next)) {
		p.next = t
	}
}

// refresh recomputes the live replicas and effective holders, and the
// assignment if they changed.
func (c *core) refresh(p *planner) {
	live := []string{c.self}
	for id, r := range c.replicas {
		if id == c.self {
			continue
		}
		if c.held(r, p.now) {
			live = append(live, id)
			p.at(c.expiry(r))
			if c.hashes[id] != r.nodesHash {
				c.hashes[id] = r.nodesHash
				c.dirty = true
			}
			if _, ok := c.liveSince[id]; !ok {
				c.liveSince[id] = r.observedAt
			}
		}
	}
	slices.Sort(live)
	for id := range c.liveSince {
		if _, found := slices.BinarySearch(live, id); !found {
			delete(c.liveSince, id)
		}
	}
	if !slices.Equal(live, c.live) {
		c.live = live
		c.dirty = true
	}
	for _, n := range c.sorted {
		h := ""
		if l := c.leases[n]; l != nil && c.held(l, p.now) {
			h = l.holder
			if h != c.self {
				p.at(c.expiry(l))
			}
		}
		if cur, ok := c.eff[n]; !ok || cur != h {
			c.eff[n] = h
			c.dirty = true
		}
	}
	if c.dirty {
		assign(c.sorted, c.live, c.eff, c.desired)
		c.dirty = false
	}
}

// planMember writes the membership lease every RenewInterval: joined, or
// leaving once shutting (the first leave at once), and deletes it once
// every node is released.
func (c *core) planMember(p *planner) {
	if c.memberBusy || c.departSent {
		return
	}
	base := c.memberLast
	if base == nil {
		if r := c.replicas[c.self]; r != nil {
			base = r.obj
		}
	}
	switch {
	case c.shutting && base == nil: // never joined: nothing to leave
		c.leaveDone, c.departSent, c.departDone = true, true, true
		return
	case c.shutting && c.leaveDone && len(c.own) == 0:
		c.departSent = true
		p.do(action{kind: actDepart, base: base})
		return
	case p.now.Before(c.memberAt):
		p.at(c.memberAt)
		return
	}
	c.memberBusy = true
	kind := actJoin
	if c.shutting {
		kind = actLeave
	}
	p.do(action{kind: kind, base: base, hash: c.hash, count: len(c.sorted)})
}

// planOwn stops and releases this replica's nodes.
func (c *core) planOwn(p *planner) {
	var candidates []string // rebalance: held nodes another replica should serve
	for node, o := range c.own {
		switch o.phase {
		case serving, stopping:
			if !o.lost {
				if l := c.leases[node]; l == nil || !c.ours(l) {
					// Deleted or written by another: someone judged it
					// expired. Whatever the deadline says, stop acting.
					o.lost = true
					p.do(action{kind: actRevoke, node: node})
				}
			}
			if o.phase != serving {
				continue
			}
			_, inSet := c.nodes[node]
			switch {
			case o.lost:
				c.stop(p, node, o, ReasonLost)
			case c.shutting:
				c.stop(p, node, o, ReasonShutdown)
			case !inSet:
				c.stop(p, node, o, ReasonRemoved)
			case c.movable(p, node):
				candidates = append(candidates, node)
			}
		case stopped:
			c.planRelease(p, node, o)
		}
	}
	if len(candidates) > 0 && c.handover == "" {
		node := slices.Min(candidates)
		c.handover, c.handoverSince = node, time.Time{}
		c.stop(p, node, c.own[node], ReasonRebalance)
	}
}

func (c *core) stop(p *planner, node string, o *owned, reason Reason) {
	o.phase, o.reason = stopping, reason
	p.do(action{kind: actStop, node: node, reason: reason})
}

// planRelease gives up a stopped node's lease: deleted if the node left
// the set, released otherwise; a lost one only if it is still ours.
func (c *core) planRelease(p *planner, node string, o *owned) {
	if o.lost {
		if l := c.leases[node]; l == nil || !c.ours(l) || !c.held(l, p.now) {
			delete(c.own, node) // taken or expired: nothing to give back
			return
		}
	}
	if c.shutting && !c.leaveDone {
		return // the membership lease goes first
	}
	o.phase = releasing
	if _, inSet := c.nodes[node]; !inSet {
		p.do(action{kind: actRemove, node: node, base: o.last, reason: o.reason})
		return
	}
	p.do(action{kind: actRelease, node: node, base: o.last, reason: o.reason})
}

// movable reports whether a held node should go to the replica the
// assignment prefers now: it is live, settled, and serves the same node
// set (so it knows the node and agrees on the assignment).
func (c *core) movable(p *planner, node string) bool {
	d := c.desired[node]
	since, live := c.liveSince[d]
	if d == c.self || !live || c.hashes[d] != c.hash {
		return false
	}
	if settled := since.Add(c.t.renewInterval); p.now.Before(settled) {
		p.at(settled)
		return false
	}
	return true
}

// planHandover ends the wait for the node being handed over once another
// replica holds it, it is gone, it stayed free a lease duration (its
// desired owner did not take it; the fallback will), or this replica
// serves it again (its release failed, and it was adopted back).
func (c *core) planHandover(p *planner) {
	n := c.handover
	if n == "" {
		return
	}
	if o := c.own[n]; o != nil {
		if o.phase == serving {
			c.handover = ""
		}
		return
	}
	l := c.leases[n]
	switch {
	case l == nil, c.held(l, p.now) && l.holder != c.self:
		c.handover = ""
	case c.held(l, p.now):
		return // its release failed: planAcquire adopts it back
	default:
		since := c.freeSince(l)
		if c.handoverSince.After(since) {
			since = c.handoverSince
		}
		if end := since.Add(c.t.leaseDuration); p.now.Before(end) {
			p.at(end)
		} else {
			c.handover = ""
		}
	}
}

// planAcquire takes the free nodes this replica should serve, the leases
// held under its identity that it does not serve (its predecessor's, same
// identity and earlier process, or one whose write it saw fail) at once:
// they live as long as its membership lease, nobody else may take them.
// As a fallback it takes free nodes nobody took for a while (their desired
// owner may not know them): the n-th best replica by weight after n lease
// durations, so that fallbacks rarely race.
func (c *core) planAcquire(p *planner) {
	if c.shutting {
		return
	}
	settled := !c.joinedAt.IsZero() && !p.now.Before(c.joinedAt.Add(c.t.renewInterval))
	if !c.joinedAt.IsZero() && !settled {
		p.at(c.joinedAt.Add(c.t.renewInterval))
	}
	for _, n := range c.sorted {
		if c.own[n] != nil {
			continue
		}
		if t, ok := c.retryAt[n]; ok {
			if p.now.Before(t) {
				p.at(t)
				continue
			}
			delete(c.retryAt, n)
		}
		l := c.leases[n]
		var base *coordinationv1.Lease
		if l != nil {
			base = l.obj
		}
		switch {
		case l != nil && l.holder == c.self && c.held(l, p.now):
			// adopt what is held under this identity
		case l != nil && c.held(l, p.now), !settled:
			continue
		case c.desired[n] == c.self:
		default:
			since := c.nodes[n]
			if l != nil {
				since = c.freeSince(l)
			}
			t := since.Add(c.t.leaseDuration * time.Duration(c.rank(n)))
			if p.now.Before(t) {
				p.at(t)
				continue
			}
		}
		c.own[n] = &owned{phase: acquiring}
		p.do(action{kind: actAcquire, node: n, base: base})
	}
}

// rank is 1 + the number of live replicas, other than n's desired owner,
// that weigh more than this one for n.
func (c *core) rank(n string) int {
	rank, mine := 1, weight(c.self, n)
	for _, id := range c.live {
		if id != c.self && id != c.desired[n] && weight(id, n) > mine {
			rank++
		}
	}
	return rank
}

// planCollect deletes leftovers. Every replica deletes the leases held
// under its identity of nodes outside its set that it does not serve (its
// predecessor's, or one whose removal failed): they would live as long as
// its membership lease; they wait a lease duration after they were seen,
// for a node set still being discovered. One replica, the first live by
// name (so that replicas do not race for it), deletes the others: node
// leases outside its set, free for two lease durations, and membership
// leases expired as long (replicas that died without leaving).
func (c *core) planCollect(p *planner) {
	if c.shutting {
		return
	}
	for n, l := range c.leases {
		if _, inSet := c.nodes[n]; !inSet && l.holder == c.self && c.own[n] == nil {
			c.collect(p, l, l.observedAt.Add(c.t.leaseDuration))
		}
	}
	if len(c.live) == 0 || c.live[0] != c.self {
		return
	}
	grace := 2 * c.t.leaseDuration
	for n, l := range c.leases {
		if _, inSet := c.nodes[n]; inSet || c.own[n] != nil || c.held(l, p.now) {
			continue
		}
		c.collect(p, l, c.freeSince(l).Add(grace))
	}
	for id, r := range c.replicas {
		if id == c.self || c.held(r, p.now) {
			continue
		}
		c.collect(p, r, c.freeSince(r).Add(grace))
	}
}

func (c *core) collect(p *planner, l *lease, at time.Time) {
	if c.collecting[l.obj.Name] {
		return
	}
	if p.now.Before(at) {
		p.at(at)
		return
	}
	c.collecting[l.obj.Name] = true
	p.do(action{kind: actCollect, node: l.key, base: l.obj})
}
