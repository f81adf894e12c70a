package zktest

import (
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	s := StartServer(t)
	if !ruok(s.Addr) {
		t.Fatal("not ok after start")
	}
	s.Stop()
	if ruok(s.Addr) {
		t.Fatal("still answering after stop")
	}
	start := time.Now()
	s.Restart()
	if !ruok(s.Addr) {
		t.Fatal("not ok after restart")
	}
	t.Logf("restart took %v", time.Since(start))
}
