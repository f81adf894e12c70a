package migration

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/internal/testlog"
	"github.com/vk-titus/vk-titus/internal/zktest"
)

// Generous: the tests share a 2-core machine with a JVM or two.
const (
	waitFor = 30 * time.Second
	opTime  = 30 * time.Second
)

func testLogger() logrus.FieldLogger { return testlog.New() }

// TestWithZooKeeper runs the tests that need ZooKeeper against one server
// (a JVM start is seconds), each under its own root.
func TestWithZooKeeper(t *testing.T) {
	addr, _ := zktest.Start(t)
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, url string)
	}{
		{"Precedence", testPrecedence},
		{"NoOpAndNotFound", testNoOpAndNotFound},
		{"SecondStoreFollows", testSecondStoreFollows},
		{"History", testHistory},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Invalid", testInvalid},
		{"VersionNodeRecreated", testVersionNodeRecreated},
		{"Handler", testHandler},
		{"Author", testAuthor},
		{"HandlerBehindAuth", testHandlerBehindAuth},
		{"ACL", testACL},
		{"SecureExisting", testSecureExisting},
		{"SecuredByOther", testSecuredByOther},
		{"NoPasswordShown", testNoPasswordShown},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, "zk://"+addr+"/vk-titus/migration/"+tc.name) })
	}
}

func open(t *testing.T, url string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTime)
	defer cancel()
	s, err := Open(ctx, url, Legacy, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTime)
	t.Cleanup(cancel)
	return c
}

// eventually waits for cond, checking again on every change the store
// reports and every so often (a change may have landed before we looked).
func eventually(t *testing.T, s *Store, what string, cond func() bool) {
	t.Helper()
	changes := s.Changes()
	deadline := time.After(waitFor)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-changes:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %v", what, waitFor)
		}
	}
}

func mustStage(t *testing.T, s string) Stage {
	t.Helper()
	st, err := ParseStage(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
