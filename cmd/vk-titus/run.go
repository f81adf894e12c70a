package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/vk-titus/vk-titus/discovery"
	"github.com/vk-titus/vk-titus/internal/memlimit"
	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/ownership"
	"github.com/vk-titus/vk-titus/provider"
	"github.com/vk-titus/vk-titus/reservation"
	"github.com/vk-titus/vk-titus/translate"
	"github.com/vk-titus/vk-titus/vknode"
)

// opts are node-cli's flags, same names and meanings.
type opts struct {
	kubeconfig      string
	nodeName        string
	providerName    string
	providerConfig  string
	os              string
	logLevel        string
	logFormat       string
	podSyncWorkers  int
	fullResync      time.Duration
	startupTimeout  time.Duration
	disableTaint    bool
	taintKey        string
	taintEffect     string
	metricsAddr     string
	profiling       bool
	enableNodeLease bool
	clientVerifyCA  string
	clientCA        dynamiccertificates.CAContentProvider // loaded from clientVerifyCA
	noVerifyClients bool
	listenPort      int
	tlsCert, tlsKey string
	kubeAPIQPS      float32
	kubeAPIBurst    int
	podQueueQPS     float64
	podQueueBurst   int
	nodeIP          string
	// mesosCredentials is the file of the principal the bridge presents to
	// the agents and masters (HTTP Basic); mesosCred is it loaded.
	mesosCredentials string
	mesosCred        *mesosauth.Credential
	// identity names this replica among those sharing the agents;
	// namespace holds their ownership leases.
	identity, namespace string
	leaseAPIQPS         float32
	leaseAPIBurst       int
	// maxWaits, when set, overrides the provider config's maxWaits.
	maxWaits int
	// evictionHard are the thresholds of the nodes' pressure conditions.
	evictionHard provider.Thresholds
	// leaseDuration, renewDeadline and renewInterval time the ownership
	// leases (0: ownership's defaults).
	leaseDuration, renewDeadline, renewInterval time.Duration
	// mesosRole is the role the pods' room is reserved for on each agent
	// (discovered agents only); reservationQuantum the block it grows and
	// shrinks by (parsed into quantum), reservationSpare the quanta kept
	// beyond the need.
	mesosRole          string
	reservationQuantum string
	quantum            discovery.Resources
	reservationSpare   int
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRunCommand() *cobra.Command {
	o := &opts{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "run the virtual node(s) (the default command)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			return run(ctx, o)
		},
	}
	port, _ := strconv.Atoi(envOr("KUBELET_PORT", "10250"))
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kube config file to use for connecting to the Kubernetes API server")
	f.StringVar(&o.nodeName, "nodename", "vk-titus", "kubernetes node name (the first agent's node; others get -<index>)")
	f.StringVar(&o.providerName, "provider", "titus", "cloud provider (only titus)")
	f.StringVar(&o.providerConfig, "provider-config", "", "provider config file (YAML or JSON): agents, resources, timeouts")
	o.evictionHard = provider.DefaultThresholds()
	f.Var(&o.evictionHard, "eviction-hard", "thresholds of the nodes' MemoryPressure and DiskPressure, as the kubelet's: signal<quantity or signal<percentage of the agent's figures, comma-separated (memory.available, nodefs.available, nodefs.inodesFree); \"\" sets none")
	f.StringVar(&o.os, "os", "Linux", "operating system the node reports")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.IntVar(&o.podSyncWorkers, "pod-sync-workers", 10, "number of pod synchronization workers")
	f.DurationVar(&o.fullResync, "full-resync-period", time.Minute, "how often to perform a full resync of pods between Kubernetes and the provider")
	f.DurationVar(&o.startupTimeout, "startup-timeout", 0, "warn when a node is not registered this long after it started (registration is retried regardless; 0: never warn)")
	f.BoolVar(&o.disableTaint, "disable-taint", false, "disable the virtual-kubelet node taint")
	f.StringVar(&o.taintKey, "taint", "virtual-kubelet.io/provider", "set node taint key")
	o.taintEffect = envOr("VKUBELET_TAINT_EFFECT", string(corev1.TaintEffectNoSchedule))
	f.StringVar(&o.metricsAddr, "metrics-addr", ":10255", "address to listen for metrics (/metrics)")
	f.BoolVar(&o.profiling, "enable-profiling", false, "serve Go's pprof handlers under /debug/pprof/ on --metrics-addr (as the kubelet's enableProfilingHandler)")
	f.BoolVar(&o.enableNodeLease, "enable-node-lease", true, "use node leases (v1) for node heartbeats")
	f.StringVar(&o.clientVerifyCA, "client-verify-ca", os.Getenv("APISERVER_CA_CERT_LOCATION"), "CA cert to verify clients of the kubelet API")
	f.BoolVar(&o.noVerifyClients, "no-verify-clients", false, "do not require client certificate validation")
	f.IntVar(&o.listenPort, "listen-port", port, "port of the kubelet API (one more per additional agent)")
	f.StringVar(&o.tlsCert, "tls-cert-file", os.Getenv("APISERVER_CERT_LOCATION"), "kubelet API serving certificate")
	f.StringVar(&o.tlsKey, "tls-private-key-file", os.Getenv("APISERVER_KEY_LOCATION"), "kubelet API serving key")
	f.Float32Var(&o.kubeAPIQPS, "kube-api-qps", 200, "QPS to use while talking with the Kubernetes API server")
	f.IntVar(&o.kubeAPIBurst, "kube-api-burst", 400, "burst to use while talking with the Kubernetes API server")
	f.Float64Var(&o.podQueueQPS, "pod-queue-qps", 1000, "items/s each pod controller queue may start (virtual-kubelet's nodeutil leaves 10)")
	f.IntVar(&o.podQueueBurst, "pod-queue-burst", 2000, "burst of each pod controller queue")
	f.StringVar(&o.mesosCredentials, "mesos-credentials", os.Getenv("MESOS_CREDENTIALS"), `file of the principal presented to the legacy agents and masters (HTTP Basic): {"principal": ..., "secret": ...}`)
	f.StringVar(&o.identity, "identity", defaultIdentity(), "this replica's name among those sharing the agents (a DNS label; env POD_NAME)")
	f.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "vk-titus-system"), "namespace of the ownership leases (the bridge's own)")
	f.Float32Var(&o.leaseAPIQPS, "lease-api-qps", 100, "QPS of the ownership leases' own client (the membership lease is renewed every 4 s; a node lease is written when its ownership changes)")
	f.IntVar(&o.leaseAPIBurst, "lease-api-burst", 200, "burst of the ownership leases' own client")
	// Each held node's lease is written every renew interval: a process
	// serving many nodes trades takeover time (the lease duration) for
	// API writes here.
	f.DurationVar(&o.leaseDuration, "ownership-lease-duration", 0, "how long a silent replica's membership lease is waited for before others take its nodes (whole seconds; 0: 12s)")
	f.DurationVar(&o.renewDeadline, "ownership-renew-deadline", 0, "how long after its last membership renewal a replica stops acting for its nodes, shorter than the lease duration by the clock-skew margin (0: 8s)")
	f.DurationVar(&o.renewInterval, "ownership-renew-interval", 0, "how often the membership lease is renewed: one write per replica per interval, whatever its node count (0: 4s)")
	f.IntVar(&o.maxWaits, "max-waits", 0, "WAIT_CONTAINER long polls per agent at most, beyond which containers are followed by a GET_CONTAINERS sweep every second (overrides the provider config's maxWaits; 0: the config's, default 4096)")
	f.StringVar(&o.mesosRole, "mesos-role", envOr("MESOS_ROLE", "vk-titus"), "Mesos role the pods' room is dynamically reserved for on each agent a master lists (RESERVE_RESOURCES; principal: the --mesos-credentials one); \"\" reserves nothing")
	f.StringVar(&o.reservationQuantum, "reservation-quantum", "cpus:1;mem:1024", "block reservations grow and shrink by, per resource (cpus, mem and disk in MB, gpus); a resource not named is reserved exactly")
	f.IntVar(&o.reservationSpare, "reservation-spare", 1, "quanta kept reserved beyond what the pods need before room is given back (hysteresis)")
	f.StringVar(&o.nodeIP, "node-ip", envOr("VKUBELET_POD_IP", "127.0.0.1"), "address the API server reaches this process's kubelet API at")
	return cmd
}

// defaultIdentity is the pod's name in a cluster, else the host's name: one
// replica per host outside Kubernetes.
func defaultIdentity() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		return strings.ToLower(h)
	}
	return "vk-titus"
}

func newLogger(level, format string) (*logrus.Logger, error) {
	logger := logrus.New()
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	logger.SetLevel(lvl)
	switch format {
	case "text":
	case "json":
		logger.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format: %q is not one of text, json", format)
	}
	return logger, nil
}

// newKubeClient never leaves client-go at its 5 QPS default: every caller
// here talks to the API server for thousands of pods.
// wrap, when given, wraps the client's transport (conflict counting).
func newKubeClient(kubeconfig string, qps float32, burst int, wrap ...func(http.RoundTripper) http.RoundTripper) (kubernetes.Interface, error) {
	restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w", kubeconfig, err)
	}
	restCfg.QPS, restCfg.Burst = qps, burst
	restCfg.UserAgent = "vk-titus/" + version
	for _, w := range wrap {
		restCfg.Wrap(w)
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

func run(ctx context.Context, o *opts) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	base := logrus.NewEntry(logger)
	vklog.L = vklogrus.FromLogrus(base)
	ctx = vklog.WithLogger(ctx, vklog.L)
	if o.providerName != "titus" {
		return fmt.Errorf("--provider: %q is not supported (only titus)", o.providerName)
	}
	if o.providerConfig == "" {
		return errors.New("--provider-config is required")
	}
	if !o.enableNodeLease {
		base.Warn("--enable-node-lease=false is ignored: virtual-kubelet's nodeutil always uses v1 leases")
	}
	cfg, err := provider.LoadConfig(o.providerConfig)
	if err != nil {
		return err
	}
	switch {
	case o.maxWaits < 0:
		return fmt.Errorf("--max-waits %d: must be at least 0", o.maxWaits)
	case o.maxWaits > 0:
		cfg.MaxWaits = o.maxWaits
	}
	if o.mesosCredentials != "" {
		if o.mesosCred, err = mesosauth.LoadCredential(o.mesosCredentials); err != nil {
			return fmt.Errorf("--mesos-credentials: %w", err)
		}
	}
	if o.quantum, err = reservation.ParseQuantum(o.reservationQuantum); err != nil {
		return fmt.Errorf("--reservation-quantum: %w", err)
	}
	if o.reservationSpare < 0 {
		return fmt.Errorf("--reservation-spare %d: must be at least 0", o.reservationSpare)
	}
	raiseOpenFileLimit(base)
	base.Info(memlimit.FromCgroup())

	// Write conflicts on every client of the bridge are counted: in steady
	// state no two replicas write one object.
	ownMetrics, err := ownership.NewMetrics(provider.Registry)
	if err != nil {
		return err
	}
	client, err := newKubeClient(o.kubeconfig, o.kubeAPIQPS, o.kubeAPIBurst, ownMetrics.WrapTransport)
	if err != nil {
		return err
	}

	if o.metricsAddr != "" {
		go serveMetrics(ctx, o.metricsAddr, o.profiling, base)
	}
	if o.clientVerifyCA != "" && !o.noVerifyClients {
		// One CA for every node of the process: each one of its own would
		// leave a work queue behind whenever a node is built anew.
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.clientVerifyCA)
		if err != nil {
			return fmt.Errorf("--client-verify-ca: %w", err)
		}
		go ca.Run(ctx, 1) // follows the file; ends with ctx
		o.clientCA = ca
	}
	var tlsCfg *tls.Config
	if o.tlsCert != "" && o.tlsKey != "" {
		// Loaded once: a bad certificate is a startup error, not a node's.
		if tlsCfg, err = kubeletTLS(o); err != nil {
			return err
		}
	} else {
		base.Warn("no --tls-cert-file/--tls-private-key-file: the kubelet API (logs) is not served")
	}

	// One set of Secret/ConfigMap/Service informers for every node of the
	// process; each node watches only its own pods.
	shared := vknode.NewShared(client, o.fullResync)
	shared.Start(ctx.Done())
	defer shared.Shutdown()

	f := &fleet{o: o, cfg: cfg, client: client, shared: shared, tls: tlsCfg, log: base,
		known: map[string]*candidate{}, nodes: map[string]*member{}, ports: map[int]bool{}}
	// The leases get a client of their own: renewals queued behind pod
	// status writes in a shared rate limiter would end fences for nothing.
	leases, err := newKubeClient(o.kubeconfig, o.leaseAPIQPS, o.leaseAPIBurst)
	if err != nil {
		return err
	}
	if f.own, err = ownership.New(ownership.Config{Client: leases, Namespace: o.namespace, Identity: o.identity,
		LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RenewInterval: o.renewInterval,
		Handler: f, Metrics: ownMetrics, Log: base.WithField("replica", o.identity)}); err != nil {
		return err
	}
	if cfg.Master != "" {
		if err := f.discover(ctx); err != nil {
			return err
		}
	} else {
		names := cfg.NodeNames(o.nodeName)
		for i, a := range cfg.Agents {
			f.known[names[i]] = &candidate{agent: a}
		}
		f.setNodes(names)
	}
	// Nothing but the end of ctx (a signal) ends the process now: nodes
	// retry what fails on the API server. Run returns once every node was
	// stopped and its lease released, so its next owner starts at once.
	if err := f.own.Run(ctx); err != nil {
		base.WithError(err).Error("ownership")
	}
	if !f.wait(30 * time.Second) {
		base.Warn("some nodes had not stopped 30s after shutdown began")
	}
	return nil
}

// newNode builds a node and its provider for one agent. Everything it
// starts ends with ctx (the node instance's); its errors are configuration
// errors (it does not talk to the API server).
func newNode(ctx context.Context, o *opts, cfg *provider.Config, client kubernetes.Interface, shared *vknode.Shared,
	tlsCfg *tls.Config, fence func() error, agent provider.AgentConfig, resv *provider.Reservations, name string, port int, base *logrus.Entry) (*vknode.Node, *provider.Provider, error) {
	log := base.WithField("node", name)
	handler := http.Handler(nil)
	mux := http.NewServeMux()
	if tlsCfg != nil {
		var err error
		if handler, err = authHandler(o, client, name, mux); err != nil {
			return nil, nil, err
		}
	}

	// The broadcaster is the node's (its events name the node as source);
	// WithContext shuts it down (its watcher and sink goroutines) when ctx
	// ends, whatever happens below.
	eb := record.NewBroadcaster(record.WithContext(ctx))
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: name})

	var prov *provider.Provider
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		prov = provider.New(provider.Options{
			NodeName: name, Agent: agent, Config: cfg,
			Client: agentclient.New(agent.Endpoint, agentclient.Options{
				CallTimeout: cfg.Timeouts.AgentCall.Duration, Observe: provider.ObserveAgentCall, Credential: o.mesosCred}),
			Recorder: recorder, Pods: pc.Pods, ConfigMaps: pc.ConfigMaps, Secrets: pc.Secrets, PodClient: client.CoreV1(),
			Fence: fence, Eviction: o.evictionHard, Log: log,
		})
		if resv != nil {
			if err := prov.EnableReservations(*resv); err != nil {
				return nil, nil, err
			}
		}
		prov.Start(ctx)
		// Taints first: once ConfigureNode has it, the spec is the
		// provider's (it changes it under its own lock).
		if !o.disableTaint {
			pc.Node.Spec.Taints = append(pc.Node.Spec.Taints, corev1.Taint{
				Key: o.taintKey, Value: o.providerName, Effect: corev1.TaintEffect(o.taintEffect)})
		}
		if pc.Node.Annotations == nil {
			pc.Node.Annotations = map[string]string{}
		}
		pc.Node.Annotations[ownership.AnnotationOwner] = o.identity
		prov.ConfigureNode(pc.Node, o.nodeIP, int32(port), o.os)
		mux.Handle("/", api.PodHandler(api.PodHandlerConfig{
			RunInContainer: prov.RunInContainer, AttachToContainer: prov.AttachToContainer,
			GetContainerLogs: prov.GetContainerLogs, GetPods: prov.GetPods,
			GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) { return pc.Pods.List(labels.Everything()) },
			GetStatsSummary:       prov.GetStatsSummary, GetMetricsResource: prov.GetMetricsResource,
			PortForward: prov.PortForward,
		}, true))
		return prov, prov, nil
	}

	n, err := vknode.New(name, newProvider, vknode.Config{
		Client: client, EventRecorder: recorder, Shared: shared, Workers: o.podSyncWorkers, ResyncPeriod: o.fullResync,
		QueueQPS: o.podQueueQPS, QueueBurst: o.podQueueBurst, ListenAddr: fmt.Sprintf(":%d", port),
		// The task state changes with the status; the container-info
		// annotation is added to pods that came without one.
		StatusAnnotations: map[string]bool{translate.AnnotationState: true, translate.AnnotationContainerInfo: false},
		TLS:               tlsCfg, Handler: handler,
		Log:      log.WithField("agent", agent.Endpoint),
		RetryMin: time.Second, RetryMax: 30 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	return n, prov, nil
}

// kubeletTLS is the kubelet API's TLS: it verifies a client certificate when
// one is presented but lets bearer-token clients through to the webhook
// authenticator.
func kubeletTLS(o *opts) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert-file/--tls-private-key-file: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, CipherSuites: nodeutil.DefaultServerCiphers()}
	if o.clientVerifyCA != "" {
		if err := nodeutil.WithCAFromPath(o.clientVerifyCA)(c); err != nil {
			return nil, fmt.Errorf("--client-verify-ca: %w", err)
		}
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// authHandler guards the kubelet API as the kubelet does: x509 client
// certificates from --client-verify-ca or bearer tokens (TokenReview), then
// SubjectAccessReview on the node's proxy/log/stats subresources.
func authHandler(o *opts, client kubernetes.Interface, name string, mux http.Handler) (http.Handler, error) {
	if o.noVerifyClients {
		return nodeutil.WithAuth(nodeutil.NoAuth(), mux), nil
	}
	auth, err := nodeutil.WebhookAuth(client, name, func(c *nodeutil.WebhookAuthConfig) error {
		if o.clientCA != nil {
			c.AuthnConfig.ClientCertificateCAContentProvider = o.clientCA
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet API auth: %w", err)
	}
	return nodeutil.WithAuth(auth, mux), nil
}

func serveMetrics(ctx context.Context, addr string, profiling bool, log *logrus.Entry) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(provider.Registry, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Error("metrics server stopped")
	}
}

// raiseOpenFileLimit lifts the soft open-file limit to the hard one: each
// long-polled container holds a connection.
func raiseOpenFileLimit(log *logrus.Entry) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.WithError(err).Warn("could not raise the open-file limit")
		}
	}
}
