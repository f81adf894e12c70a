package grpcapi

import (
	"context"
	"errors"
	"io"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacyapi"
)

var snapshotEnd = &titus.JobChangeNotification{
	Notification: &titus.JobChangeNotification_SnapshotEnd_{SnapshotEnd: &titus.JobChangeNotification_SnapshotEnd{}},
}

// view is what one stream asked for.
type view struct {
	criteria              legacyapi.Criteria
	jobFields, taskFields []string
	// last tells whether note is the stream's last (ObserveJob: its job
	// finished).
	last func(note *titus.JobChangeNotification) bool
	// start, once subscribed, may answer the whole stream itself (done).
	start func(ctx context.Context, snap []*titus.JobChangeNotification) (done bool, err error)
}

// ObserveJobs implements titus.JobManagementServiceServer: a snapshot of
// the matching active jobs and tasks, snapshotEnd, then every change, for
// as long as the client stays.
func (s *Server) ObserveJobs(req *titus.ObserveJobsQuery, stream grpc.ServerStreamingServer[titus.JobChangeNotification]) error {
	v, err := viewOf(req)
	if err != nil {
		return s.fail(stream.Context(), "ObserveJobs", err)
	}
	return s.observe(stream.Context(), "ObserveJobs", v, stream.Send, nil)
}

func viewOf(q *titus.ObserveJobsQuery) (view, error) {
	c, err := legacyapi.ParseCriteria(q.GetFilteringCriteria())
	return view{criteria: c, jobFields: q.GetJobFields(), taskFields: q.GetTaskFields()}, err
}

// ObserveJob implements titus.JobManagementServiceServer: ObserveJobs of
// one job, which ends once the job has finished. A job that finished
// before the call gets its last state and snapshotEnd.
func (s *Server) ObserveJob(req *titus.JobId, stream grpc.ServerStreamingServer[titus.JobChangeNotification]) error {
	id := req.GetId()
	v := view{criteria: legacyapi.Criteria{JobIDs: []string{id}}, last: func(n *titus.JobChangeNotification) bool {
		u := n.GetJobUpdate()
		return u != nil && u.GetJob().GetId() == id && u.GetJob().GetStatus().GetState() == titus.JobStatus_Finished
	}}
	// Read after subscribing: an end before the read shows in it, an end
	// after it comes through the subscription.
	v.start = func(ctx context.Context, snap []*titus.JobChangeNotification) (bool, error) {
		j, err := s.b.GetJob(ctx, id)
		if err != nil || j.Status.State != legacyapi.JobFinished {
			return false, err
		}
		p, err := legacyapi.JobToProto(j)
		if err != nil {
			return false, err
		}
		note := &titus.JobChangeNotification{Notification: &titus.JobChangeNotification_JobUpdate_{
			JobUpdate: &titus.JobChangeNotification_JobUpdate{Job: p, Archived: true}}, Timestamp: p.GetStatus().GetTimestamp()}
		for _, n := range []*titus.JobChangeNotification{note, snapshotEnd} {
			if err := stream.Send(n); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	return s.observe(stream.Context(), "ObserveJob", v, stream.Send, nil)
}

// ObserveJobsWithKeepAlive implements titus.JobManagementServiceServer:
// the first request is the query; each keep-alive request after it is
// answered in the stream behind every notification queued before it.
func (s *Server) ObserveJobsWithKeepAlive(stream grpc.BidiStreamingServer[titus.ObserveJobsWithKeepAliveRequest, titus.JobChangeNotification]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	q := first.GetQuery()
	if q == nil {
		return status.Error(codes.InvalidArgument, "the first request of ObserveJobsWithKeepAlive must be the query")
	}
	v, err := viewOf(q)
	if err != nil {
		return s.fail(ctx, "ObserveJobsWithKeepAlive", err)
	}
	return s.observe(ctx, "ObserveJobsWithKeepAlive", v, stream.Send, func(sub *observe.Subscription) error {
		for {
			req, err := stream.Recv()
			switch {
			case errors.Is(err, io.EOF):
				return nil // the client sends no more; the stream goes on
			case err != nil:
				return err
			case req.GetKeepAliveRequest() != nil:
				sub.KeepAlive(req.GetKeepAliveRequest())
			default:
				return status.Error(codes.InvalidArgument, "after the query, ObserveJobsWithKeepAlive takes keep-alive requests only")
			}
		}
	})
}

// observe runs one stream: subscribe, then send on a goroutine of its own
// (see the package doc) while waiting for it to end, for the hub to drop
// the subscription, or for recv (the keep-alive reader) to fail.
func (s *Server) observe(ctx context.Context, call string, v view, send func(*titus.JobChangeNotification) error,
	recv func(*observe.Subscription) error) error {
	sub, snap, err := s.hub.Subscribe(ctx, v.criteria)
	if err != nil {
		return s.fail(ctx, call, err)
	}
	defer sub.Close()
	if v.start != nil {
		if done, err := v.start(ctx, snap); done || err != nil {
			return s.fail(ctx, call, err)
		}
	}
	log := s.log.WithFields(logrus.Fields{"call": call, "caller": caller(ctx), "snapshot": len(snap)})
	log.Debug("stream opened")
	ended := make(chan error, 2)
	go func() { ended <- v.pump(ctx, sub, snap, send) }()
	if recv != nil {
		go func() {
			if err := recv(sub); err != nil {
				ended <- err
			}
		}()
	}
	select {
	case err := <-ended:
		return s.fail(ctx, call, err)
	case <-sub.Done():
		err := sub.Err()
		log.WithError(err).Info("stream dropped: the client does not keep up")
		return s.fail(ctx, call, err)
	}
}

// pump sends the snapshot, snapshotEnd and the changes, projected.
func (v view) pump(ctx context.Context, sub *observe.Subscription, snap []*titus.JobChangeNotification,
	send func(*titus.JobChangeNotification) error) error {
	for _, n := range snap {
		if err := send(v.project(n)); err != nil {
			return err
		}
	}
	if err := send(snapshotEnd); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.Done():
			return nil // observe reports why
		case n := <-sub.Notifications():
			if err := send(v.project(n)); err != nil {
				return err
			}
			if v.last != nil && v.last(n) {
				return nil
			}
		}
	}
}

// project applies the stream's field lists to a shared notification: a
// copy, cut down, when it has any.
func (v view) project(n *titus.JobChangeNotification) *titus.JobChangeNotification {
	switch {
	case n.GetJobUpdate() != nil && len(v.jobFields) > 0:
		c := proto.Clone(n).(*titus.JobChangeNotification)
		legacyapi.Project(c.GetJobUpdate().GetJob(), v.jobFields)
		return c
	case n.GetTaskUpdate() != nil && len(v.taskFields) > 0:
		c := proto.Clone(n).(*titus.JobChangeNotification)
		legacyapi.Project(c.GetTaskUpdate().GetTask(), v.taskFields)
		return c
	}
	return n
}
