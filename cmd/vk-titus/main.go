// Command vk-titus runs virtual nodes whose pods run on legacy (Mesos-style)
// agents. Its flags keep virtual-kubelet node-cli's names and meanings.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vk-titus/vk-titus/statemachine"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "vk-titus",
		Short:         "virtual-kubelet provider that runs pods on a legacy Mesos-style agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	run := newRunCommand()
	// `vk-titus` alone runs the node, as node-cli's root command does.
	root.RunE = run.RunE
	root.Flags().AddFlagSet(run.Flags())
	root.AddCommand(run, newStateMachineCommand(), newMigrationCommand(), newGatewayCommand(), newFleetStatusCommand(), newJobsCommand(), &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version) },
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "vk-titus:", err)
		os.Exit(1)
	}
}

func newStateMachineCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "statemachine",
		Short: "print the pod container state machine as a diagram (from its table)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "dot":
				return statemachine.Dot(cmd.OutOrStdout())
			case "mermaid":
				return statemachine.Mermaid(cmd.OutOrStdout())
			default:
				return fmt.Errorf("--format: %q is not one of dot, mermaid", format)
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "mermaid", "diagram format: dot or mermaid")
	return cmd
}
