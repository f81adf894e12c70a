package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/gateway/kube"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/migration"
)

// Config is what the gateway serves and where it finds both worlds.
type Config struct {
	Listen string // host:port for the job API
	// LegacyMaster: zk://host:port/path (follow the leading master) or
	// http://host:port (one master; followers redirect to their leader).
	LegacyMaster string
	MigrationZK  string          // zk://host:port/path of the stages
	DefaultStage migration.Stage // for applications no stage names
	Kube         kube.Config
}

// Run serves the gateway until ctx ends.
func Run(ctx context.Context, cfg Config, client kubernetes.Interface, log logrus.FieldLogger) error {
	base, closeBase, err := legacyBase(cfg.LegacyMaster, log)
	if err != nil {
		return err
	}
	defer closeBase()
	// Long enough for a master's placement; a hung master must not hold a
	// tool's call (or the gateway's goroutine) for ever.
	legacy := legacyapi.NewClient(base, &http.Client{Timeout: 30 * time.Second})

	stages, err := migration.Open(ctx, cfg.MigrationZK, cfg.DefaultStage, log.WithField("component", "migration"))
	if err != nil {
		return fmt.Errorf("migration stages: %w", err)
	}
	defer stages.Close()

	kb, err := kube.New(client, cfg.Kube, log.WithField("component", "kube"))
	if err != nil {
		return fmt.Errorf("kube backend: %w", err)
	}
	if err := kb.Start(ctx); err != nil {
		return fmt.Errorf("kube backend: %w", err)
	}

	router := NewRouter(legacy, kb, stages, log.WithField("component", "router"))
	mux := http.NewServeMux()
	mux.Handle("/api/v3/migration/", migration.Handler(stages))
	mux.Handle("/api/v3/", legacyapi.NewHandler(router, log.WithField("component", "jobapi")))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "legacy": cfg.LegacyMaster, "namespace": cfg.Kube.Namespace}).Info("gateway serving")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
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
