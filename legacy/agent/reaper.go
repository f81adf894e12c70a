package agent

import (
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// procReaper is the only place this process's children are waited for: one
// goroutine (one thread blocked in waitid) for every container and session
// of every Agent in the process, instead of a goroutine and a pidfd per
// child. It is one per process, not per agent, because waitid(P_ALL) sees
// all of a process's children: reapers of several agents in one process
// (--count) would each take the others' exits for strangers'. It runs for
// the life of the process and idles (blocked on kick) without children.
//
// Lock order: Agent.mu, then procReaper.mu (an agent registers and drops
// its pids under its own lock).
type procReaper struct {
	log logrus.FieldLogger

	// forkMu: launchers of every agent hold it for reading from fork until
	// the pid is registered; run takes it for writing before deciding a pid
	// is no agent's, so a child that exits instantly is never mistaken for
	// a stranger's.
	forkMu sync.RWMutex
	kick   chan struct{}

	mu     sync.Mutex
	owners map[int]*Agent // pid → the agent whose byPid holds it
}

var theReaper = sync.OnceValue(func() *procReaper {
	r := &procReaper{
		log:    logrus.WithField("component", "reaper"),
		kick:   make(chan struct{}, 1),
		owners: map[int]*Agent{},
	}
	go r.run()
	return r
})

// sharedDevNull is every in-process container's and session's stdin: one
// descriptor per process, never closed.
var sharedDevNull = sync.OnceValues(func() (*os.File, error) {
	return os.OpenFile(os.DevNull, os.O_RDONLY, 0)
})

// wake tells run that a child was started (it may be blocked on "no
// children").
func (r *procReaper) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// own routes pid's exit to a. Call with a.mu held.
func (r *procReaper) own(pid int, a *Agent) {
	r.mu.Lock()
	r.owners[pid] = a
	r.mu.Unlock()
}

// disown forgets pid once reaped. Call with the owner's mu held.
func (r *procReaper) disown(pid int) {
	r.mu.Lock()
	delete(r.owners, pid)
	r.mu.Unlock()
}

func (r *procReaper) owner(pid int) *Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owners[pid]
}

func (r *procReaper) reap(pid int, known bool) bool {
	a := r.owner(pid)
	return a != nil && a.reapOurs(pid, known)
}

func (r *procReaper) run() {
	backoff := time.Millisecond
	for {
		pid, err := peekExited()
		if err == syscall.ECHILD {
			<-r.kick
			continue
		}
		if err != nil {
			r.log.WithError(err).Error("waitid failed")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if r.reap(pid, true) {
			backoff = time.Millisecond
			continue
		}
		// Wait for launches in flight to register their pids, then look again.
		r.forkMu.Lock()
		r.forkMu.Unlock() //nolint:staticcheck // used as a barrier
		if r.reap(pid, true) {
			continue
		}
		// A child started by other code in this process. Leave it to its
		// owner; until it is reaped waitid keeps returning it, so poll the
		// agents' pids meanwhile.
		r.log.WithField("pid", pid).Debug("exited child is not a container; leaving it to its owner")
		time.Sleep(backoff)
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
		r.scan()
	}
}

// scan reaps every agent pid that has exited, without waitid's help.
func (r *procReaper) scan() {
	r.mu.Lock()
	pids := make(map[int]*Agent, len(r.owners))
	for pid, a := range r.owners {
		pids[pid] = a
	}
	r.mu.Unlock()
	for pid, a := range pids {
		a.reapOurs(pid, false)
	}
}
