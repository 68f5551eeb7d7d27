package fsm

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func openNoWAL(t *testing.T, fs vfs.FS) (*pebble.DB, *FSM) {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: quietPebbleLogger{}, DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer func() { _ = recover() }()
		_ = db.Close()
	})
	f, err := New(db, DefaultPrefix, DefaultLimits(), Options{Logger: testLogger(), NoWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	return db, f
}

// Without a WAL, what a persisted snapshot covers survives a crash (Raft may
// have truncated those log entries), later unflushed applies may be lost but
// the store stays a consistent prefix, and a completed restore survives too.
func TestNoWALDurabilityAcrossCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, f := openNoWAL(t, fs)
	h := &harness{t: t, db: db, fs: fs, f: f, next: 1, time: t0}
	for i := 0; i < 20; i++ {
		h.mustOK(appendCmd("s", Any(), events("e")...))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	covered := f.AppliedIndex()
	for i := 0; i < 5; i++ {
		h.mustOK(appendCmd("s", Any(), events("late")...))
	}

	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_, f2 := openNoWAL(t, crashed)
	if got := f2.AppliedIndex(); got < covered {
		t.Fatalf("after a crash the store is at index %d, below the persisted snapshot's %d", got, covered)
	}
	evs, err := f2.ReadStream("s", 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(evs)) != f2.LastPosition() || len(evs) < 20 {
		t.Fatalf("after a crash: %d events, last position %d (want a consistent prefix of at least 20)", len(evs), f2.LastPosition())
	}

	// A restore completes durably.
	if err := f2.Restore(nopCloser(sink.Bytes())); err != nil {
		t.Fatal(err)
	}
	again := crashed.CrashClone(vfs.CrashCloneCfg{})
	_, f3 := openNoWAL(t, again)
	if f3.NeedsRestore() || f3.AppliedIndex() != covered || f3.LastPosition() != 20 {
		t.Fatalf("after restore and crash: needs restore %v, index %d (want %d), position %d (want 20)",
			f3.NeedsRestore(), f3.AppliedIndex(), covered, f3.LastPosition())
	}
}
