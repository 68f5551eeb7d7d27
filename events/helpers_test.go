package events_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

// quietLogger logs warnings and errors only (all levels with SWITCHBOARD_TEST_LOG=debug).
func quietLogger() *slog.Logger {
	lv := slog.LevelError + 4
	if os.Getenv("SWITCHBOARD_TEST_LOG") == "debug" {
		lv = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// leaderAndFollowers waits for c's leader and returns it and the other
// running members, in member order.
func leaderAndFollowers(ctx context.Context, t *testing.T, c *localcluster.Cluster) (*localcluster.Member, []*localcluster.Member) {
	t.Helper()
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fs []*localcluster.Member
	for _, m := range c.Members() {
		if m != l && m.Node() != nil {
			fs = append(fs, m)
		}
	}
	return l, fs
}

// snapshotOften makes nodes snapshot every 64 entries (checked every
// 50 ms) and keep 16 entries after it, so that a node that misses a few
// hundred appends must be caught up by a snapshot.
func snapshotOften(c *events.Config) {
	c.Raft.SnapshotThreshold = 64
	c.Raft.TrailingLogs = 16
	c.Raft.SnapshotInterval = 50 * time.Millisecond
}
