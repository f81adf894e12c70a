// Command vk-bench is `make bench`: it compares vk-titus with a baseline
// virtual node (virtual-kubelet's node library and a provider that marks
// every pod Running at once, with vk-titus's client QPS, burst, pod sync
// workers and pod queue rate) on the local stack, and prints a markdown
// table (also written to .local/bench/).
//
//	vk-bench [--burst 1000] [--scale 10000] [--restart 5000] [--rounds 3]
//	         [--nodes 200] [--node-pods 25] [--nodes-port-base 25200]
//	         [--scenarios burst,scale,restart,nodes,micro] [--idle 30s]
//	         [--baseline-queue-qps 1000]
//	vk-bench baseline --kubeconfig F --nodename N   (run by vk-bench itself)
//
// Run it from the repository root. It brings the stack up when .local/env is
// missing (and down again at the end), and deletes every pod it created.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vk-titus/vk-titus/bench"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		err = runBaseline(ctx, os.Args[2:])
	} else {
		err = runBench(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vk-bench:", err)
		os.Exit(1)
	}
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vk-bench", flag.ExitOnError)
	var o bench.Options
	scenarios := fs.String("scenarios", "burst,scale,restart,nodes,micro", "scenarios to run, comma-separated")
	fs.IntVar(&o.Burst, "burst", 1000, "pods created at once in the burst scenario")
	fs.IntVar(&o.Scale, "scale", 10000, "pods running in the scale scenario")
	fs.IntVar(&o.Restart, "restart", 5000, "pods running while the node process restarts")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds per scenario and side (alternating)")
	fs.IntVar(&o.Nodes, "nodes", 200, "virtual nodes (agents of one legacy-agent process) vk-titus serves in the nodes scenario")
	fs.IntVar(&o.NodePods, "node-pods", 25, "pods per node in the nodes scenario")
	// Clear of the stack's default ports (agents from 25051, masters from
	// 25041, vk-titus's kubelet API from 10250, one port per node).
	fs.IntVar(&o.NodesPortBase, "nodes-port-base", 25200, "the nodes scenario's agent i listens on this port + i")
	fs.DurationVar(&o.Idle, "idle", 30*time.Second, "idle window for RSS and CPU at scale")
	fs.IntVar(&o.Kills, "kills", 5, "processes killed at scale to time a status change")
	fs.IntVar(&o.OutageKills, "outage-kills", 3, "processes killed while vk-titus is down")
	fs.IntVar(&o.Creators, "creators", 64, "create/delete calls the bench keeps in flight")
	// vk-titus builds its nodes with vknode, whose pod queues run at
	// --pod-queue-qps 1000 (burst 2000); nodeutil.NewNode leaves them at
	// 10/s after a burst of 100, which would make the baseline the slower
	// side by far. 0 runs the baseline on nodeutil.NewNode exactly.
	fs.Float64Var(&o.BaselineQueueQPS, "baseline-queue-qps", 1000,
		"baseline pod queue items/s on vk-titus's vknode, as vk-titus's --pod-queue-qps; 0: nodeutil.NewNode (10/s)")
	fs.BoolVar(&o.StopStack, "stop-stack", false, "bring the stack down at the end even if it was up")
	_ = fs.Parse(args)
	o.Scenarios = strings.Split(*scenarios, ",")
	if o.Rounds < 1 || o.Burst < 1 || o.Scale < 1 || o.Restart < 1 || o.Creators < 1 || o.Nodes < 1 || o.NodePods < 1 {
		return fmt.Errorf("sizes and rounds must be positive")
	}
	if o.NodesPortBase < 1 || o.NodesPortBase+o.Nodes > 65536 {
		return fmt.Errorf("--nodes-port-base %d: no room for %d ports", o.NodesPortBase, o.Nodes)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Self = self
	return bench.Run(ctx, o)
}

func runBaseline(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vk-bench baseline", flag.ExitOnError)
	var o bench.BaselineOptions
	var qps float64
	fs.StringVar(&o.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	fs.StringVar(&o.NodeName, "nodename", bench.BaselineNode, "node name")
	fs.Float64Var(&qps, "kube-api-qps", 200, "client QPS (vk-titus's default)")
	fs.IntVar(&o.Burst, "kube-api-burst", 400, "client burst (vk-titus's default)")
	fs.IntVar(&o.Workers, "pod-sync-workers", 10, "pod sync workers (vk-titus's default)")
	fs.Float64Var(&o.QueueQPS, "pod-queue-qps", 0, "> 0: build the node with vknode and these pod queue items/s (0: nodeutil)")
	_ = fs.Parse(args)
	o.QPS = float32(qps)
	return bench.RunBaseline(ctx, o)
}
