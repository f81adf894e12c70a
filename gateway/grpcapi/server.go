package grpcapi

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // clouddriver sends X-Titus-Compression: gzip
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// Server implements titus.JobManagementServiceServer over a Backend and a
// Hub.
type Server struct {
	titus.UnimplementedJobManagementServiceServer
	b      legacyapi.Backend
	hub    *observe.Hub
	limits legacyapi.Limits
	log    logrus.FieldLogger
}

// New serves b, its streams from hub, holding descriptors to limits.
func New(b legacyapi.Backend, hub *observe.Hub, limits legacyapi.Limits, log logrus.FieldLogger) *Server {
	return &Server{b: b, hub: hub, limits: limits, log: log}
}

// Options are the server settings, explicit rather than grpc-go's
// defaults: messages up to a descriptor's size bound, a cap on streams per
// connection, and keep-alives that find clients gone without a word.
func Options(maxStreamsPerConn uint32) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(2 * legacyapi.MaxBodyBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(10 * time.Second),
	}
}

// Register adds s to g.
func (s *Server) Register(g *grpc.Server) { titus.RegisterJobManagementServiceServer(g, s) }

// Code is the Titus status code of a Backend or hub error.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, legacyapi.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, legacyapi.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, legacyapi.ErrTerminating), errors.Is(err, legacyapi.ErrConflict):
		return codes.FailedPrecondition
	case errors.Is(err, legacyapi.ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, observe.ErrTooSlow), errors.Is(err, observe.ErrTooMany):
		return codes.ResourceExhausted
	case errors.Is(err, legacyapi.ErrUnavailable), errors.Is(err, observe.ErrNotSynced):
		return codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Internal
}

// fail turns err into the status the client gets; server-side failures
// are logged with the call.
func (s *Server) fail(ctx context.Context, call string, err error) error {
	if err == nil {
		return nil
	}
	code := Code(err)
	if code == codes.Internal || code == codes.Unavailable {
		s.log.WithError(err).WithFields(logrus.Fields{"call": call, "caller": caller(ctx)}).Warn("job API call failed")
	}
	return status.Error(code, err.Error())
}

// caller is who clouddriver and titus-cli say they are.
func caller(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-titus-callerid"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Server) done(ctx context.Context, call string, fields logrus.Fields, err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, s.fail(ctx, call, err)
	}
	fields["caller"] = caller(ctx)
	s.log.WithFields(fields).Info(call)
	return &emptypb.Empty{}, nil
}

// CreateJob implements titus.JobManagementServiceServer.
func (s *Server) CreateJob(ctx context.Context, req *titus.JobDescriptor) (*titus.JobId, error) {
	id, err := legacyapi.CreateJob(ctx, s.b, s.limits, req)
	if err != nil {
		return nil, s.fail(ctx, "CreateJob", err)
	}
	s.log.WithFields(logrus.Fields{"job": id, "application": req.GetApplicationName(), "caller": caller(ctx)}).Info("job accepted")
	return &titus.JobId{Id: id}, nil
}

func (s *Server) updateJob(ctx context.Context, call, id string, u legacyapi.JobUpdate) (*emptypb.Empty, error) {
	err := u.Check(s.limits)
	if err == nil {
		err = s.b.UpdateJob(ctx, id, u)
	}
	return s.done(ctx, call, logrus.Fields{"job": id}, err)
}

// UpdateJobCapacity implements titus.JobManagementServiceServer.
func (s *Server) UpdateJobCapacity(ctx context.Context, req *titus.JobCapacityUpdate) (*emptypb.Empty, error) {
	if req.GetCapacity() == nil {
		return nil, status.Error(codes.InvalidArgument, "Capacity: required")
	}
	return s.updateJob(ctx, "UpdateJobCapacity", req.GetJobId(), legacyapi.JobUpdate{Capacity: legacyapi.FullCapacity(legacyapi.CapacityFromProto(req.GetCapacity()))})
}

// UpdateJobCapacityWithOptionalAttributes implements
// titus.JobManagementServiceServer.
func (s *Server) UpdateJobCapacityWithOptionalAttributes(ctx context.Context, req *titus.JobCapacityUpdateWithOptionalAttributes) (*emptypb.Empty, error) {
	return s.updateJob(ctx, "UpdateJobCapacityWithOptionalAttributes", req.GetJobId(),
		legacyapi.JobUpdate{Capacity: legacyapi.CapacityUpdateFromProto(req.GetJobCapacityWithOptionalAttributes())})
}

// UpdateJobStatus implements titus.JobManagementServiceServer.
func (s *Server) UpdateJobStatus(ctx context.Context, req *titus.JobStatusUpdate) (*emptypb.Empty, error) {
	enabled := req.GetEnableStatus()
	return s.updateJob(ctx, "UpdateJobStatus", req.GetId(), legacyapi.JobUpdate{Enabled: &enabled})
}

// UpdateJobProcesses implements titus.JobManagementServiceServer.
func (s *Server) UpdateJobProcesses(ctx context.Context, req *titus.JobProcessesUpdate) (*emptypb.Empty, error) {
	return s.updateJob(ctx, "UpdateJobProcesses", req.GetJobId(), legacyapi.JobUpdate{Processes: legacyapi.ProcessesFromProto(req.GetServiceJobProcesses())})
}

// UpdateJobDisruptionBudget implements titus.JobManagementServiceServer.
func (s *Server) UpdateJobDisruptionBudget(ctx context.Context, req *titus.JobDisruptionBudgetUpdate) (*emptypb.Empty, error) {
	u, err := legacyapi.BudgetUpdate(req.GetDisruptionBudget())
	if err != nil {
		return nil, s.fail(ctx, "UpdateJobDisruptionBudget", err)
	}
	return s.updateJob(ctx, "UpdateJobDisruptionBudget", req.GetJobId(), u)
}

// UpdateJobAttributes implements titus.JobManagementServiceServer.
func (s *Server) UpdateJobAttributes(ctx context.Context, req *titus.JobAttributesUpdate) (*emptypb.Empty, error) {
	attrs := req.GetAttributes()
	if attrs == nil {
		attrs = map[string]string{}
	}
	return s.updateJob(ctx, "UpdateJobAttributes", req.GetJobId(), legacyapi.JobUpdate{Attributes: attrs})
}

// DeleteJobAttributes implements titus.JobManagementServiceServer.
func (s *Server) DeleteJobAttributes(ctx context.Context, req *titus.JobAttributesDeleteRequest) (*emptypb.Empty, error) {
	return s.updateJob(ctx, "DeleteJobAttributes", req.GetJobId(), legacyapi.JobUpdate{DeleteAttributes: append([]string{}, req.GetKeys()...)})
}

// FindJobs implements titus.JobManagementServiceServer.
func (s *Server) FindJobs(ctx context.Context, req *titus.JobQuery) (*titus.JobQueryResult, error) {
	page, err := legacyapi.PageFromProto(req.GetPage())
	if err != nil {
		return nil, s.fail(ctx, "FindJobs", err)
	}
	c, err := legacyapi.ParseCriteria(req.GetFilteringCriteria())
	if err != nil {
		return nil, s.fail(ctx, "FindJobs", err)
	}
	res, err := s.b.FindJobs(ctx, legacyapi.JobQuery{Page: page, Criteria: c, Fields: req.GetFields()})
	if err != nil {
		return nil, s.fail(ctx, "FindJobs", err)
	}
	out, err := legacyapi.JobsToProto(res, req.GetFields())
	return out, s.fail(ctx, "FindJobs", err)
}

// FindJob implements titus.JobManagementServiceServer.
func (s *Server) FindJob(ctx context.Context, req *titus.JobId) (*titus.Job, error) {
	j, err := s.b.GetJob(ctx, req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "FindJob", err)
	}
	p, err := legacyapi.JobToProto(j)
	return p, s.fail(ctx, "FindJob", err)
}

// KillJob implements titus.JobManagementServiceServer.
func (s *Server) KillJob(ctx context.Context, req *titus.JobId) (*emptypb.Empty, error) {
	return s.done(ctx, "KillJob", logrus.Fields{"job": req.GetId()}, s.b.KillJob(ctx, req.GetId()))
}

// FindTask implements titus.JobManagementServiceServer.
func (s *Server) FindTask(ctx context.Context, req *titus.TaskId) (*titus.Task, error) {
	t, err := s.b.GetTask(ctx, req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "FindTask", err)
	}
	return legacyapi.TaskToProto(t), nil
}

// FindTasks implements titus.JobManagementServiceServer.
func (s *Server) FindTasks(ctx context.Context, req *titus.TaskQuery) (*titus.TaskQueryResult, error) {
	page, err := legacyapi.PageFromProto(req.GetPage())
	if err != nil {
		return nil, s.fail(ctx, "FindTasks", err)
	}
	c, err := legacyapi.ParseCriteria(req.GetFilteringCriteria())
	if err != nil {
		return nil, s.fail(ctx, "FindTasks", err)
	}
	res, err := s.b.FindTasks(ctx, legacyapi.TaskQuery{Page: page, Criteria: c, Fields: req.GetFields()})
	if err != nil {
		return nil, s.fail(ctx, "FindTasks", err)
	}
	return legacyapi.TasksToProto(res, req.GetFields()), nil
}

// KillTask implements titus.JobManagementServiceServer.
func (s *Server) KillTask(ctx context.Context, req *titus.TaskKillRequest) (*emptypb.Empty, error) {
	k := legacyapi.TaskKill{Shrink: req.GetShrink(), PreventMinSizeUpdate: req.GetPreventMinSizeUpdate()}
	return s.done(ctx, "KillTask", logrus.Fields{"task": req.GetTaskId(), "shrink": k.Shrink}, s.b.KillTask(ctx, req.GetTaskId(), k))
}

func (s *Server) updateTask(ctx context.Context, call, id string, u legacyapi.TaskUpdate) (*emptypb.Empty, error) {
	err := u.Check()
	if err == nil {
		err = s.b.UpdateTask(ctx, id, u)
	}
	return s.done(ctx, call, logrus.Fields{"task": id}, err)
}

// UpdateTaskAttributes implements titus.JobManagementServiceServer.
func (s *Server) UpdateTaskAttributes(ctx context.Context, req *titus.TaskAttributesUpdate) (*emptypb.Empty, error) {
	attrs := req.GetAttributes()
	if attrs == nil {
		attrs = map[string]string{}
	}
	return s.updateTask(ctx, "UpdateTaskAttributes", req.GetTaskId(), legacyapi.TaskUpdate{Attributes: attrs})
}

// DeleteTaskAttributes implements titus.JobManagementServiceServer.
func (s *Server) DeleteTaskAttributes(ctx context.Context, req *titus.TaskAttributesDeleteRequest) (*emptypb.Empty, error) {
	return s.updateTask(ctx, "DeleteTaskAttributes", req.GetTaskId(), legacyapi.TaskUpdate{DeleteAttributes: append([]string{}, req.GetKeys()...)})
}

// MoveTask implements titus.JobManagementServiceServer.
func (s *Server) MoveTask(ctx context.Context, req *titus.TaskMoveRequest) (*emptypb.Empty, error) {
	m := legacyapi.TaskMove{SourceJobID: req.GetSourceJobId(), TargetJobID: req.GetTargetJobId(), TaskID: req.GetTaskId()}
	err := m.Check()
	if err == nil {
		err = s.b.MoveTask(ctx, m)
	}
	return s.done(ctx, "MoveTask", logrus.Fields{"task": m.TaskID, "from": m.SourceJobID, "to": m.TargetJobID}, err)
}
