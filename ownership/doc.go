// Package ownership decides which bridge replica serves which agent's
// virtual node, and makes sure that no two replicas act for one node at the
// same time.
//
// # The story
//
// Every replica holds a membership Lease, vk-titus-replica-<identity>, in
// the bridge's namespace, renewed every RenewInterval and annotated with
// a hash of the node set it was given (SetNodes). Every node has an
// ownership Lease, vk-titus-node-<node>, whose holderIdentity is the
// replica serving it (it is not the kubelet's node lease in
// kube-node-lease, which the serving node keeps renewing as before). Both
// carry the label vk-titus.io/lease (replica or node), and each replica
// watches them all through one informer: there is no polling per lease.
//
// A node lease is written only when its ownership changes (acquired,
// released, deleted), never renewed: it lives as long as its holder's
// membership lease. So an idle replica writes one lease per RenewInterval
// (15 writes a minute at the default 4s), whatever the number of nodes it
// holds.
//
// A membership lease is live while, on the observer's own clock, less
// than its leaseDurationSeconds has passed since the observer saw it
// change (a new resourceVersion): the holder's renewTime is never compared
// with the local clock, as in client-go's leaderelection. A replica is
// live while its membership lease is and has a holder (a replica always
// counts itself live). A node lease is held while its holder's membership
// lease is live (leaving included), or while less than its duration has
// passed since it was seen to change (an acquisition seen before the
// holder's membership); a released one (no holder) is free at once, and
// one whose holder has no membership lease is free a duration after its
// own last change.
//
// From the live replicas, their node-set hashes and the current holders,
// every replica computes the same assignment (assign): shares that differ
// by at most one, sticky (a replica keeps what it holds up to its share),
// rendezvous-hashed for what must be placed. A replica then
//
//   - acquires a node whose lease is free (absent, released or expired)
//     when the assignment gives it the node. A node free for a lease
//     duration times its rank is taken by the others in turn (its desired
//     owner may not know it yet). A node lease held under the replica's
//     identity that it does not serve is adopted at once: its
//     predecessor's (same identity, another incarnation, recorded in the
//     vk-titus.io/incarnation annotation), or one whose write it saw fail.
//     Nobody else may take them while its membership lease lives;
//   - hands over a node it holds beyond its share to the replica the
//     assignment gives it to, if that one is live and serves the same node
//     set: Handler.Stop, then the lease is released; one node at a time
//     per releasing replica, the next once another replica holds the
//     previous one (or a lease duration after its release);
//   - stops a node that left its node set and deletes its lease (and
//     deletes, a lease duration after it saw them, the leases held under
//     its identity of nodes outside its set that it does not serve);
//   - stops a node whose lease another replica wrote, at once;
//   - on shutdown (ctx ended: SIGTERM) writes its membership lease without
//     holder first (leaving: the others stop counting it, so what it
//     releases goes straight to its new owners, while the node leases it
//     still holds live on), renewed so meanwhile; stops every node,
//     releases every lease (holderIdentity cleared, duration kept: the
//     others see the release through their informer and acquire at once),
//     then deletes its membership lease. Deleting it first would free
//     every node lease older than a lease duration before its node
//     stopped.
//
// A replica acquires (other than adopting) only a RenewInterval after its
// membership lease was first written, and hands nodes to a newcomer only
// once it has been live as long: replicas started together see each other
// before they take anything, instead of the first taking every node and
// handing most of them over one by one.
//
// One replica, the first live one by name, deletes leftovers: node leases
// outside its node set and membership leases of replicas that died, once
// free or expired for two lease durations.
//
// # Fencing and its margin
//
// Each held node has a Fence, given to Handler.Serve. It ends at
// lastSent + RenewDeadline, measured on the holder's monotonic clock from
// when the last successful membership write, or the node's acquiring
// write if later, was sent: every successful membership renewal extends
// every fence the replica holds. The other replicas take the node lease
// no earlier than LeaseDuration after they observed the later of the two
// writes, which is after it was sent. So with rates of clock
// skew up to ρ, the holder has stopped before anyone else may act as long
// as RenewDeadline·(1+ρ) + δ < LeaseDuration·(1−ρ), δ being how long a
// mutation issued just before the deadline takes to land. With the
// defaults (LeaseDuration 12s, RenewDeadline 8s, RenewInterval 4s,
// RetryPeriod 2s) the margin is 4s: ρ up to 20% with δ = 0, or δ up to 4s
// with exact clocks. Mutations must therefore be issued under
// Fence.Context (cancelled when the fence ends) and checked with
// Fence.Valid right before they go. A replica whose membership renewals
// fail loses every node at once, at the renew deadline. A takeover after
// a replica dies takes at most LeaseDuration (from its last membership
// renewal observed) plus the node's start.
//
// # Shape: a pure core and a thin shell
//
// The core (core.go, assign.go) decides everything and does no I/O and
// reads no clock: observations, the node set and the outcomes of its
// actions come in through its methods with their times, and plan returns
// the actions to perform (etcd raft's Ready). The Manager (manager.go) is
// the shell: it runs the informer, performs the actions (lease writes in
// at most Workers goroutines, membership writes and releases first;
// Handler.Stop calls in at most StopConcurrency), extends the fences on a
// successful membership write and feeds the results back.
//
// A plan walks every node, so the shell plans only when the core says one
// is due: at once after an input that may change a decision (a holder
// change, a membership appearing, expiring or leaving, a result other than
// a successful membership renewal, the node set), otherwise at the next
// deadline the last plan found (the membership renewal, an expiry), and
// such time-driven plans at least RetryPeriod/4 apart. In steady state,
// where every input is some replica renewing its membership, a replica
// plans a few times per RenewInterval whatever the number of nodes.
//
// # Invariants
//
//   - A node has at most one write of this replica in flight, and the core
//     emits an action for a node only when none is.
//   - Every write is conditional: on the resourceVersion it starts from
//     (the last observed or written object), or a create. A 409 is counted
//     in vktitus_write_conflicts_total; in steady state there is none.
//   - Handler.Serve and Handler.Stop alternate for a node, Serve first;
//     the node's lease is released only after Stop returned and the fence
//     ended.
//   - A fence never comes back: a node taken again gets a new one.
//   - A lease written by another process (holder or incarnation not this
//     one's) while this replica serves the node ends the fence at once.
//
// # Locks
//
// The loop goroutine owns the core, the fences map and the queues.
// Manager.mu guards only the inbox (informer events, SetNodes, results,
// fence expiries) and is a leaf. Fence.mu and wakeup.mu guard their own
// fields and are leaves; neither is held while calling a clock's timer
// methods, because a fake clock runs timer functions under its own lock.
package ownership
