// Command legacy-agent runs the reference Mesos-style agent of package
// legacy/agent: the Mesos v1 agent operator API at POST /api/v1, with each
// container's command run as a host process group. Containers run under a
// supervisor (this binary re-executed) and survive an agent restart; see
// --recover. With --count N one process serves N agents (a fleet on one
// machine); with --authenticate_http_readwrite/--authenticate_http_readonly
// the operator API demands HTTP Basic credentials, as a Mesos agent's does.
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
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

func main() {
	// When this process is an agent's re-executed container supervisor, this
	// runs it and never returns.
	agent.MaybeSupervise()

	var cfg agent.Config
	flag.StringVar(&cfg.Listen, "listen", agent.DefaultListen, "address to serve the operator API on; with --count N, agent i listens on this port + i (port 0: an ephemeral port each)")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "directory for sandboxes (DIR/sandboxes/<container-id>); required. With --count N, agent i works in DIR/agent-<i> and the one container supervisor in DIR")
	flag.StringVar(&cfg.AgentID, "agent-id", "", "agent id reported by GET_AGENT (default: derived from host name and port); with --count N, agent i is <agent-id>-<i>")
	flag.StringVar(&cfg.Hostname, "hostname", "127.0.0.1", "host name reported by GET_AGENT")
	flag.StringVar(&cfg.Resources, "resources", agent.DefaultResources, "resources in Mesos form, e.g. \"cpus:4;mem:8192;ports:[31000-32000]\"; \"|\" separates alternatives, agent i takes alternative i mod their number")
	flag.StringVar(&cfg.Attributes, "attributes", "", "attributes in Mesos form, e.g. \"zone:us-east-1a;instance_type:m5.large\"; \"|\" separates alternatives as for --resources; with --count N > 1 each agent also gets agent_index:<i>")
	flag.IntVar(&cfg.Count, "count", 1, fmt.Sprintf("number of agents this process serves (1 to %d): distinct ids, ports, work dirs, resources and attributes, each registered with the master on its own, one container supervisor for all", agent.MaxCount))
	flag.StringVar(&cfg.ImageCatalog, "image-catalog", "", "JSON image catalog (default: the embedded catalog.default.json)")
	flag.StringVar(&cfg.Master, "master", "", "register with the leading master: zk://host:port[,host:port]/path or http://host:port (default: standalone, no master)")
	flag.StringVar(&cfg.Endpoint, "advertise-url", "", "base URL the master and the bridge reach this agent at (default http://<hostname>:<port>); with --count N it must name a port, and agent i advertises that port + i")
	flag.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", agent.DefaultHeartbeatInterval, "longest time between re-registrations with the master (the master may ask for less)")
	flag.StringVar(&cfg.Recover, "recover", agent.RecoverReconnect, "agent recovery, as Mesos' --recover: \"reconnect\" runs containers under a supervisor process that survives the agent "+
		"(checkpointed under --work-dir/meta) so a restarted agent re-attaches to them and reports the exits of those that ended meanwhile; "+
		"\"cleanup\" kills every checkpointed container on start. A graceful stop (SIGTERM) leaves containers running either way")
	flag.BoolVar(&cfg.HTTPAuth.ReadWrite, "authenticate_http_readwrite", false, "as Mesos: every operator call but GET_HEALTH needs HTTP Basic credentials from --http_credentials")
	flag.BoolVar(&cfg.HTTPAuth.ReadOnly, "authenticate_http_readonly", false, "as Mesos: the operator calls that only read (GET_*, READ_FILE, WAIT_*, ATTACH_CONTAINER_OUTPUT) need HTTP Basic credentials from --http_credentials")
	httpCreds := flag.String("http_credentials", "", "JSON file of the principals allowed in: {\"credentials\": [{\"principal\": ..., \"secret\": ...}]}")
	credential := flag.String("credential", "", "file of the credential sent to the master with every registration: {\"principal\": ..., \"secret\": ...} or one line \"principal secret\"")
	logLevel := flag.String("log-level", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()

	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fail(err)
	}
	logrus.SetLevel(level)
	if cfg.WorkDir == "" {
		fail(fmt.Errorf("--work-dir is required"))
	}
	if cfg.Count < 1 || cfg.Count > agent.MaxCount {
		fail(fmt.Errorf("--count %d: want 1 to %d", cfg.Count, agent.MaxCount))
	}
	if *httpCreds != "" {
		if cfg.HTTPAuth.Credentials, err = mesosauth.LoadCredentials(*httpCreds); err != nil {
			fail(fmt.Errorf("--http_credentials: %w", err))
		}
	}
	if *credential != "" {
		if cfg.Credential, err = mesosauth.LoadCredential(*credential); err != nil {
			fail(fmt.Errorf("--credential: %w", err))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		logrus.WithError(err).Fatal("legacy-agent failed")
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "legacy-agent:", err)
	os.Exit(2)
}
