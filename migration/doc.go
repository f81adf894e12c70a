// Package migration decides, job by job, whether an application runs on
// the legacy platform or on Kubernetes, and keeps that decision in
// ZooKeeper where every gateway follows it.
//
// # Why stages
//
// Applications move one at a time, and not in one step. Each application
// (or a whole capacity group at once) has a Stage: "legacy", a share such
// as "5%" or "50%" of its new jobs sent to Kubernetes as a canary, then
// "kube". An application's own entry wins over its capacity group's, which
// wins over the gateway's default; so a capacity group can move as a block
// while one application in it is held back, or sent ahead.
//
// # Why only new jobs move
//
// The gateway asks Resolve for every new job and calls Stage.Kube with the
// new job's id. A job stays on the backend it started on until it ends:
// moving a running job would mean killing it, and the point of a staged
// migration is that nobody notices. The choice is a hash of the job id, so
// it is the same however often it is asked, and raising the share only
// adds jobs to Kubernetes; it never sends one back.
//
// # Rollback is one command
//
//	vk-titus migration set my-app legacy
//
// takes effect in every gateway within about a second: each Store watches
// ZooKeeper (no polling) and answers Resolve from memory. Jobs already
// started on Kubernetes finish there; new ones go to legacy again.
// "vk-titus migration unset my-app" hands the application back to its
// capacity group or the default.
//
// # The history is the audit trail
//
// Every change writes the entry and a history record (who, when, from
// which stage to which) in one ZooKeeper transaction, guarded by the
// entry's version: two operators changing the same application at once
// both get recorded, in order, or the loser retries on the winner's
// result. Setting a stage an entry already has records nothing. History
// records are never rewritten; "vk-titus migration history my-app" and
// GET /api/v3/migration/history read them newest first.
//
// # Outages
//
// While ZooKeeper is unreachable, Resolve keeps answering from the last
// state it saw, and writes fail with ErrUnavailable; when ZooKeeper comes
// back the Store re-reads what changed and writes work again. Open itself
// fails when it cannot read the stages: a gateway that starts with only
// the default would send every migrated application back to it.
package migration
