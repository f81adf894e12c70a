// Package zktest runs a private ZooKeeper server for tests: Debian's
// zookeeper package (java + /usr/share/java/zookeeper.jar), standalone, on a
// free loopback port, with its own data directory under the test's temp dir.
//
// ZooKeeper is a hard requirement of the tests that use it: a missing
// installation fails the test with a message saying what to install, it
// never skips (a skipped leader-election test is a test nobody runs).
package zktest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Jar is the ZooKeeper server jar of Debian's zookeeper package. Its manifest
// carries the class path of every dependency but the logging binding.
const Jar = "/usr/share/java/zookeeper.jar"

// Extra class path entries: a log4j binding so the server logs to its
// console (our log file) instead of complaining about a missing SLF4J binder.
var logJars = []string{"/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"}

// TickTime is the server's tick. Sessions may be as short as 2 ticks (1 s),
// for fast failover tests, and as long as 120 s (maxSessionTimeout), for
// tests whose sessions must outlive a server restart on a loaded machine.
const TickTime = 500 * time.Millisecond

// Server is one private standalone ZooKeeper. Stop and Restart keep the
// port and the data directory, so a restarted server still knows its
// sessions and znodes, as a real ZooKeeper coming back from an outage does.
type Server struct {
	// Addr is host:port of the client port, e.g. "127.0.0.1:34567".
	Addr string

	t    testing.TB
	dir  string
	java string
	cmd  *exec.Cmd
	exit chan struct{}
	logf string
}

// Start starts a server and returns its address and a stop function (also
// registered with t.Cleanup; calling it twice is harmless).
func Start(t testing.TB) (addr string, stop func()) {
	t.Helper()
	s := StartServer(t)
	return s.Addr, s.Stop
}

// StartServer starts a server that the test can stop and restart. It fails
// the test when ZooKeeper is not installed or does not answer "ruok" in time.
func StartServer(t testing.TB) *Server {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("zktest: ZooKeeper is not installed: no java on PATH (Debian: apt-get install zookeeper): %v", err)
	}
	if _, err := os.Stat(Jar); err != nil {
		t.Fatalf("zktest: ZooKeeper is not installed: %v (Debian: apt-get install zookeeper)", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("zktest: no free port: %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		t:    t,
		dir:  dir,
		java: java,
		logf: filepath.Join(dir, "zookeeper.log"),
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`tickTime=%d
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
forceSync=no
maxSessionTimeout=120000
preAllocSize=1024
`, TickTime.Milliseconds(), filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log4j := "log4j.rootLogger=INFO, CONSOLE\n" +
		"log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n" +
		"log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n" +
		"log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n\n"
	if err := os.WriteFile(filepath.Join(dir, "log4j.properties"), []byte(log4j), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	logFile, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logFile.Close()
	cp := s.dir + ":" + Jar
	for _, j := range logJars {
		if _, err := os.Stat(j); err == nil {
			cp += ":" + j
		}
	}
	cmd := exec.Command(s.java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dzookeeper.log.dir="+s.dir,
		"-cp", cp,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(s.dir, "zoo.cfg"))
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group, and SIGKILL should the test binary die first,
	// so no JVM outlives the test.
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("zktest: starting ZooKeeper: %v", err)
	}
	s.cmd = cmd
	s.exit = make(chan struct{})
	go func(exit chan struct{}) { cmd.Wait(); close(exit) }(s.exit)

	deadline := time.Now().Add(30 * time.Second)
	for {
		if ruok(s.Addr) {
			return
		}
		select {
		case <-s.exit:
			s.cmd = nil
			s.t.Fatalf("zktest: ZooKeeper exited during start-up; log tail:\n%s", s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("zktest: ZooKeeper did not answer ruok on %s within 30s; log tail:\n%s", s.Addr, s.logTail())
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s). Clients see their
// connections drop; sessions stay in the data directory for Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exit
	}
	s.cmd = nil
}

// Restart starts a stopped server again on the same port with the same data.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	s.start()
}

// Running reports whether the server process is up.
func (s *Server) Running() bool { return s.cmd != nil }

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logf)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ruok is ZooKeeper's four-letter health check.
func ruok(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	line, _ := bufio.NewReader(c).ReadBytes('\n')
	return bytes.HasPrefix(line, []byte("imok"))
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before ZooKeeper binds it; start-up then fails loudly rather than
// talking to a stranger, as the server's exit is noticed.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
