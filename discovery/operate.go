package discovery

import (
	"context"
	"fmt"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/master/calls"
)

// reservedFor sums the scalars of rs dynamically reserved for role (the
// last reservation of the refined format names the role that holds them).
func reservedFor(rs []mesos.Resource, role string) Resources {
	var out Resources
	if role == "" {
		return out
	}
	for _, r := range rs {
		if n := len(r.Reservations); n > 0 && r.Reservations[n-1].GetRole() == role {
			out.add([]mesos.Resource{r})
		}
	}
	return out
}

// Operate sends c, a call answered with no data (RESERVE_RESOURCES,
// UNRESERVE_RESOURCES), to the leading master as the watcher finds it: the
// leader in ZooKeeper, or the fixed master, following its 307 to the
// leader once. The error wraps the master's answer (mesos-go apierrors:
// match a status with apierrors.Code(...).Matches). It is safe to call from
// any goroutine and never waits for a poll.
func (w *AgentWatcher) Operate(ctx context.Context, c *master.Call) error {
	base, err := w.leaderURL()
	if err != nil {
		return fmt.Errorf("%s: %w", c.Type, err)
	}
	err = w.operate(ctx, base, c)
	if leader := w.redirected(base, err); leader != "" {
		err = w.operate(ctx, leader, c)
	}
	return err
}

func (w *AgentWatcher) operate(ctx context.Context, base string, c *master.Call) error {
	mc := w.client(base)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	res, err := mc.sender.Send(ctx, calls.NonStreaming(c))
	if res != nil {
		res.Close()
	}
	if err != nil {
		if apierrors.CodeNotAuthenticated.Matches(err) {
			return fmt.Errorf("master %s: %s: %w", base, c.Type, mc.unauthorized)
		}
		return fmt.Errorf("master %s: %s: %w", base, c.Type, err)
	}
	return nil
}
