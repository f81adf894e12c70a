package main

import (
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/vk-titus/vk-titus/gateway"
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
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "serve the legacy (Titus v3) job API over the legacy master and Kubernetes, by migration stage",
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
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			return gateway.Run(ctx, cfg, client, logrus.NewEntry(logger).WithField("component", "gateway"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", envOr("LEGACY_API_LISTEN", "127.0.0.1:7001"), "address of the job API (Titus's gateway port by default)")
	f.StringVar(&cfg.LegacyMaster, "legacy-master", envOr("LEGACY_MASTER_ZK", ""), "the legacy masters: zk://host:port/path (follow the leader) or http://host:port")
	f.StringVar(&cfg.MigrationZK, "migration-zk", envOr("MIGRATION_ZK", "zk://127.0.0.1:22181/vk-titus/migration"), "ZooKeeper path of the migration stages")
	f.StringVar(&stage, "default-stage", "legacy", "stage of applications no entry names: legacy, kube or NN%")
	f.StringVar(&cfg.Kube.Namespace, "namespace", "vk-titus-jobs", "namespace of the Kubernetes Jobs and Deployments the gateway creates")
	f.StringVar(&cfg.Kube.Provider, "provider", "titus", "the virtual nodes' provider name (their taint's value)")
	f.StringVar(&kubeconfig, "kubeconfig", envOr("KUBECONFIG", ""), "kube config file to use for connecting to the Kubernetes API server")
	f.Float32Var(&qps, "kube-api-qps", 100, "QPS to use while talking with the Kubernetes API server")
	f.IntVar(&burst, "kube-api-burst", 200, "burst to use while talking with the Kubernetes API server")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}
