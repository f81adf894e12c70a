package discovery

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/internal/testlog"
	"github.com/vk-titus/vk-titus/internal/zktest"
)

func testLogger() logrus.FieldLogger { return testlog.New() }

// fakeMaster contends the way a Mesos master does, minus the watching:
// one session, one ephemeral sequential json.info_ znode.
type fakeMaster struct {
	info MasterInfo
	conn *zk.Conn
	node string
}

func contend(t *testing.T, addr, path, id string, port int32) *fakeMaster {
	t.Helper()
	return contendWith(t, addr, path, id, port, 4*time.Second)
}

func contendWith(t *testing.T, addr, path, id string, port int32, session time.Duration) *fakeMaster {
	t.Helper()
	c, err := Dial(ZKURL{Servers: []string{addr}, Path: path}, session, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Requests sent before the session exists may fail with ErrNoServer.
	deadline := time.After(10 * time.Second)
	for c.State() != zk.StateHasSession {
		select {
		case <-c.Kick:
		case <-deadline:
			t.Fatal("no ZooKeeper session")
		}
	}
	conn := c.Conn
	if err := EnsurePath(conn, path); err != nil {
		t.Fatal(err)
	}
	ip, _ := IPToMesos([]byte{127, 0, 0, 1})
	info := MasterInfo{
		ID: id, IP: ip, Port: uint32(port), PID: "master@127.0.0.1:" + itoa(port), Hostname: "localhost",
		Version: "1.11.0", Address: &Address{Hostname: "localhost", IP: "127.0.0.1", Port: port},
	}
	data, _ := json.Marshal(info)
	node, err := conn.Create(path+"/"+LeaderPrefix, data, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMaster{info: info, conn: conn, node: node}
}

func itoa(n int32) string { return json.Number(jsonInt(n)).String() }

func jsonInt(n int32) string { b, _ := json.Marshal(n); return string(b) }

func waitLeader(t *testing.T, d *Detector, id string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if m, ok := d.Leader(); ok && m.ID == id {
			return time.Since(start)
		}
		if time.Since(start) > within {
			m, ok := d.Leader()
			t.Fatalf("leader is %v (ok=%v), want %s after %v", m, ok, id, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMasterInfoWire(t *testing.T) {
	ip, err := IPToMesos([]byte{127, 0, 0, 1})
	if err != nil || ip != 16777343 {
		t.Fatalf("IPToMesos(127.0.0.1) = %d, %v; Mesos writes 16777343", ip, err)
	}
	if got := IPFromMesos(ip).String(); got != "127.0.0.1" {
		t.Fatalf("IPFromMesos = %s", got)
	}
	// What a Mesos 1.x master writes into ZooKeeper.
	raw := `{"address":{"hostname":"m1.example","ip":"10.0.0.5","port":5050},"hostname":"m1.example","id":"2c5a-...","ip":83886090,"pid":"master@10.0.0.5:5050","port":5050,"version":"1.11.0"}`
	m, err := ParseMasterInfo([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.URL() != "http://10.0.0.5:5050" || IPFromMesos(m.IP).String() != "10.0.0.5" {
		t.Fatalf("URL %s ip %s", m.URL(), IPFromMesos(m.IP))
	}
	m.Address = nil
	if m.URL() != "http://10.0.0.5:5050" {
		t.Fatalf("without address: %s", m.URL())
	}
	if _, ok := Sequence("json.info_0000000007"); !ok {
		t.Fatal("sequence not parsed")
	}
	if n, ok := Lowest([]string{"json.info_0000000010", "log_replicas", "json.info_0000000002", "info_0000000001"}); !ok || n != "json.info_0000000002" {
		t.Fatalf("Lowest = %q", n)
	}
	u, err := ParseZKURL("zk://u:p@a:1,b:2,c/mesos/")
	if err != nil || len(u.Servers) != 3 || u.Servers[2] != "c:2181" || u.Path != "/mesos" || u.Auth != "u:p" {
		t.Fatalf("ParseZKURL = %+v, %v", u, err)
	}
	for _, bad := range []string{"http://a/mesos", "zk://a:1", "zk:///mesos"} {
		if _, err := ParseZKURL(bad); err == nil {
			t.Errorf("ParseZKURL(%q) accepted", bad)
		}
	}
}

func TestDetectorFollowsLeader(t *testing.T) {
	addr, _ := zktest.Start(t)
	url := "zk://" + addr + "/mesos"

	d, err := NewDetector(url, testLogger(), WithSessionTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	changes := d.Changes()

	// No path yet: no leader, reported as such.
	select {
	case m := <-changes:
		if !m.IsZero() {
			t.Fatalf("first change %v, want none", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no initial report")
	}

	m1 := contend(t, addr, "/mesos", "m1", 5050)
	m2 := contend(t, addr, "/mesos", "m2", 5051)
	waitLeader(t, d, "m1", 5*time.Second)
	if m := <-changes; m.ID != "m1" || m.URL() != "http://127.0.0.1:5050" {
		t.Fatalf("change %v", m)
	}

	// The leader's session ends: the next contender leads.
	m1.conn.Close()
	took := waitLeader(t, d, "m2", 5*time.Second)
	t.Logf("detector followed the leader change in %v", took)
	if m := <-changes; m.ID != "m2" {
		t.Fatalf("change %v", m)
	}

	// Nobody left.
	m2.conn.Close()
	select {
	case m := <-changes:
		if !m.IsZero() {
			t.Fatalf("change %v, want none", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report of the last master leaving")
	}
	if _, ok := d.Leader(); ok {
		t.Fatal("Leader ok with no master")
	}
}

func TestDetectorSurvivesZooKeeperOutage(t *testing.T) {
	zks := zktest.StartServer(t)
	url := "zk://" + zks.Addr + "/mesos"
	// Sessions must outlive the outage and the JVM's restart, which takes
	// half a minute on a loaded two-core machine: else ZooKeeper rightly
	// expires the masters and there is no leader to keep.
	const session = 60 * time.Second
	m1 := contendWith(t, zks.Addr, "/mesos", "m1", 5050, session)
	contendWith(t, zks.Addr, "/mesos", "m2", 5051, session)

	d, err := NewDetector(url, testLogger(), WithSessionTimeout(session), WithMaxBackoff(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitLeader(t, d, "m1", 5*time.Second)

	zks.Stop()
	outage := time.Now()
	for time.Since(outage) < 10*time.Second {
		if m, ok := d.Leader(); !ok || m.ID != "m1" {
			t.Fatalf("during the outage the leader became %v (ok=%v); want the last known m1", m, ok)
		}
		time.Sleep(250 * time.Millisecond)
	}
	zks.Restart()
	restarted := time.Now()
	// go-zookeeper retries a server list every second: wait until both the
	// detector and m1 have their sessions back (the ZooKeeper server keeps
	// sessions across its restart), so m1's close below reaches the server.
	for d.conn.State() != zk.StateHasSession || m1.conn.State() != zk.StateHasSession {
		// Generous: a loaded machine (the JVM restarting on two busy cores)
		// is slow here, and this is not a timing assertion.
		if time.Since(restarted) > 60*time.Second {
			t.Fatalf("no session 60s after the restart: detector %v, m1 %v", d.conn.State(), m1.conn.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("sessions back %v after the restart", time.Since(restarted))
	if m, ok := d.Leader(); !ok || m.ID != "m1" {
		t.Fatalf("after the restart the leader is %v (ok=%v), want m1", m, ok)
	}

	// The detector watches again: a change after the restart is seen.
	m1.conn.Close()
	took := waitLeader(t, d, "m2", 10*time.Second)
	t.Logf("after the outage, leader change seen in %v", took)
}
