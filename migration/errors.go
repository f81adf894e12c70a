package migration

import (
	"errors"
	"net"

	"github.com/go-zookeeper/zk"
)

var (
	// ErrUnavailable: ZooKeeper could not be reached (or the session was
	// lost mid-request). A write that fails this way may or may not have
	// been applied; setting the same stage again is safe, as it is a no-op
	// once applied.
	ErrUnavailable = errors.New("zookeeper unavailable")
	// ErrInvalid: a malformed stage, scope, name or author.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no entry for that scope and name.
	ErrNotFound = errors.New("not found")
	// ErrConflict: other writers kept changing the entry between our read
	// and our write, more often than we retry.
	ErrConflict = errors.New("concurrent update")
	// ErrForbidden: ZooKeeper refused the write: the znodes' ACL lets only
	// their owner write, and this Store lacks the owner's credentials.
	ErrForbidden = errors.New("zookeeper refused the write: give the stages' owner credentials (zk://user:password@...)")
)

// unreachable tells the errors that mean "ZooKeeper could not be asked"
// from the ones ZooKeeper answered with.
func unreachable(err error) bool {
	for _, e := range []error{zk.ErrNoServer, zk.ErrConnectionClosed, zk.ErrSessionExpired,
		zk.ErrSessionMoved, zk.ErrClosing} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error // a write to a dying connection
	return errors.As(err, &ne)
}
