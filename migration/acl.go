package migration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/apiauth"
	"github.com/vk-titus/vk-titus/zkacl"
)

// Option changes how Open connects.
type Option func(*options)

type options struct{ creds zkacl.Credentials }

// WithCredentials authenticates the session with digest credentials (from
// a flag or a file, see zkacl.ReadFile) instead of those of the URL.
// Zero credentials leave the URL's.
func WithCredentials(c zkacl.Credentials) Option { return func(o *options) { o.creds = c } }

// directAuthor is who a write is recorded as when no authenticated caller
// made it (a tool writing to ZooKeeper itself): the digest user, which
// ZooKeeper's ACL vouches for, else the local account, which nothing
// does. The prefixes tell them apart from the job API's users.
func directAuthor(c zkacl.Credentials) string {
	if !c.IsZero() {
		return "zk-digest:" + c.User
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "zk:" + u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return "zk:" + u
	}
	return "zk:uid-" + strconv.Itoa(os.Getuid())
}

// author is who a write by ctx's caller is recorded as, and what that
// caller declared: the job API's authenticated user (apiauth.From) when
// the write came through it, else this Store's own identity. A declared
// author given explicitly (by) wins over the X-Titus-CallerId header.
func (s *Store) author(ctx context.Context, by string) (author, declared, reason string) {
	id := apiauth.From(ctx)
	if id.IsZero() {
		return s.self, by, ""
	}
	declared = id.CallerID
	if by != "" {
		declared = by
	}
	return id.User, declared, id.CallReason
}

// secure brings a tree created before credentials were given under the
// Store's ACL: every entry and history record, then the directories and
// the root, and the version znode last. The version znode's ACL is thus
// the mark of a secured tree, and a tree that has it is not walked again:
// once its directories are protected, nobody without the credentials can
// add an open znode to it. A walk cut short is finished by the next Open.
//
// Without the owner's credentials (a tree secured by another user) it
// logs and returns nil: reads still work, and writes fail with
// ErrForbidden, which says why.
func (s *Store) secure(ctx context.Context) error {
	acl, _, err := s.conn.GetACL(s.l.version())
	if err != nil {
		return zkError("reading the ACL of "+s.l.version(), err)
	}
	if sameACL(acl, s.acl) {
		return nil
	}
	var children []string
	for _, dir := range []string{s.l.dir(ScopeApplication), s.l.dir(ScopeCapacityGroup), s.l.history()} {
		names, _, err := s.conn.Children(dir)
		if err != nil {
			return zkError("listing "+dir, err)
		}
		for _, n := range names {
			children = append(children, dir+"/"+n)
		}
	}
	set := func(p string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := s.conn.SetACL(p, s.acl, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return zkError("setting the ACL of "+p, err)
		}
		return nil
	}
	// The root first: if it is not ours, nothing is, and the walk stops
	// before trying every record.
	nodes := s.l.nodes()
	err = set(nodes[0])
	if err == nil {
		err = parallel(len(children), func(i int) error { return set(children[i]) })
	}
	for _, p := range nodes[1:] {
		if err != nil {
			break
		}
		err = set(p)
	}
	log := s.log.WithFields(logrus.Fields{"user": s.creds.User, "znodes": len(children) + len(s.l.nodes())})
	switch {
	case errors.Is(err, ErrForbidden):
		log.WithError(err).Warn("the migration stages belong to other ZooKeeper credentials: reading only")
		return nil
	case err != nil:
		return fmt.Errorf("securing the stages: %w", err)
	}
	log.Info("migration stages brought under their owner's ACL")
	return nil
}

// sameACL compares ACLs as sets: ZooKeeper keeps them in the order given.
func sameACL(a, b []zk.ACL) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x zk.ACL) bool { return !slices.Contains(b, x) })
}
