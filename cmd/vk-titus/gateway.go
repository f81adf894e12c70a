package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/vk-titus/vk-titus/gateway"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/internal/memlimit"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/migration"
)

func newGatewayCommand() *cobra.Command {
	var (
		cfg                 gateway.Config
		stage               string
		kubeconfig          string
		qps                 float32
		burst               int
		logLevel, logFormat string
		mesosCredentials    string
	)
	cfg.Limits = legacyapi.TitusLimits()
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "serve the legacy (Titus v3) job API, REST and gRPC, over the legacy master and Kubernetes, by migration stage",
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			if cfg.DefaultStage, err = migration.ParseStage(stage); err != nil {
				return err
			}
			client, err := newKubeClient(kubeconfig, qps, burst)
			if err != nil {
				return err
			}
			if mesosCredentials != "" {
				if cfg.MesosCredential, err = mesosauth.LoadCredential(mesosCredentials); err != nil {
					return fmt.Errorf("--mesos-credentials: %w", err)
				}
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			log := logrus.NewEntry(logger).WithField("component", "gateway")
			log.Info(memlimit.FromCgroup())
			return gateway.Run(ctx, cfg, client, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", envOr("LEGACY_API_LISTEN", "127.0.0.1:7001"), "address of the REST job API (Titus's gateway port by default)")
	f.StringVar(&cfg.GRPCListen, "grpc-listen", envOr("LEGACY_API_GRPC_LISTEN", ":7104"), "address of the gRPC job API, com.netflix.titus.JobManagementService (Titus's port by default; \"\" serves none)")
	f.Float64Var(&cfg.Limits.MinCPU, "job-min-cpu", cfg.Limits.MinCPU, "a job's cpu is raised to at least this (Titus's minimum by default)")
	f.Uint32Var(&cfg.Limits.MinMemoryMB, "job-min-memory-mb", cfg.Limits.MinMemoryMB, "a job's memoryMB is raised to at least this")
	f.Uint32Var(&cfg.Limits.MinDiskMB, "job-min-disk-mb", cfg.Limits.MinDiskMB, "a job's diskMB is raised to at least this")
	f.Uint32Var(&cfg.Limits.MinNetworkMbps, "job-min-network-mbps", cfg.Limits.MinNetworkMbps, "a job's networkMbps is raised to at least this")
	f.Uint64Var(&cfg.Limits.DefaultRuntimeLimitSec, "job-default-runtime-limit-sec", cfg.Limits.DefaultRuntimeLimitSec, "a batch job's runtimeLimitSec when it gives none")
	f.IntVar(&cfg.Observe.StreamBuffer, "stream-buffer", observe.DefaultStreamBuffer, "notifications an event stream may fall behind before it is ended with RESOURCE_EXHAUSTED")
	f.IntVar(&cfg.Observe.MaxStreams, "max-streams", observe.DefaultMaxStreams, "event streams open at once")
	f.Uint32Var(&cfg.GRPCMaxStreamsPerConn, "grpc-max-streams-per-conn", 10000, "concurrent gRPC calls on one connection")
	f.StringVar(&cfg.LegacyMaster, "legacy-master", envOr("LEGACY_MASTER_ZK", ""), "the legacy masters: zk://host:port/path (follow the leader) or http://host:port")
	f.StringVar(&cfg.MigrationZK, "migration-zk", envOr("MIGRATION_ZK", "zk://127.0.0.1:22181/vk-titus/migration"), "ZooKeeper path of the migration stages")
	f.StringVar(&stage, "default-stage", "legacy", "stage of applications no entry names: legacy, kube or NN%")
	f.StringVar(&cfg.Kube.Namespace, "namespace", "vk-titus-jobs", "namespace of the Kubernetes Jobs and Deployments the gateway creates")
	f.StringVar(&cfg.Kube.Provider, "provider", "titus", "the virtual nodes' provider name (their taint's value)")
	f.StringVar(&kubeconfig, "kubeconfig", envOr("KUBECONFIG", ""), "kube config file to use for connecting to the Kubernetes API server")
	f.Float32Var(&qps, "kube-api-qps", 100, "QPS to use while talking with the Kubernetes API server")
	f.IntVar(&burst, "kube-api-burst", 200, "burst to use while talking with the Kubernetes API server")
	f.StringVar(&cfg.Auth.TLSCertFile, "tls-cert-file", "", "serving certificate of the REST and gRPC job APIs (with --tls-private-key-file); none: plain, bearer tokens travel in the clear")
	f.StringVar(&cfg.Auth.TLSKeyFile, "tls-private-key-file", "", "private key of --tls-cert-file")
	f.StringVar(&cfg.Auth.ClientCAFile, "client-ca-file", "", "CA that verifies job API client certificates (user: CN, groups: O); needs --tls-cert-file")
	f.BoolVar(&cfg.Auth.AnonymousReads, "job-api-anonymous-reads", false, "let callers without credentials get, list and watch jobs, tasks and stages (writes always need credentials)")
	f.StringVar(&mesosCredentials, "mesos-credentials", envOr("MESOS_CREDENTIALS", ""), `file of the principal presented to the legacy masters (HTTP Basic): {"principal": ..., "secret": ...}`)
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}
