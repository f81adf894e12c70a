// Command legacy-agent runs the reference Mesos-style agent of package
// legacy/agent: the Mesos v1 agent operator API at POST /api/v1, with each
// container's command run as a host process group. Containers run under a
// supervisor (this binary re-executed) and survive an agent restart; see
// --recover.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/agent"
)

func main() {
	// When this process is an agent's re-executed container supervisor, this
	// runs it and never returns.
	agent.MaybeSupervise()

	var cfg agent.Config
	flag.StringVar(&cfg.Listen, "listen", agent.DefaultListen, "address to serve the operator API on")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "directory for sandboxes (DIR/sandboxes/<container-id>); required")
	flag.StringVar(&cfg.AgentID, "agent-id", "", "agent id reported by GET_AGENT (default: derived from host name and port)")
	flag.StringVar(&cfg.Hostname, "hostname", "127.0.0.1", "host name reported by GET_AGENT")
	flag.StringVar(&cfg.Resources, "resources", agent.DefaultResources, "resources in Mesos form, e.g. \"cpus:4;mem:8192;ports:[31000-32000]\"")
	flag.StringVar(&cfg.Attributes, "attributes", "", "attributes in Mesos form, e.g. \"zone:us-east-1a;instance_type:m5.large\"")
	flag.StringVar(&cfg.ImageCatalog, "image-catalog", "", "JSON image catalog (default: the embedded catalog.default.json)")
	flag.StringVar(&cfg.Master, "master", "", "register with the leading master: zk://host:port[,host:port]/path or http://host:port (default: standalone, no master)")
	flag.StringVar(&cfg.Endpoint, "advertise-url", "", "base URL the master and the bridge reach this agent at (default http://<hostname>:<port>)")
	flag.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", agent.DefaultHeartbeatInterval, "longest time between re-registrations with the master (the master may ask for less)")
	flag.StringVar(&cfg.Recover, "recover", agent.RecoverReconnect, "agent recovery, as Mesos' --recover: \"reconnect\" runs containers under a supervisor process that survives the agent "+
		"(checkpointed under --work-dir/meta) so a restarted agent re-attaches to them and reports the exits of those that ended meanwhile; "+
		"\"cleanup\" kills every checkpointed container on start. A graceful stop (SIGTERM) leaves containers running either way")
	logLevel := flag.String("log-level", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()

	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "legacy-agent:", err)
		os.Exit(2)
	}
	logrus.SetLevel(level)
	if cfg.WorkDir == "" {
		fmt.Fprintln(os.Stderr, "legacy-agent: --work-dir is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		logrus.WithError(err).Fatal("legacy-agent failed")
	}
}
