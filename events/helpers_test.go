package events_test

import (
	"context"
	"fmt"
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

// appendSpread appends total one-event appends through n, spread round-robin
// over streams s0 … s<streams-1>.
func appendSpread(ctx context.Context, t *testing.T, n *events.Node, total, streams int) {
	t.Helper()
	for i := 0; i < total; i++ {
		if _, err := n.Append(ctx, events.AppendArgs(fmt.Sprintf("s%d", i%streams), events.Any(), ev("t", fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
}

// waitTruncated waits until every member in ms has snapshotted and truncated
// its Raft log past index 64 (snapshotOften), so that a node missing the
// entries before it can only be caught up by a snapshot.
func waitTruncated(ctx context.Context, t *testing.T, ms ...*localcluster.Member) {
	t.Helper()
	for _, m := range ms {
		for {
			if first, err := m.Node().FirstLogIndex(); err == nil && first > 64 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never truncated its log after a snapshot", m.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
