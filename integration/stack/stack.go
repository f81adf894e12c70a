// Package stack gives end-to-end tests access to the local stack that
// `make up` (scripts/stack.sh up) starts: a real Kubernetes control plane,
// ZooKeeper, the legacy agents and vk-titus, all on 127.0.0.1 with their state
// under <repo>/.local.
//
// The stack is described by <repo>/.local/env, sourceable KEY=value lines that
// `up` writes once everything is ready and `down` removes. Load reads it; Stop,
// Kill and Start drive scripts/stack.sh to stop or restart one component (for
// example "vk-titus" or "agent-0") with the command line `up` recorded.
//
// With MESOS_AUTH (the default) the stack's agents and masters refuse
// unauthenticated calls, GET_HEALTH and /health aside. Load then loads the
// credential the bridge sends (MESOS_CREDENTIALS), and every direct call a
// test or tool makes to an agent or master goes through MesosClient, which
// sends it.
//
// The gateway's job API (LEGACY_API over HTTPS, LEGACY_API_GRPC) refuses
// anonymous callers: JobAPIClient and JobAPICredentials present the client
// certificate the stack issued for tests and tools (JOB_API_CERT, group
// system:masters, so every SubjectAccessReview allows it) and trust the
// stack's CA (JOB_API_CA). A stack written before the job API had TLS has
// none of them: the clients then speak plain HTTP and gRPC.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
)

// ErrNotUp is returned (wrapped) by Load when .local/env does not exist.
var ErrNotUp = errors.New("stack not up: run make up")

// Env describes a running local stack.
type Env struct {
	// Root is the repository root (the directory holding go.mod).
	Root string
	// StackRoot is Root/.local, where the stack keeps its state.
	StackRoot string
	// Kubeconfig is the admin kubeconfig (system:masters).
	Kubeconfig string
	// KubectlBin is the kubectl built with the control plane (v1.35.4). (A
	// field cannot share the name of the Kubectl method.)
	KubectlBin string
	// LegacyAgent is agent-0's base URL (http://127.0.0.1:PORT); empty when
	// the stack runs without agents. LegacyAgents lists every agent's URL.
	LegacyAgent  string
	LegacyAgents []string
	// NodeName is vk-titus's node name (vk-titus-0).
	NodeName string
	// Zookeeper is host:port.
	Zookeeper string
	// VKMetrics is vk-titus's metrics base URL (http://127.0.0.1:PORT).
	VKMetrics string
	// KubeletPort is vk-titus's kubelet API port (TLS).
	KubeletPort int
	// MesosAuth: the agents and masters demand HTTP Basic credentials
	// (MESOS_AUTH=1, stack.sh's default).
	MesosAuth bool
	// MesosCredential is the principal vk-titus presents to the agents and
	// masters (MESOS_CREDENTIALS); nil when the stack runs without
	// authentication. Direct calls send it through MesosClient.
	MesosCredential *mesosauth.Credential
	// JobAPI is the gateway's REST job API base URL (LEGACY_API) and
	// JobAPIGRPC its gRPC address (LEGACY_API_GRPC); both empty when the
	// stack runs no gateway.
	JobAPI, JobAPIGRPC string
	// jobAPITLS trusts the stack's CA and presents the test client
	// certificate; nil when the job API is served plain.
	jobAPITLS *tls.Config
	// Vars holds every KEY=value of .local/env.
	Vars map[string]string
}

// RepoRoot walks up from the working directory to the directory holding
// go.mod (the module root of github.com/vk-titus/vk-titus).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Load reads <repo>/.local/env. The environment variable VK_TITUS_STACK_ENV,
// when set, names another env file to read instead.
func Load() (*Env, error) {
	path := os.Getenv("VK_TITUS_STACK_ENV")
	root := ""
	if path == "" {
		r, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		root = r
		path = filepath.Join(root, ".local", "env")
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s is missing)", ErrNotUp, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars, err := parseEnv(f)
	if err != nil {
		return nil, fmt.Errorf("stack: %s: %w", path, err)
	}
	return fromVars(root, vars)
}

func parseEnv(f *os.File) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: not KEY=value: %q", n, line)
		}
		vars[k] = v
	}
	return vars, sc.Err()
}

func fromVars(root string, vars map[string]string) (*Env, error) {
	if root == "" {
		root = vars["REPO_ROOT"]
	}
	e := &Env{
		Root:        root,
		StackRoot:   vars["STACK_ROOT"],
		Kubeconfig:  vars["KUBECONFIG"],
		KubectlBin:  vars["KUBECTL"],
		LegacyAgent: vars["LEGACY_AGENT"],
		NodeName:    vars["NODE_NAME"],
		Zookeeper:   vars["ZOOKEEPER"],
		VKMetrics:   vars["VK_METRICS"],
		JobAPI:      vars["LEGACY_API"],
		JobAPIGRPC:  vars["LEGACY_API_GRPC"],
		Vars:        vars,
	}
	if e.StackRoot == "" {
		e.StackRoot = filepath.Join(root, ".local")
	}
	if n, err := strconv.Atoi(vars["AGENTS"]); err == nil {
		for i := 0; i < n; i++ {
			e.LegacyAgents = append(e.LegacyAgents, vars[fmt.Sprintf("LEGACY_AGENT_%d", i)])
		}
	}
	if p := vars["KUBELET_PORT"]; p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("stack: KUBELET_PORT=%q: %w", p, err)
		}
		e.KubeletPort = n
	}
	e.MesosAuth = vars["MESOS_AUTH"] == "1"
	if p := vars["MESOS_CREDENTIALS"]; p != "" {
		c, err := mesosauth.LoadCredential(p)
		if err != nil {
			return nil, fmt.Errorf("stack: MESOS_CREDENTIALS: %w", err)
		}
		e.MesosCredential = c
	}
	if e.MesosAuth && e.MesosCredential == nil {
		return nil, errors.New("stack: env has MESOS_AUTH=1 but no MESOS_CREDENTIALS")
	}
	if strings.HasPrefix(e.JobAPI, "https://") {
		c, err := jobAPITLS(vars["JOB_API_CA"], vars["JOB_API_CERT"], vars["JOB_API_KEY"])
		if err != nil {
			return nil, fmt.Errorf("stack: job API TLS: %w", err)
		}
		e.jobAPITLS = c
	}
	for k, v := range map[string]string{"KUBECONFIG": e.Kubeconfig, "KUBECTL": e.KubectlBin, "NODE_NAME": e.NodeName} {
		if v == "" {
			return nil, fmt.Errorf("stack: env lacks %s", k)
		}
	}
	return e, nil
}

// RestConfig is the admin client configuration (QPS 100, burst 200).
func (e *Env) RestConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("stack: kubeconfig %s: %w", e.Kubeconfig, err)
	}
	cfg.QPS = 100
	cfg.Burst = 200
	return cfg, nil
}

// Client is an admin clientset (QPS 100, burst 200).
func (e *Env) Client() (*kubernetes.Clientset, error) {
	cfg, err := e.RestConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// MesosClient is an HTTP client for direct calls to the stack's agents and
// masters: it sends MesosCredential (nothing when nil) on every request,
// redirects to the leading master included, and gives up on a call after
// timeout. Each call returns a new Client, so a caller may set its
// CheckRedirect; they share http.DefaultTransport's connections.
func (e *Env) MesosClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: e.MesosCredential.Wrap(http.DefaultTransport)}
}

// jobAPITLS reads the stack's CA and the job API client key pair.
func jobAPITLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("env has an https LEGACY_API but lacks JOB_API_CA, JOB_API_CERT or JOB_API_KEY")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("JOB_API_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("JOB_API_CA %s: no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("JOB_API_CERT, JOB_API_KEY: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// JobAPITLS is the TLS configuration of a job API client: the stack's CA,
// and the test client certificate unless anonymous. Each call returns a
// new copy. It is nil when the job API is served plain.
func (e *Env) JobAPITLS(anonymous bool) *tls.Config {
	if e.jobAPITLS == nil {
		return nil
	}
	c := e.jobAPITLS.Clone()
	if anonymous {
		c.Certificates = nil
	}
	return c
}

// JobAPIClient is an HTTP client for the REST job API (JobAPI) that
// authenticates with the test client certificate, or with nothing when
// anonymous, and gives up on a call after timeout. Each call returns a
// client with its own connections.
func (e *Env) JobAPIClient(timeout time.Duration, anonymous bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = e.JobAPITLS(anonymous)
	return &http.Client{Timeout: timeout, Transport: tr}
}

// JobAPICredentials are the transport credentials of a gRPC job API
// client (JobAPIGRPC): TLS as JobAPITLS, or plain when the job API is.
func (e *Env) JobAPICredentials(anonymous bool) credentials.TransportCredentials {
	if c := e.JobAPITLS(anonymous); c != nil {
		return credentials.NewTLS(c)
	}
	return insecure.NewCredentials()
}

// Kubectl runs the stack's kubectl with the admin kubeconfig and returns its
// stdout. On failure the error includes stderr.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.KubectlBin, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stop stops one component (SIGTERM, then SIGKILL after 10 s). Stopping
// agent-N also kills the processes left in its work directory.
func (e *Env) Stop(name string) error { return e.script("stop", name) }

// Kill stops one component with SIGKILL at once (a crash).
func (e *Env) Kill(name string) error { return e.script("kill", name) }

// Start starts one component again with the command line `up` recorded and
// waits until it is healthy (for vk-titus: its metrics port answers and the
// node is Ready). Starting a running component does nothing.
func (e *Env) Start(name string) error { return e.script("start", name) }

// Pid is the pid of a running component, from .local/pids/NAME.pid.
func (e *Env) Pid(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(e.StackRoot, "pids", name+".pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("stack: %s is not running (no pid file)", name)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("stack: pid file of %s: %w", name, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, fmt.Errorf("stack: %s (pid %d) is not running: %w", name, pid, err)
	}
	return pid, nil
}

// LogPath is the log file of a component (appended to on every start).
func (e *Env) LogPath(name string) string {
	return filepath.Join(e.StackRoot, "logs", name+".log")
}

func (e *Env) script(args ...string) error {
	cmd := exec.Command(filepath.Join(e.Root, "scripts", "stack.sh"), args...)
	cmd.Dir = e.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/stack.sh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LockTool makes sure one run of a tool (vk-bench, vk-chaos) at a time
// drives the stack under stackRoot: two would share its namespaces and
// kill each other's components. The lock is released by the returned func
// or when the process ends.
func LockTool(stackRoot, tool string) (func(), error) {
	dir := filepath.Join(stackRoot, tool)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another %s runs against %s (%s is locked)", tool, stackRoot, f.Name())
	}
	return func() { f.Close() }, nil
}
