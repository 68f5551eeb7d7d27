package raftstore

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"
)

// TestCrashKeepsSyncedWrites simulates a power loss right after each write
// method returns, with vfs.MemFS.CrashClone: the clone keeps exactly what
// was synced (plus, in the later rounds, an arbitrary part of the rest).
// Each step is checked on its own clone, before any later synced write could
// make it durable by syncing the shared WAL.
func TestCrashKeepsSyncedWrites(t *testing.T) {
	type state struct {
		first, last uint64
		term        uint64 // 0: not set
		cand        string // "": not set
	}
	for round, pct := range []int{0, 0, 30, 70, 100} {
		fs := vfs.NewCrashableMem()
		db := openTestDB(t, fs)
		s := newTestStore(t, db)
		rng := rand.New(rand.NewPCG(uint64(round), 1))

		crashAndCheck := func(step string, want state) {
			t.Helper()
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng})
			db2, err := OpenDB("db", DBOptions{FS: crashed, Logger: discardLogger()})
			if err != nil {
				t.Fatalf("round %d, after %s: reopen: %v", round, step, err)
			}
			defer db2.Close()
			s2 := newTestStore(t, db2)
			checkBounds(t, s2, want.first, want.last)
			for i := want.first; i <= want.last && want.last != 0; i++ {
				var l raft.Log
				if err := s2.GetLog(i, &l); err != nil || !sameLog(&l, testLog(i)) {
					t.Fatalf("round %d, after %s: GetLog(%d) = %+v, %v", round, step, i, l, err)
				}
			}
			term, err := s2.GetUint64([]byte("CurrentTerm"))
			if want.term == 0 && err != ErrNotFound || want.term != 0 && (err != nil || term != want.term) {
				t.Fatalf("round %d, after %s: CurrentTerm = %d, %v; want %d", round, step, term, err, want.term)
			}
			cand, err := s2.Get([]byte("LastVoteCand"))
			if want.cand == "" && err != ErrNotFound || want.cand != "" && (err != nil || string(cand) != want.cand) {
				t.Fatalf("round %d, after %s: LastVoteCand = %q, %v; want %q", round, step, cand, err, want.cand)
			}
		}

		mustStore(t, s, 1, 64)
		crashAndCheck("StoreLogs(1..64)", state{first: 1, last: 64})
		if err := s.StoreLog(testLog(65)); err != nil {
			t.Fatal(err)
		}
		crashAndCheck("StoreLog(65)", state{first: 1, last: 65})
		if err := s.DeleteRange(1, 10); err != nil {
			t.Fatal(err)
		}
		crashAndCheck("DeleteRange(1, 10)", state{first: 11, last: 65})
		if err := s.DeleteRange(60, 65); err != nil { // a follower's suffix truncation
			t.Fatal(err)
		}
		crashAndCheck("DeleteRange(60, 65)", state{first: 11, last: 59})
		mustStore(t, s, 60, 61)
		crashAndCheck("StoreLogs(60..61)", state{first: 11, last: 61})
		if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil {
			t.Fatal(err)
		}
		crashAndCheck("SetUint64", state{first: 11, last: 61, term: 9})
		if err := s.Set([]byte("LastVoteCand"), []byte("n3")); err != nil {
			t.Fatal(err)
		}
		crashAndCheck("Set", state{first: 11, last: 61, term: 9, cand: "n3"})

		// Control: an unsynced write after the last synced one. A clone with
		// 0% unsynced data must lose it, which shows that the clone does
		// drop what was not synced.
		if pct != 0 {
			continue
		}
		control := []byte{0x02, 'u', 'n', 's', 'y', 'n', 'c'}
		if err := db.Set(control, []byte("x"), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{})
		db2 := openTestDB(t, crashed)
		if _, closer, err := db2.Get(control); !errors.Is(err, pebble.ErrNotFound) {
			if closer != nil {
				_ = closer.Close()
			}
			t.Fatalf("round %d: the unsynced control write survived a crash with 0%% unsynced data (err %v): the test cannot see lost writes", round, err)
		}
	}
}

// TestWALSyncFailureIsFatal injects a failure into WAL syncs: StoreLogs must
// never return nil for a write that is not durable. Pebble reports the
// failure through Logger.Fatalf, which OpenDB's logger turns into a panic.
func TestWALSyncFailureIsFatal(t *testing.T) {
	var failing atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !failing.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	})
	db, err := OpenDB("db", DBOptions{FS: errorfs.Wrap(vfs.NewMem(), inj), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// The DB is unusable after the fatal error; it is deliberately not
	// closed.
	s := newTestStore(t, db)
	mustStore(t, s, 1, 3)

	failing.Store(true)
	var storeErr error
	panicked := func() (v any) {
		defer func() { v = recover() }()
		storeErr = s.StoreLogs(testLogs(4, 5))
		return nil
	}()
	if panicked == nil {
		if storeErr == nil {
			t.Fatal("StoreLogs returned nil although the WAL sync failed")
		}
		t.Logf("StoreLogs returned %v", storeErr)
		return
	}
	t.Logf("StoreLogs panicked: %v", panicked)
	var fe *FatalError
	if err, ok := panicked.(error); !ok || !errors.As(err, &fe) {
		t.Fatalf("panic value %v (%T), want *FatalError", panicked, panicked)
	}
	if !strings.Contains(fe.Error(), "injected error") {
		t.Fatalf("fatal error %q does not carry the cause", fe.Error())
	}
	if last, _ := s.LastIndex(); last != 3 {
		t.Fatalf("cached last index moved to %d on a failed write", last)
	}
}
