package raftstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

const raftWait = 10 * time.Second

// listFSM records every command applied, in order.
type listFSM struct {
	mu       sync.Mutex
	cmds     []string
	changed  chan struct{} // closed and replaced on every change
	restores int
}

func newListFSM() *listFSM { return &listFSM{changed: make(chan struct{})} }

func (f *listFSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	f.notifyLocked()
	return len(f.cmds)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(append([]string(nil), f.cmds...)), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var cmds []string
	if err := json.NewDecoder(rc).Decode(&cmds); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = cmds
	f.restores++
	f.notifyLocked()
	return nil
}

func (f *listFSM) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

// waitLen blocks until the FSM holds n commands.
func (f *listFSM) waitLen(t *testing.T, n int) {
	t.Helper()
	timeout := time.NewTimer(raftWait)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		got, ch := len(f.cmds), f.changed
		f.mu.Unlock()
		if got >= n {
			if got > n {
				t.Fatalf("FSM holds %d commands, want %d", got, n)
			}
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("FSM holds %d commands after %s, want %d", got, raftWait, n)
		}
	}
}

type listSnapshot []string

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s listSnapshot) Release() {}

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// captureStoreWarnings routes slog.Default (where the store reports a gap
// reset) to a buffer for the duration of the test.
func captureStoreWarnings(t *testing.T) *lockedBuffer {
	buf := &lockedBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

// assertNoStoreTrouble fails if raft logged an error coming from the store
// or the store had to reset a gap: in normal operation neither happens.
func assertNoStoreTrouble(t *testing.T, raftLog, storeLog *lockedBuffer) {
	t.Helper()
	for _, line := range strings.Split(raftLog.String(), "\n") {
		if strings.Contains(line, "raftstore:") {
			t.Errorf("raft logged a store error: %s", line)
		}
	}
	if s := storeLog.String(); strings.Contains(s, "gap") {
		t.Errorf("the store reset a gap during normal raft operation: %s", s)
	}
}

func testRaftConfig(id raft.ServerID, out io.Writer) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotInterval = time.Hour // snapshots only when the test asks
	c.SnapshotThreshold = 1 << 30
	c.TrailingLogs = 10
	c.LogOutput = out
	return c
}

// raftNode is one server: its own Pebble database (on fs) and store.
type raftNode struct {
	id    raft.ServerID
	fs    vfs.FS
	db    *pebble.DB
	store *Store
	snaps *raft.InmemSnapshotStore
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	fsm   *listFSM
	raft  *raft.Raft
	obs   chan raft.Observation
}

func (n *raftNode) start(t *testing.T, out io.Writer) {
	t.Helper()
	var err error
	n.db, err = OpenDB("db", DBOptions{FS: n.fs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if n.store, err = New(n.db, testPrefix); err != nil {
		t.Fatal(err)
	}
	n.fsm = newListFSM()
	n.addr, n.trans = raft.NewInmemTransport(n.addr)
	if n.raft, err = raft.NewRaft(testRaftConfig(n.id, out), n.fsm, n.store, n.store, n.snaps, n.trans); err != nil {
		t.Fatal(err)
	}
	n.obs = make(chan raft.Observation, 64)
	n.raft.RegisterObserver(raft.NewObserver(n.obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
}

func (n *raftNode) stop(t *testing.T) {
	t.Helper()
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.trans.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// bootstrap writes the initial configuration into n's database, checking
// that raft sees no existing state before and some after.
func bootstrap(t *testing.T, n *raftNode, servers []raft.Server, out io.Writer) {
	t.Helper()
	db, err := OpenDB("db", DBOptions{FS: n.fs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport(n.addr)
	if has, err := raft.HasExistingState(s, s, n.snaps); err != nil || has {
		t.Fatalf("HasExistingState before bootstrap = %v, %v", has, err)
	}
	if err := raft.BootstrapCluster(testRaftConfig(n.id, out), s, s, n.snaps, trans,
		raft.Configuration{Servers: servers}); err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, n.snaps); err != nil || !has {
		t.Fatalf("HasExistingState after bootstrap = %v, %v", has, err)
	}
	if err := trans.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitLeader returns the node that is leader, waiting for leadership
// observations rather than polling on a timer.
func waitLeader(t *testing.T, nodes ...*raftNode) *raftNode {
	t.Helper()
	timeout := time.NewTimer(raftWait)
	defer timeout.Stop()
	wake := make(chan struct{}, 1)
	stop := make(chan struct{})
	defer close(stop)
	for _, n := range nodes {
		go func(obs chan raft.Observation) {
			for {
				select {
				case <-obs:
					select {
					case wake <- struct{}{}:
					default:
					}
				case <-stop:
					return
				}
			}
		}(n.obs)
	}
	for {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				return n
			}
		}
		select {
		case <-wake:
		case <-timeout.C:
			t.Fatalf("no leader after %s", raftWait)
		}
	}
}

func apply(t *testing.T, leader *raftNode, from, to int) {
	t.Helper()
	futures := make([]raft.ApplyFuture, 0, to-from+1)
	for i := from; i <= to; i++ {
		futures = append(futures, leader.raft.Apply(fmt.Appendf(nil, "cmd-%d", i), raftWait))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("apply on %s: %v", leader.id, err)
		}
	}
}

func wantCmds(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cmd-%d", i+1)
	}
	return out
}

func sameCmds(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestRaftSingleNodeRestart runs a real raft.Raft on the store: bootstrap,
// apply, snapshot (log compaction), restart on the same database, then a
// user snapshot restore (which deletes all logs) and another restart.
func TestRaftSingleNodeRestart(t *testing.T) {
	storeLog := captureStoreWarnings(t)
	raftLog := &lockedBuffer{}
	n := &raftNode{id: "n1", fs: vfs.NewMem(), snaps: raft.NewInmemSnapshotStore(), addr: raft.NewInmemAddr()}
	bootstrap(t, n, []raft.Server{{ID: n.id, Address: n.addr}}, raftLog)

	n.start(t, raftLog)
	leader := waitLeader(t, n)
	apply(t, leader, 1, 50)
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, _ := n.store.FirstIndex()
	if first <= 1 {
		t.Fatalf("snapshot did not compact the log: first index %d", first)
	}
	apply(t, leader, 51, 70)
	last, _ := n.store.LastIndex()
	first, _ = n.store.FirstIndex()
	n.stop(t)

	// Restart on the same database.
	db, err := OpenDB("db", DBOptions{FS: n.fs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, n.snaps); err != nil || !has {
		t.Fatalf("HasExistingState after restart = %v, %v", has, err)
	}
	checkRange := func(s *Store, wantFirst, wantLast uint64) {
		t.Helper()
		f, _ := s.FirstIndex()
		l, _ := s.LastIndex()
		if f != wantFirst || l != wantLast {
			t.Fatalf("log %d..%d, want %d..%d", f, l, wantFirst, wantLast)
		}
	}
	checkRange(s, first, last)
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term == 0 {
		t.Fatalf("CurrentTerm after restart = %d, %v", term, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	n.start(t, raftLog)
	leader = waitLeader(t, n)
	if err := leader.raft.Barrier(raftWait).Error(); err != nil {
		t.Fatal(err)
	}
	if got := n.fsm.snapshot(); !sameCmds(got, wantCmds(70)) {
		t.Fatalf("FSM after restart holds %d commands: %v", len(got), got)
	}

	// User restore: raft deletes all logs of a MonotonicLogStore, then
	// appends after the restored snapshot's (burned) index.
	snapFuture := n.raft.Snapshot()
	if err := snapFuture.Error(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := snapFuture.Open()
	if err != nil {
		t.Fatal(err)
	}
	lastBefore, _ := n.store.LastIndex()
	if err := n.raft.Restore(meta, rc, raftWait); err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	// Restore burns index lastBefore+1 for the snapshot, deletes every log
	// and appends a no-op after the burned index.
	f, _ := n.store.FirstIndex()
	if f != lastBefore+2 {
		t.Fatalf("after restore the log starts at %d, want %d (a no-op after the burned index %d)", f, lastBefore+2, lastBefore+1)
	}
	checkRange(n.store, f, f)
	apply(t, leader, 71, 75)
	checkRange(n.store, f, f+5)
	l, _ := n.store.LastIndex()
	if got := n.fsm.snapshot(); !sameCmds(got, wantCmds(75)) {
		t.Fatalf("FSM after restore holds %v", got)
	}
	n.stop(t)

	// And once more from disk.
	n.start(t, raftLog)
	leader = waitLeader(t, n)
	if err := leader.raft.Barrier(raftWait).Error(); err != nil {
		t.Fatal(err)
	}
	// The log kept its start; the new term added the leader's no-op and the
	// barrier.
	if f2, _ := n.store.FirstIndex(); f2 != f {
		t.Fatalf("first index %d after restart, want %d", f2, f)
	}
	if l2, _ := n.store.LastIndex(); l2 != l+2 {
		t.Fatalf("last index %d after restart, want %d (no-op and barrier after %d)", l2, l+2, l)
	}
	if got := n.fsm.snapshot(); !sameCmds(got, wantCmds(75)) {
		t.Fatalf("FSM after the last restart holds %v", got)
	}
	n.stop(t)
	assertNoStoreTrouble(t, raftLog, storeLog)
}

// TestRaftFollowerCatchesUpFromSnapshot: three servers, each on its own
// database. A follower misses entries the leader then compacts away, so it
// must install a snapshot; with a MonotonicLogStore raft then deletes all of
// the follower's logs and appends from the snapshot index.
func TestRaftFollowerCatchesUpFromSnapshot(t *testing.T) {
	storeLog := captureStoreWarnings(t)
	raftLog := &lockedBuffer{}
	ids := []raft.ServerID{"n1", "n2", "n3"}
	nodes := make([]*raftNode, len(ids))
	var servers []raft.Server
	for i, id := range ids {
		nodes[i] = &raftNode{id: id, fs: vfs.NewMem(), snaps: raft.NewInmemSnapshotStore(), addr: raft.NewInmemAddr()}
		servers = append(servers, raft.Server{ID: id, Address: nodes[i].addr})
	}
	for _, n := range nodes {
		bootstrap(t, n, servers, raftLog)
	}
	for _, n := range nodes {
		n.start(t, raftLog)
	}
	connect := func(n *raftNode) {
		for _, o := range nodes {
			if o != n {
				n.trans.Connect(o.addr, o.trans)
				o.trans.Connect(n.addr, n.trans)
			}
		}
	}
	for _, n := range nodes {
		connect(n)
	}
	defer func() {
		for _, n := range nodes {
			n.stop(t)
		}
	}()

	leader := waitLeader(t, nodes...)
	apply(t, leader, 1, 5)
	var lagging *raftNode
	for _, n := range nodes {
		if n != leader {
			lagging = n
			break
		}
	}
	lagging.fsm.waitLen(t, 5)
	laggingLast, _ := lagging.store.LastIndex()

	// Cut the lagging follower off, move on without it and compact.
	lagging.trans.DisconnectAll()
	for _, n := range nodes {
		n.trans.Disconnect(lagging.addr)
	}
	apply(t, leader, 6, 100)
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if first, _ := leader.store.FirstIndex(); first <= laggingLast+1 {
		t.Fatalf("leader's log still starts at %d; the follower (last %d) would not need a snapshot", first, laggingLast)
	}

	connect(lagging)
	lagging.fsm.waitLen(t, 100)
	leader = waitLeader(t, nodes...)
	apply(t, leader, 101, 110)
	for _, n := range nodes {
		n.fsm.waitLen(t, 110)
		if got := n.fsm.snapshot(); !sameCmds(got, wantCmds(110)) {
			t.Fatalf("%s holds %v", n.id, got)
		}
	}
	lagging.fsm.mu.Lock()
	restores := lagging.fsm.restores
	lagging.fsm.mu.Unlock()
	if restores == 0 {
		t.Fatal("the lagging follower caught up without installing a snapshot")
	}
	first, _ := lagging.store.FirstIndex()
	last, _ := lagging.store.LastIndex()
	if first <= laggingLast {
		t.Fatalf("lagging follower's log %d..%d still holds entries from before the snapshot (its last was %d)", first, last, laggingLast)
	}
	disk, err := lagging.store.readBounds()
	if err != nil || disk.first != first || disk.last != last {
		t.Fatalf("lagging follower: cached %d..%d, on disk %+v, %v", first, last, disk, err)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := lagging.store.GetLog(i, &l); err != nil {
			t.Fatalf("lagging follower: GetLog(%d): %v", i, err)
		}
	}
	assertNoStoreTrouble(t, raftLog, storeLog)
}

// TestRaftRestartWithLogsBehindSnapshot reproduces what a crash between
// installing a snapshot and raft's removeOldLogs leaves on disk: a snapshot
// at index S and a log that ends before S. Raft then appends at S+1, past a
// gap; a store that rejected that write would leave this node unable to
// append, restart after restart. The store deletes the stale entries instead
// and raft carries on.
func TestRaftRestartWithLogsBehindSnapshot(t *testing.T) {
	storeLog := captureStoreWarnings(t)
	raftLog := &lockedBuffer{}
	n := &raftNode{id: "n1", fs: vfs.NewMem(), snaps: raft.NewInmemSnapshotStore(), addr: raft.NewInmemAddr()}
	bootstrap(t, n, []raft.Server{{ID: n.id, Address: n.addr}}, raftLog)
	n.start(t, raftLog)
	apply(t, waitLeader(t, n), 1, 50)
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snapIndex, _ := n.store.LastIndex()
	first, _ := n.store.FirstIndex()
	n.stop(t)

	// Keep only the first three entries of the log: it now ends before the
	// snapshot index.
	db, err := OpenDB("db", DBOptions{FS: n.fs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(first+3, snapIndex); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	n.start(t, raftLog)
	leader := waitLeader(t, n)
	apply(t, leader, 51, 55)
	if got := n.fsm.snapshot(); !sameCmds(got, wantCmds(55)) {
		t.Fatalf("FSM holds %v", got)
	}
	f, _ := n.store.FirstIndex()
	if f != snapIndex+1 {
		t.Fatalf("log starts at %d, want %d: the entries behind the snapshot should be gone", f, snapIndex+1)
	}
	n.stop(t)
	if got := strings.Count(storeLog.String(), "gap before appended logs"); got != 1 {
		t.Fatalf("store reported %d gap resets, want 1:\n%s", got, storeLog.String())
	}
	if strings.Contains(raftLog.String(), "raftstore:") {
		t.Fatalf("raft logged store errors:\n%s", raftLog.String())
	}
}
