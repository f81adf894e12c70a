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
// which stage to which, and why when the caller said) in one ZooKeeper
// transaction, guarded by the entry's version: two operators changing the
// same application at once both get recorded, in order, or the loser
// retries on the winner's result. Setting a stage an entry already has records nothing. History
// records are never rewritten; "vk-titus migration history my-app" and
// GET /api/v3/migration/history read them newest first.
//
// # Who is recorded
//
// A record's "by" is who made the change as far as anything can vouch for
// it, never what the caller typed:
//
//   - through the job API (Handler served behind an apiauth.Guard), the
//     authenticated user: a client certificate's CN or a token's user,
//     e.g. system:serviceaccount:ns:deployer;
//   - written straight to ZooKeeper (the CLI), "zk-digest:<user>" with
//     digest credentials, which the ACL checks, else "zk:<local user>",
//     which nothing checks.
//
// What the caller declared (the request's "by", the CLI's --by, else
// Titus's X-Titus-CallerId header) is kept beside it as "declaredBy", and
// X-Titus-CallReason as "reason". Records written before this carry only
// "by", as it was typed.
//
// # ZooKeeper ACLs
//
// With digest credentials (zk://user:password@host/path, or WithCredentials
// from a flag or a file) the session authenticates with them and every
// znode of the tree is created readable by the world and writable by that
// user only (zkacl.Credentials.ACL): any gateway or tool can follow the
// stages, only the owner can change them. Open brings a tree created
// without credentials under that ACL once. Without credentials nothing
// changes: the znodes are open to all, as before. A Store without the
// owner's credentials reads as usual and its writes fail with
// ErrForbidden. The password appears in no log line and no error.
//
// # Outages
//
// While ZooKeeper is unreachable, Resolve keeps answering from the last
// state it saw, and writes fail with ErrUnavailable; when ZooKeeper comes
// back the Store re-reads what changed and writes work again. Open itself
// fails when it cannot read the stages: a gateway that starts with only
// the default would send every migrated application back to it.
package migration
