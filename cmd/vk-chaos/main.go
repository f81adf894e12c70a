// Command vk-chaos runs a bounded, seeded chaos run against the local stack
// (loopback only): a steady workload of Deployments, Jobs, bare pods and
// legacy-API jobs in both migration stages, while a random but replayable
// schedule SIGKILLs and restarts vk-titus, agents, legacy masters,
// kube-apiserver and ZooKeeper. Then it stops the workload, lets things
// settle and checks the invariants from the agents' own view (launch logs,
// sandbox processes, GET_CONTAINERS) and the API. It prints a table of the
// faults and violations, writes .local/chaos/latest.md, and exits 1 when
// there is any violation.
//
// Run it from the repository root (make chaos). It brings the stack up when
// .local/env is missing (AGENTS=3 MASTERS=2) and down again at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vk-titus/vk-titus/chaos"
)

func main() {
	var o chaos.Options
	fs := flag.NewFlagSet("vk-chaos", flag.ExitOnError)
	fs.DurationVar(&o.Duration, "duration", 20*time.Minute, "how long the workload runs and faults are injected")
	fs.Int64Var(&o.Seed, "seed", 0, "seed of the fault schedule and the workload (0: from the clock; printed at start)")
	fs.DurationVar(&o.Settle, "settle", 3*time.Minute, "how long to wait for things to settle before checking")
	fs.StringVar(&o.Report, "report", "", "markdown report path (default .local/chaos/latest.md)")
	fs.BoolVar(&o.NoFaults, "no-faults", false, "run the workload without faults (a baseline for the checks)")
	fs.Parse(os.Args[1:])
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	fmt.Fprintf(os.Stderr, "vk-chaos: seed %d\n", o.Seed)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := chaos.Execute(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vk-chaos:", err)
		os.Exit(2)
	}
	if n := len(res.Violations); n > 0 {
		fmt.Fprintf(os.Stderr, "vk-chaos: %d violation(s) (seed %d)\n", n, res.Seed)
		os.Exit(1)
	}
}
