package cluster_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-io/switchboard/cluster"
	"github.com/switchboard-io/switchboard/events"
)

// A node whose event log cannot open reports why and closes what it
// opened, instead of panicking in its clean-up (a lost event store made
// `switchboard serve` die with a nil-pointer panic).
func TestStartReportsALogThatCannotOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-directory")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lc := events.DefaultConfig()
	lc.Dir = filepath.Join(file, "log")
	n, err := cluster.Start(cluster.Config{NodeID: "n1", Log: lc, RaftListener: l, Logger: quiet()})
	if err == nil {
		_ = n.Shutdown(t.Context())
		t.Fatal("started on a data directory below a file")
	}
	if !strings.Contains(err.Error(), "not-a-directory") {
		t.Fatalf("error %q does not name the path that failed", err)
	}
	// The Raft listener was closed with the stream layer.
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the raft listener still accepts connections")
	}
}
