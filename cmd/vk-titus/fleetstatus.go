package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vk-titus/vk-titus/ownership"
)

// newFleetStatusCommand is `vk-titus fleet`, with its `status` subcommand:
// the replicas, the nodes they hold and their lease ages, from the Leases.
func newFleetStatusCommand() *cobra.Command {
	fleet := &cobra.Command{Use: "fleet", Short: "the bridge replicas sharing the agents"}
	var kubeconfig, namespace string
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "print the replicas, their nodes and lease ages",
		Long: "Print the replicas (membership lease age, state, nodes held) and the node leases. A node lease is\n" +
			"written only when its ownership changes and lives as long as its holder's membership lease, so a held\n" +
			"node's HOLDER RENEWED column is its holder's membership lease age; CHANGED is the node lease's own age.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Two lists: the client's QPS matters little, but is never left
			// at client-go's default.
			client, err := newKubeClient(kubeconfig, 5, 10)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			s, err := ownership.ReadStatus(ctx, client, namespace, time.Now())
			if err != nil {
				return err
			}
			return s.WriteTable(cmd.OutOrStdout())
		},
	}
	f := status.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kube config file to use for connecting to the Kubernetes API server")
	f.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "vk-titus"), "namespace of the bridge's leases")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up reading after this long")
	fleet.AddCommand(status)
	return fleet
}
