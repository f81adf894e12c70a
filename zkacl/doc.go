// Package zkacl carries ZooKeeper digest credentials from where operators
// put them (a zk://user:password@host/path URL, a flag, a file) to the two
// places that need them: the session's digest authentication and the ACL
// of every znode a component creates.
//
// # The ACL
//
// With credentials, znodes are created readable by the world and writable
// only by the owner: zk.WorldACL(zk.PermRead) plus zk.DigestACL(zk.PermAll,
// user, password). Readers (every gateway, every tool that lists stages)
// need no secret; a writer without the owner's credentials gets
// zk.ErrNoAuth. Without credentials the ACL is the world's, all
// permissions, as before: nothing changes for a setup that sets none.
//
// # Invariants
//
//   - A password never reaches a log line or an error: Credentials prints
//     as "user:[redacted]" whatever the verb, and every error about a URL
//     names it through Redact.
//   - SplitURL returns a URL without credentials, so code downstream (which
//     logs and wraps URLs freely) never sees the password at all.
//
// The package holds no state and starts nothing; it has no locks.
package zkacl
