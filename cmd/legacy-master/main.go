// Command legacy-master runs the reference Mesos-style master of package
// legacy/master: leader election in ZooKeeper (json.info_ znodes, as Mesos
// masters), the master operator API at POST /api/v1 (GET_HEALTH,
// GET_VERSION, GET_MASTER, GET_AGENTS, GET_TASKS), the Titus v3 job API
// (/api/v3/jobs, /api/v3/tasks; job records in ZooKeeper under
// --jobs-zk-path), the private agent registration endpoint and the legacy
// launch path (POST /internal/tasks). Finished jobs are kept for
// --job-retention-age and at most --job-retention-count of them, finished
// tasks at most --task-retention-per-job per job; the leader prunes the
// rest from memory and ZooKeeper every --prune-interval. With
// --authenticate_http_readwrite/--authenticate_http_readonly its endpoints
// demand HTTP Basic credentials from --http_credentials, as a Mesos
// master's do (agents register with their --credential); --agent-credential
// is what it sends to agents that demand credentials themselves.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/master"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

func main() {
	var cfg master.Config
	flag.StringVar(&cfg.Listen, "listen", master.DefaultListen, "address to serve the operator and job APIs on")
	flag.StringVar(&cfg.ZK, "zk", "", "ZooKeeper URL to contend for leadership under, e.g. zk://127.0.0.1:2181/mesos (default: standalone, always leading, jobs in memory only)")
	flag.StringVar(&cfg.JobsZKPath, "jobs-zk-path", "", "ZooKeeper path of the job API's job records, in --zk's ZooKeeper (default: --zk's path + \"-jobs\", e.g. /mesos-jobs)")
	flag.StringVar(&cfg.Hostname, "hostname", "", "host name written into MasterInfo (default: the host of --listen)")
	flag.StringVar(&cfg.ID, "id", "", "master id (default: a random UUID per start)")
	flag.DurationVar(&cfg.AgentTimeout, "agent-timeout", master.DefaultAgentTimeout, "how long an agent may go without re-registering before it is removed")
	flag.DurationVar(&cfg.ZKSessionTimeout, "zk-session-timeout", 0, "ZooKeeper session timeout (default 10s)")
	flag.DurationVar(&cfg.KillGrace, "kill-grace", master.DefaultKillGrace, "time between SIGTERM and SIGKILL when killing a legacy task")
	flag.IntVar(&cfg.JobRetentionCount, "job-retention-count", master.DefaultJobRetentionCount, "how many finished jobs the job API keeps (the most recently finished); older ones and their tasks are pruned from memory and ZooKeeper")
	flag.DurationVar(&cfg.JobRetentionAge, "job-retention-age", master.DefaultJobRetentionAge, "how long a finished job is kept after it finished")
	flag.IntVar(&cfg.TaskRetentionPerJob, "task-retention-per-job", master.DefaultTaskRetentionPerJob, "how many finished tasks each job keeps (the newest; a batch index's latest task is always kept)")
	flag.DurationVar(&cfg.PruneInterval, "prune-interval", master.DefaultPruneInterval, "how often the leader prunes finished jobs and tasks")
	flag.BoolVar(&cfg.HTTPAuth.ReadWrite, "authenticate_http_readwrite", false, "as Mesos: every endpoint but /health and GET_HEALTH needs HTTP Basic credentials from --http_credentials, agent registrations included")
	flag.BoolVar(&cfg.HTTPAuth.ReadOnly, "authenticate_http_readonly", false, "as Mesos: the operator calls that only read (GET_*) and GET requests of /api/v3 and /internal/tasks need HTTP Basic credentials from --http_credentials")
	httpCreds := flag.String("http_credentials", "", "JSON file of the principals allowed in: {\"credentials\": [{\"principal\": ..., \"secret\": ...}]}")
	agentCred := flag.String("agent-credential", "", "file of the credential sent to agents' operator API when launching, waiting for and killing legacy tasks: {\"principal\": ..., \"secret\": ...} or one line \"principal secret\"")
	logLevel := flag.String("log-level", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()

	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fail(err)
	}
	logrus.SetLevel(level)
	if *httpCreds != "" {
		if cfg.HTTPAuth.Credentials, err = mesosauth.LoadCredentials(*httpCreds); err != nil {
			fail(fmt.Errorf("--http_credentials: %w", err))
		}
	}
	cfg.AgentClient.CredentialFlag = "--agent-credential"
	if *agentCred != "" {
		if cfg.AgentClient.Credential, err = mesosauth.LoadCredential(*agentCred); err != nil {
			fail(fmt.Errorf("--agent-credential: %w", err))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := master.Run(ctx, cfg); err != nil {
		logrus.WithError(err).Fatal("legacy-master failed")
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "legacy-master:", err)
	os.Exit(2)
}
