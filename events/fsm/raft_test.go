package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestWithRaft drives a real single-node raft.Raft with the FSM.
func TestWithRaft(t *testing.T) {
	db, _ := openDB(t, nil)
	f := newFSM(t, db)

	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.BatchApplyCh = true
	conf.Logger = hclog.NewNullLogger()
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("")
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	boot := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.LeaderCh():
	case <-time.After(10 * time.Second):
		t.Fatal("no leader")
	}

	apply := func(cmds ...Command) []Result {
		t.Helper()
		data, err := EncodeEntry(Entry{Time: time.Now().UnixNano(), Commands: cmds})
		if err != nil {
			t.Fatal(err)
		}
		fut := r.Apply(data, 5*time.Second)
		if err := fut.Error(); err != nil {
			t.Fatal(err)
		}
		rs, ok := fut.Response().([]Result)
		if !ok {
			t.Fatalf("response %T %v", fut.Response(), fut.Response())
		}
		if f.AppliedIndex() != fut.Index() {
			t.Fatalf("applied index %d, future index %d", f.AppliedIndex(), fut.Index())
		}
		return rs
	}

	rs := apply(claimCmd("session-1"), appendEpoch("session-1", 1, Exact(0), events("opened")...))
	if rs[0].Code != OK || rs[0].Epoch != 1 || rs[1].Code != OK || rs[1].Version != 1 {
		t.Fatalf("results %+v", rs)
	}
	rs = apply(appendEpoch("session-1", 1, Exact(0), events("opened")...))
	if rs[0].Code != CodeConflict || rs[0].Version != 1 {
		t.Fatalf("conflict %+v", rs)
	}

	// Concurrent applies are batched by raft; all land, densely.
	const n = 100
	futs := make([]raft.ApplyFuture, n)
	for i := range futs {
		data, _ := EncodeEntry(Entry{Time: time.Now().UnixNano(), Commands: []Command{appendEpoch("session-1", 1, Any(), events("frame")...)}})
		futs[i] = r.Apply(data, 5*time.Second)
	}
	seen := map[uint64]bool{}
	for _, fut := range futs {
		if err := fut.Error(); err != nil {
			t.Fatal(err)
		}
		r := fut.Response().([]Result)[0]
		if r.Code != OK || seen[r.FirstPosition] {
			t.Fatalf("%+v", r)
		}
		seen[r.FirstPosition] = true
	}
	if f.LastPosition() != n+1 {
		t.Fatalf("last position %d", f.LastPosition())
	}

	// A raft snapshot goes through the FSM and restores into a fresh one.
	if err := r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("snapshots: %v %v", list, err)
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	db2, _ := openDB(t, nil)
	f2 := newFSM(t, db2)
	if err := f2.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	sameDump(t, "raft snapshot", dump(t, db), dump(t, db2))
}
