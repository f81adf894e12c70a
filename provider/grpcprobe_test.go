package provider

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestGRPCProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	check := func(service *string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return grpcProbe(ctx, "127.0.0.1", port, service)
	}

	if err := check(nil); err != nil {
		t.Fatalf("serving server: %v", err)
	}
	svc := "orders"
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	if err := check(&svc); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Fatalf("not serving: %v", err)
	}
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	if err := check(&svc); err != nil {
		t.Fatalf("serving again: %v", err)
	}
	srv.Stop()
	if err := check(nil); err == nil {
		t.Fatal("a stopped server passed the probe")
	}
}
