// Package observe is the gateway's one fan-out of job and task changes:
// what ObserveJobs, ObserveJob and ObserveJobsWithKeepAlive stream.
//
// A Hub follows the change feed of every world (legacyapi.Observer: the
// legacy master's over HTTP, the Kubernetes backend's in process) and
// keeps the active set: every job and task that has not finished, as its
// world last showed it, already converted to the notification streams
// send. A new Subscription gets a snapshot of the active set that matches
// its criteria, then every matching change, in the order the hub took
// them. A world's feed that reconnects (a new legacy leader, a feed that
// fell behind) starts with a snapshot, which the hub compares with what it
// holds: only real changes reach the streams, and what is missing from it
// has left (archived).
//
// Invariants:
//   - A job or task that finishes, or leaves its world, is sent once more,
//     with archived set, and then dropped: the active set holds only what
//     has not finished, so its size is the worlds' live size.
//   - Nothing is sent twice in a row unchanged: a change equal to what the
//     hub holds is dropped.
//   - A job's end is sent after its tasks' ends: a world is read as it is,
//     so its feed may show a job finished before its tasks, and the hub
//     holds the job's end until its last active task has left.
//   - Memory per subscription is bounded (Config.StreamBuffer notifications
//     of shared, immutable messages). The hub never waits for a
//     subscriber: one whose buffer is full is dropped with ErrTooSlow, and
//     the stream ends with RESOURCE_EXHAUSTED.
//   - No subscription sees a snapshot before every world has sent its
//     first: a stream opened while a world is still unknown waits
//     (Config.SyncWait), then fails with ErrNotSynced, rather than miss
//     jobs.
//
// Lock rule: Hub.mu guards the active set and the subscriptions; it is
// never held while calling a world (lookups of what left during a
// reconnect happen outside it) or while sending on a stream. Notifications
// in the active set are never changed once stored: subscribers share them.
package observe
