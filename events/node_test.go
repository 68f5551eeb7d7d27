package events_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

func startSingle(t *testing.T, configure func(*events.Config)) *localcluster.Cluster {
	return startTuned(t, 1, configure)
}

// A subscription delivers the global log in order, waits for new events,
// and resumes from any position.
func TestSubscribeOrderWaitAndResume(t *testing.T) {
	c := startSingle(t, nil)
	n := c.Members()[0].Node()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := n.Append(ctx, events.AppendArgs(fmt.Sprintf("s%d", i%3), events.Any(), ev("t", fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	sub := n.Subscribe(1)
	var got []events.RecordedEvent
	for len(got) < 10 {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs...)
	}
	for i, e := range got {
		if e.Position != uint64(i+1) || string(e.Data) != fmt.Sprint(i) {
			t.Fatalf("event %d: position %d data %q", i, e.Position, e.Data)
		}
	}
	// Next blocks until a new event is committed.
	done := make(chan []events.RecordedEvent, 1)
	go func() {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		done <- evs
	}()
	select {
	case evs := <-done:
		t.Fatalf("Next returned %d events before any was appended", len(evs))
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := n.Append(ctx, events.AppendArgs("late", events.Any(), ev("t", "late"))); err != nil {
		t.Fatal(err)
	}
	evs := <-done
	if len(evs) != 1 || evs[0].Position != 11 || evs[0].Stream != "late" {
		t.Fatalf("after wait: %+v", evs)
	}
	// Resume from the middle.
	again, err := n.Subscribe(6).Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Position != 6 || len(again) != 6 {
		t.Fatalf("resume at 6: first %d, %d events", again[0].Position, len(again))
	}
	// A cancelled context ends a waiting Next.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := n.Subscribe(100).Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Next: %v", err)
	}
}

// A retried append with the same id is not written twice, also across a
// restart of the node.
func TestIdempotentAppendAcrossRestart(t *testing.T) {
	c := startSingle(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := events.AppendArgs("s", events.Any(), ev("t", "once"))
	a.ID = events.AppendID{1, 2, 3}
	first, err := c.Members()[0].Node().Append(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("n1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart("n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	n := c.Members()[0].Node()
	again, err := n.Append(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Version != first.Version || again.FirstPosition != first.FirstPosition {
		t.Fatalf("retry: %+v, first %+v", again, first)
	}
	evs, err := n.ReadStream(ctx, "s", 1, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("stream has %d events after a retried append, want 1", len(evs))
	}
}

// A follower that was down while the others snapshotted and truncated their
// logs catches up by snapshot installation, and later restarts from its own
// snapshot-restored store.
func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	c := startTuned(t, 3, snapshotOften)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, fs := leaderAndFollowers(ctx, t, c)
	lagger := fs[0]
	if err := c.Stop(lagger.ID); err != nil {
		t.Fatal(err)
	}
	const total = 400
	appendSpread(ctx, t, l.Node(), total, 7)
	// Both running nodes must have truncated their logs past what the lagger
	// has (a snapshot alone is not enough: truncation follows it), whichever
	// of them leads when it comes back.
	waitTruncated(ctx, t, l, fs[1])
	if err := c.Restart(lagger.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	n := lagger.Node()
	if idx := n.Raft().Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatal("lagger caught up without installing a snapshot: the test did not exercise restore")
	}
	if got := n.FSM().LastPosition(); got != total {
		t.Fatalf("lagger has %d events, want %d", got, total)
	}
	sub := n.Subscribe(1)
	seen := 0
	for seen < total {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			seen++
			if e.Position != uint64(seen) {
				t.Fatalf("position %d at %d", e.Position, seen)
			}
		}
	}
	// Restart the caught-up follower from its own disk: all still there.
	if err := c.Stop(lagger.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(lagger.ID); err != nil {
		t.Fatal(err)
	}
	if got := lagger.Node().FSM().LastPosition(); got != total {
		t.Fatalf("after restart lagger has %d events, want %d", got, total)
	}
}

// A node's own snapshots are references to its event store: when that store
// is lost but the Raft log survives, the node refuses to start and says the
// data is gone; started again from an empty directory it is rebuilt by a
// full snapshot from the leader (docs/operations.md, Data and recovery).
func TestLostEventStoreRefusedThenRebuiltFromLeader(t *testing.T) {
	c := startTuned(t, 3, snapshotOften)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, fs := leaderAndFollowers(ctx, t, c)
	lost := fs[0]
	const total = 300
	appendSpread(ctx, t, l.Node(), total, 5)
	// Every node has snapshotted (a reference) and truncated its log.
	waitTruncated(ctx, t, c.Members()...)
	if err := c.Stop(lost.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(lost.Dir, "events")); err != nil {
		t.Fatal(err)
	}
	err := c.Restart(lost.ID)
	if err == nil || !strings.Contains(err.Error(), "the data it named is gone") {
		t.Fatalf("restart without the event store: %v, want a refusal naming the lost data", err)
	}
	if err := os.RemoveAll(lost.Dir); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(lost.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lost.Node().FSM().LastPosition(); got != total {
		t.Fatalf("rebuilt node has %d events, want %d", got, total)
	}
	evs, err := lost.Node().ReadStream(ctx, "s3", 1, 1000, true)
	if err != nil || len(evs) != total/5 {
		t.Fatalf("rebuilt node: stream s3 has %d events (err %v), want %d", len(evs), err, total/5)
	}
}

// The leader's metrics time every group-commit entry from raft.Apply to
// applied (switchboard_log_commit_seconds) besides the appends themselves.
func TestCommitLatencyMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := startSingle(t, func(cfg *events.Config) { cfg.Registerer = reg })
	n := c.Members()[0].Node()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const appends = 5
	for i := range appends {
		if _, err := n.Append(ctx, events.AppendArgs("m", events.Any(), ev("t", fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if h := mf.GetMetric()[0].GetHistogram(); h != nil {
			counts[mf.GetName()] = h.GetSampleCount()
		}
	}
	if got := counts["switchboard_log_append_seconds"]; got != appends {
		t.Fatalf("append_seconds counted %d appends, want %d", got, appends)
	}
	if got := counts["switchboard_log_commit_seconds"]; got < 1 || got > appends {
		t.Fatalf("commit_seconds counted %d entries for %d sequential appends", got, appends)
	}
}

// Append ids are unique and start with the wall clock (big-endian
// nanoseconds) at which they were made.
func TestNewAppendIDIsTimeOrderedAndUnique(t *testing.T) {
	before := uint64(time.Now().UnixNano())
	seen := map[events.AppendID]bool{}
	for range 10000 {
		id := events.NewAppendID()
		if seen[id] {
			t.Fatalf("id %x made twice", id)
		}
		seen[id] = true
	}
	after := uint64(time.Now().UnixNano())
	for id := range seen {
		if at := binary.BigEndian.Uint64(id[:8]); at < before || at > after {
			t.Fatalf("id %x: time prefix %d outside [%d, %d]", id, at, before, after)
		}
	}
}
