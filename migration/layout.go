package migration

import (
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

// ensure creates the root, the directories and the version node.
func (l layout) ensure(c *zk.Conn) error {
	for _, p := range []string{l.dir(ScopeApplication), l.dir(ScopeCapacityGroup), l.history(), l.version()} {
		if err := discovery.EnsurePath(c, p); err != nil {
			return err
		}
	}
	return nil
}
