package provider

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcProbe asks the standard gRPC health service, as the kubelet's gRPC
// prober does: plaintext, one connection per check (the probe's timeout
// bounds it through ctx), SERVING or it fails.
func grpcProbe(ctx context.Context, host string, port int32, service *string) error {
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("kube-probe/1.35"))
	if err != nil {
		return fmt.Errorf("GRPC probe: connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	req := &healthpb.HealthCheckRequest{}
	if service != nil {
		req.Service = *service
	}
	res, err := healthpb.NewHealthClient(conn).Check(ctx, req)
	if err != nil {
		return fmt.Errorf("GRPC probe: health check of %s: %w", addr, err)
	}
	if res.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("GRPC probe: service unhealthy (responseCode: %s)", res.Status)
	}
	return nil
}
