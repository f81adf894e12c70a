package migration

import (
	"errors"
	"path"

	"github.com/go-zookeeper/zk"

	"github.com/vk-titus/vk-titus/discovery"
)

// The znodes under the root:
//
//	application/<name>          Entry JSON
//	capacityGroup/<name>        Entry JSON
//	history/change-<10 digits>  Change JSON, persistent sequential, never rewritten
//	version                     the last Change JSON; its znode version counts changes
//
// Every write changes an entry, adds a history record and bumps version in
// one transaction, so a Store needs a single watch (on version) to follow
// any number of entries: one change since the last read names the entry to
// re-read, more than one (missed while disconnected) means reading all.
type layout struct{ root string }

const historyPrefix = "change-"

func (l layout) dir(s Scope) string             { return path.Join(l.root, string(s)) }
func (l layout) entry(s Scope, n string) string { return path.Join(l.root, string(s), n) }
func (l layout) history() string                { return path.Join(l.root, "history") }
func (l layout) version() string                { return path.Join(l.root, "version") }

// nodes are the znodes of the tree itself, parents first.
func (l layout) nodes() []string {
	return []string{l.root, l.dir(ScopeApplication), l.dir(ScopeCapacityGroup), l.history(), l.version()}
}

// ensure creates the root, the directories and the version node with acl.
// The root's parents are shared with other components (/vk-titus): they
// get ZooKeeper's open default, which lets nobody remove a non-empty root.
func (l layout) ensure(c *zk.Conn, acl []zk.ACL) error {
	if err := discovery.EnsurePath(c, path.Dir(l.root)); err != nil {
		return err
	}
	for _, p := range l.nodes() {
		// Exists first: on a protected tree, a reader without credentials
		// may not even try to create (ZooKeeper checks the parent's ACL
		// before the child's existence).
		ok, _, err := c.Exists(p)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if _, err := c.Create(p, nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}
