package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/apiauth"
	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/gateway/grpcapi"
	"github.com/vk-titus/vk-titus/gateway/kube"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/migration"
)

// Config is what the gateway serves and where it finds both worlds.
type Config struct {
	Listen     string // host:port for the REST job API
	GRPCListen string // host:port for the gRPC job API ("" serves none)
	// LegacyMaster: zk://host:port/path (follow the leading master) or
	// http://host:port (one master; followers redirect to their leader).
	LegacyMaster string
	MigrationZK  string          // zk://host:port/path of the stages
	DefaultStage migration.Stage // for applications no stage names
	Kube         kube.Config
	// Limits hold descriptors on both wire forms (and in the Kubernetes
	// world, which takes Kube.Limits from here).
	Limits legacyapi.Limits
	// Observe bounds the event streams' hub.
	Observe observe.Config
	// GRPCMaxStreamsPerConn caps concurrent calls on one gRPC connection.
	GRPCMaxStreamsPerConn uint32
	// MesosCredential is presented to the legacy masters (HTTP Basic);
	// nil: none.
	MesosCredential *mesosauth.Credential
	// Auth is who may call the job APIs.
	Auth AuthConfig
}

// AuthConfig secures both job APIs. Authentication and authorization are
// always on (apiauth): what is configured here is only the transport and
// whether anonymous callers may read.
type AuthConfig struct {
	// TLSCertFile and TLSKeyFile: the serving certificate of REST and gRPC,
	// both or neither. Without them the APIs are plain and bearer tokens
	// travel in the clear.
	TLSCertFile, TLSKeyFile string
	// ClientCAFile verifies client certificates (user CN, groups O); it
	// needs TLS, over which alone a client certificate can be presented.
	ClientCAFile string
	// AnonymousReads lets callers without credentials get, list and watch.
	AnonymousReads bool
}

// serverTLS is the job APIs' TLS; nil when they are served plain.
func (a AuthConfig) serverTLS() (*tls.Config, error) {
	switch {
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		return nil, errors.New("--tls-cert-file and --tls-private-key-file go together")
	case a.TLSCertFile == "" && a.ClientCAFile != "":
		return nil, errors.New("--client-ca-file needs --tls-cert-file and --tls-private-key-file: client certificates come only over TLS")
	case a.TLSCertFile == "":
		return nil, nil
	}
	return apiauth.ServerTLS(a.TLSCertFile, a.TLSKeyFile, a.ClientCAFile)
}

// Run serves the gateway until ctx ends.
func Run(ctx context.Context, cfg Config, client kubernetes.Interface, log logrus.FieldLogger) error {
	if err := cfg.Limits.Check(); err != nil {
		return fmt.Errorf("job limits: %w", err)
	}
	tlsCfg, err := cfg.Auth.serverTLS()
	if err != nil {
		return fmt.Errorf("job API TLS: %w", err)
	}
	// The guard shares client's QPS and burst: its reviews are cached, so
	// they cost little beside the kube backend's calls.
	guard, err := apiauth.New(apiauth.Config{Client: client, ClientCAFile: cfg.Auth.ClientCAFile,
		AllowAnonymousReads: cfg.Auth.AnonymousReads, Log: log.WithField("component", "apiauth")})
	if err != nil {
		return fmt.Errorf("job API authentication: %w", err)
	}
	if tlsCfg == nil {
		log.Warn("job API served without TLS (no --tls-cert-file): bearer tokens travel in the clear")
	}
	base, closeBase, err := legacyBase(cfg.LegacyMaster, log)
	if err != nil {
		return err
	}
	defer closeBase()
	legacy := legacyapi.NewClient(base,
		// Long enough for a master's placement; a hung master must not hold a
		// tool's call (or the gateway's goroutine) for ever.
		&http.Client{Timeout: 30 * time.Second, Transport: cfg.MesosCredential.Wrap(http.DefaultTransport)},
		// The change feed lasts as long as its connection; a dead one is
		// found by the feed's own idle limit (legacyapi.FeedIdle).
		&http.Client{Transport: cfg.MesosCredential.Wrap(&http.Transport{
			Proxy: http.ProxyFromEnvironment, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
		})})

	stages, err := migration.Open(ctx, cfg.MigrationZK, cfg.DefaultStage, log.WithField("component", "migration"))
	if err != nil {
		return fmt.Errorf("migration stages: %w", err)
	}
	defer stages.Close()

	cfg.Kube.Limits = cfg.Limits
	kb, err := kube.New(client, cfg.Kube, log.WithField("component", "kube"))
	if err != nil {
		return fmt.Errorf("kube backend: %w", err)
	}
	if err := kb.Start(ctx); err != nil {
		return fmt.Errorf("kube backend: %w", err)
	}

	router := NewRouter(legacy, kb, stages, log.WithField("component", "router"))
	hub, err := observe.New(cfg.Observe, []observe.Source{
		{Name: "legacy", Feed: legacy, Backend: legacy},
		{Name: "kube", Feed: kb, Backend: kb},
	}, log.WithField("component", "observe"))
	if err != nil {
		return fmt.Errorf("event streams: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go hub.Run(ctx)

	mux := http.NewServeMux()
	mux.Handle("/api/v3/migration/", migration.Handler(stages))
	mux.Handle("/api/v3/", legacyapi.NewHandler(router, log.WithField("component", "jobapi"), legacyapi.WithLimits(cfg.Limits)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: guard.Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	serve := srv.Serve
	if tlsCfg != nil {
		// ServeTLS offers HTTP/2 and HTTP/1.1 on a clone of TLSConfig, which
		// already holds the certificate.
		srv.TLSConfig = tlsCfg
		serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	served := make(chan error, 2)
	go func() {
		if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
			served <- fmt.Errorf("serving REST: %w", err)
		}
	}()
	var gs *grpc.Server
	if cfg.GRPCListen != "" {
		gln, err := net.Listen("tcp", cfg.GRPCListen)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("--grpc-listen %s: %w", cfg.GRPCListen, err)
		}
		opts := append(grpcapi.Options(cfg.GRPCMaxStreamsPerConn),
			grpc.ChainUnaryInterceptor(guard.UnaryServerInterceptor()),
			grpc.ChainStreamInterceptor(guard.StreamServerInterceptor()))
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		gs = grpc.NewServer(opts...)
		grpcapi.New(router, hub, cfg.Limits, log.WithField("component", "grpcapi")).Register(gs)
		go func() {
			if err := gs.Serve(gln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				served <- fmt.Errorf("serving gRPC: %w", err)
			}
		}()
		log.WithField("listen", gln.Addr().String()).Info("gateway serving gRPC")
	}
	log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "tls": tlsCfg != nil, "client_ca": cfg.Auth.ClientCAFile,
		"anonymous_reads": cfg.Auth.AnonymousReads, "legacy": cfg.LegacyMaster, "namespace": cfg.Kube.Namespace}).Info("gateway serving")

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-served:
	}
	sctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	_ = srv.Shutdown(sctx)
	if gs != nil {
		// Event streams never end on their own: calls get the grace, streams
		// are cut after it.
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gs.Stop()
		}
	}
	return runErr
}

// legacyBase follows the leading master through ZooKeeper, or names one.
func legacyBase(master string, log logrus.FieldLogger) (func() (string, error), func(), error) {
	if !strings.HasPrefix(master, "zk://") {
		if master == "" {
			return nil, nil, errors.New("--legacy-master is required")
		}
		return legacyapi.StaticBase(strings.TrimRight(master, "/")), func() {}, nil
	}
	det, err := discovery.NewDetector(master, log.WithField("component", "detector"))
	if err != nil {
		return nil, nil, fmt.Errorf("--legacy-master %s: %w", master, err)
	}
	base := func() (string, error) {
		m, ok := det.Leader()
		if !ok {
			return "", errors.New("no legacy master is leading")
		}
		return m.URL(), nil
	}
	return base, det.Close, nil
}
