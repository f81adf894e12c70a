package apiauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-titus/vk-titus/internal/testlog"
)

// whoAmI answers with the Identity the call was given, as JSON.
func whoAmI(ctx context.Context) *wrapperspb.StringValue {
	b, _ := json.Marshal(From(ctx))
	return wrapperspb.String(string(b))
}

func unary(name string) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { return whoAmI(ctx), nil }
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + GRPCService + "/" + name}, h)
	}}
}

// jobService stands for Titus's JobManagementService: two unary methods
// and a server stream, each answering with the caller's Identity.
var jobService = grpc.ServiceDesc{
	ServiceName: GRPCService,
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{unary("CreateJob"), unary("FindJobs"), unary("Unmapped")},
	Streams: []grpc.StreamDesc{{StreamName: "ObserveJobs", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		return ss.SendMsg(whoAmI(ss.Context()))
	}}},
}

var observeJobs = grpc.StreamDesc{StreamName: "ObserveJobs", ServerStreams: true}

// grpcServed serves jobService and the health service behind a Guard
// over an in-memory TLS connection.
func grpcServed(t *testing.T, c *cluster, anonReads bool) (*pki, func(certs ...tls.Certificate) *grpc.ClientConn) {
	t.Helper()
	p := newPKI(t)
	g, err := New(Config{Client: c.client, ClientCAFile: p.caFile, AllowAnonymousReads: anonReads, Log: testlog.New()})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := ServerTLS(p.certFile, p.keyFile, p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)),
		grpc.UnaryInterceptor(g.UnaryServerInterceptor()), grpc.StreamInterceptor(g.StreamServerInterceptor()))
	srv.RegisterService(&jobService, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	dial := func(certs ...tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient("passthrough:///bufnet",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(certs...))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	return p, dial
}

// callCtx carries a token and a declared caller, when given.
func callCtx(t *testing.T, token, callerID string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if callerID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-titus-callerid", callerID)
	}
	return ctx
}

// invoke calls a unary method and decodes the Identity it answered.
func invoke(ctx context.Context, conn *grpc.ClientConn, method string) (Identity, codes.Code) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/"+GRPCService+"/"+method, wrapperspb.String(""), out)
	var id Identity
	if err == nil {
		_ = json.Unmarshal([]byte(out.GetValue()), &id)
	}
	return id, status.Code(err)
}

// observe opens the stream and reads its one message.
func observe(ctx context.Context, conn *grpc.ClientConn) (Identity, codes.Code) {
	s, err := conn.NewStream(ctx, &observeJobs, "/"+GRPCService+"/ObserveJobs")
	if err == nil {
		err = s.SendMsg(wrapperspb.String(""))
	}
	if err == nil {
		err = s.CloseSend()
	}
	out := new(wrapperspb.StringValue)
	if err == nil {
		err = s.RecvMsg(out)
	}
	var id Identity
	if err == nil {
		_ = json.Unmarshal([]byte(out.GetValue()), &id)
	}
	return id, status.Code(err)
}

func TestGRPC(t *testing.T) {
	c := newCluster(t)
	c.grants["alice"] = []string{"create jobs"}
	p, dial := grpcServed(t, c, false)
	conn := dial()

	if _, code := invoke(callCtx(t, "", ""), conn, "CreateJob"); code != codes.Unauthenticated {
		t.Errorf("anonymous CreateJob: %v, want Unauthenticated", code)
	}
	if _, code := invoke(callCtx(t, "", ""), conn, "FindJobs"); code != codes.Unauthenticated {
		t.Errorf("anonymous FindJobs without anonymous reads: %v, want Unauthenticated", code)
	}
	if _, code := observe(callCtx(t, "", ""), conn); code != codes.Unauthenticated {
		t.Errorf("anonymous ObserveJobs: %v, want Unauthenticated", code)
	}
	if _, code := invoke(callCtx(t, "stolen", ""), conn, "FindJobs"); code != codes.Unauthenticated {
		t.Errorf("bad token: %v, want Unauthenticated", code)
	}
	if _, code := invoke(callCtx(t, readerToken, ""), conn, "CreateJob"); code != codes.PermissionDenied {
		t.Errorf("reader CreateJob: %v, want PermissionDenied", code)
	}
	if _, code := invoke(callCtx(t, writerToken, ""), conn, "Unmapped"); code != codes.PermissionDenied {
		t.Errorf("a method no rule maps: %v, want PermissionDenied", code)
	}
	id, code := invoke(callCtx(t, writerToken, "spinnaker"), conn, "CreateJob")
	if code != codes.OK || id.User != writerSA || id.Method != MethodToken || id.CallerID != "spinnaker" {
		t.Errorf("writer CreateJob: %v, %+v", code, id)
	}
	if ra := c.lastAsk(t).ResourceAttributes; ra == nil || ra.Verb != "create" || ra.Resource != "jobs" {
		t.Errorf("SubjectAccessReview for CreateJob: %+v", ra)
	}
	id, code = observe(callCtx(t, readerToken, ""), conn)
	if code != codes.OK || id.User != readerSA {
		t.Errorf("reader ObserveJobs: %v, %+v", code, id)
	}
	if ra := c.lastAsk(t).ResourceAttributes; ra == nil || ra.Verb != "watch" || ra.Resource != "jobs" {
		t.Errorf("SubjectAccessReview for ObserveJobs: %+v", ra)
	}

	alice := dial(p.client(t, "alice", []string{"job-submitters"}, false))
	id, code = invoke(callCtx(t, "", ""), alice, "CreateJob")
	if code != codes.OK || id.User != "alice" || id.Method != MethodX509 {
		t.Errorf("alice's certificate: %v, %+v", code, id)
	}

	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(callCtx(t, "", ""), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("anonymous health check: %v", err)
	}

	c.down.Store(true)
	if _, code := invoke(callCtx(t, "fresh-token", ""), conn, "FindJobs"); code != codes.Unavailable {
		t.Errorf("API server down: %v, want Unavailable", code)
	}
}

func TestGRPCAnonymousReads(t *testing.T) {
	c := newCluster(t)
	_, dial := grpcServed(t, c, true)
	conn := dial()
	if id, code := invoke(callCtx(t, "", "old-tool"), conn, "FindJobs"); code != codes.OK || !id.Anonymous() || id.CallerID != "old-tool" {
		t.Errorf("anonymous FindJobs with anonymous reads: %v, %+v", code, id)
	}
	if id, code := observe(callCtx(t, "", ""), conn); code != codes.OK || !id.Anonymous() {
		t.Errorf("anonymous ObserveJobs with anonymous reads: %v, %+v", code, id)
	}
	if _, code := invoke(callCtx(t, "", ""), conn, "CreateJob"); code != codes.Unauthenticated {
		t.Errorf("anonymous CreateJob with anonymous reads: %v, want Unauthenticated", code)
	}
	if n := c.accessReviews.Load(); n != 0 {
		t.Errorf("%d SubjectAccessReviews for anonymous calls, want none", n)
	}
}
