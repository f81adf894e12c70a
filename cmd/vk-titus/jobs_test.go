package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/vk-titus/vk-titus/gateway"
	"github.com/vk-titus/vk-titus/gateway/grpcapi"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/legacyapi/legacyapitest"
	"github.com/vk-titus/vk-titus/migration"
)

type oneStage struct{}

func (oneStage) Resolve(string, string) migration.Decision { return migration.Decision{} }

// jobsServer serves the gateway's gRPC API on a loopback port over a world
// in memory.
func jobsServer(t *testing.T) string {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	legacy, kube := legacyapitest.NewMem(legacyapi.LegacyPrefix), legacyapitest.NewMem(legacyapi.KubePrefix)
	hub, err := observe.New(observe.Config{}, []observe.Source{{Name: "legacy", Feed: legacy, Backend: legacy}, {Name: "kube", Feed: kube, Backend: kube}}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go hub.Run(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcapi.Options(100)...)
	grpcapi.New(gateway.NewRouter(legacy, kube, oneStage{}, log), hub, legacyapi.TitusLimits(), log).Register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func runJobs(t *testing.T, addr string, args ...string) string {
	t.Helper()
	cmd := newJobsCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--grpc-addr", addr}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("jobs %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func TestJobsCLI(t *testing.T) {
	addr := jobsServer(t)
	file := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(file, []byte(`{"applicationName": "cli", "owner": {"teamEmail": "ops@example.com"},
	  "container": {"image": {"name": "busybox"}, "resources": {"efsMounts": []}},
	  "service": {"capacity": {"min": 1, "desired": 1, "max": 3}, "enabled": true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(runJobs(t, addr, "submit", file))
	if !strings.HasPrefix(id, legacyapi.LegacyPrefix) {
		t.Fatalf("submit printed %q", id)
	}
	if out := runJobs(t, addr, "find", "-f", "appName=cli", "--all"); !strings.Contains(out, id) || !strings.Contains(out, "1/1/3") {
		t.Fatalf("find:\n%s", out)
	}
	runJobs(t, addr, "resize", id, "--desired", "2")
	if out := runJobs(t, addr, "tasks", id); strings.Count(out, "Started") != 2 {
		t.Fatalf("tasks after resize:\n%s", out)
	}
	if out := runJobs(t, addr, "--json", "find", id); !regexp.MustCompile(`"desired":\s*2`).MatchString(out) {
		t.Fatalf("find --json:\n%s", out)
	}

	// observe --job follows the job until it ends.
	observed := make(chan string, 1)
	go func() {
		cmd := newJobsCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--grpc-addr", addr, "observe", "--job", id})
		_ = cmd.Execute()
		observed <- out.String()
	}()
	// Whether the stream begins before the kill or after, it ends with the
	// job's end: ObserveJob of a finished job sends its last state.
	runJobs(t, addr, "kill", id)
	select {
	case out := <-observed:
		if !strings.Contains(out, "Finished (archived)") {
			t.Fatalf("observe --job:\n%s", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("observe --job did not end with its job")
	}
}
