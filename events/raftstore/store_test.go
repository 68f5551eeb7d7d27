package raftstore

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func TestEmptyStore(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))
	checkBounds(t, s, 0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(1) on empty store: %v, want raft.ErrLogNotFound itself", err)
	}
	if err := s.GetLog(0, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(0): %v, want raft.ErrLogNotFound", err)
	}
	if !s.IsMonotonic() {
		t.Fatal("IsMonotonic() = false")
	}
}

func TestNewRejectsNilDB(t *testing.T) {
	if _, err := New(nil, testPrefix); err == nil || !strings.HasPrefix(err.Error(), "raftstore: ") {
		t.Fatalf("New(nil) error %v", err)
	}
}

func TestLogRoundTripEveryField(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))
	entries := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte{0, 1, 2, 0xff}, Extensions: []byte("ext"),
			AppendedAt: time.Now()}, // carries a monotonic reading and Local location
		{Index: 2, Term: 1, Type: raft.LogNoop},                                          // nil slices, zero time
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}}, // empty slices
		{Index: 4, Term: math.MaxUint64, Type: raft.LogType(255), Data: bytes.Repeat([]byte("x"), 1<<20),
			AppendedAt: time.Date(1960, 1, 2, 3, 4, 5, 999_999_999, time.UTC)},
		{Index: 5, Term: 3, Type: raft.LogBarrier, AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC)},
	}
	if err := s.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	for _, want := range entries {
		got := raft.Log{Index: 999, Data: []byte("stale"), Extensions: []byte("stale"), AppendedAt: time.Now()}
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if !sameLog(&got, want) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
		}
		if len(want.Data) == 0 && got.Data != nil || len(want.Extensions) == 0 && got.Extensions != nil {
			t.Fatalf("GetLog(%d): empty slices should decode as nil: %+v", want.Index, got)
		}
	}
	// Extreme index.
	s2, err := New(openTestDB(t, vfs.NewMem()), testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	top := &raft.Log{Index: math.MaxUint64, Term: 7, Data: []byte("top")}
	if err := s2.StoreLog(top); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := s2.GetLog(math.MaxUint64, &got); err != nil || !sameLog(&got, top) {
		t.Fatalf("GetLog(MaxUint64) = %+v, %v", got, err)
	}
	if err := s2.StoreLog(&raft.Log{Index: 1}); err == nil {
		t.Fatal("StoreLog below MaxUint64 accepted")
	}
}

func TestStoreLogsMany(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))
	next := uint64(1)
	for _, n := range []uint64{1, 64, 3, 1024, 17, 1} {
		mustStore(t, s, next, next+n-1)
		next += n
		checkBounds(t, s, 1, next-1)
	}
	for i := uint64(1); i < next; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if !sameLog(&got, testLog(i)) {
			t.Fatalf("GetLog(%d) = %+v", i, got)
		}
	}
}

func TestStoreLogsRejects(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	s := newTestStore(t, db)
	mustStore(t, s, 5, 10)
	before := dump(t, db)
	cases := []struct {
		name string
		logs []*raft.Log
		want string
	}{
		{"non-consecutive", []*raft.Log{testLog(11), testLog(13)}, "index 13 follows index 11"},
		{"descending", []*raft.Log{testLog(12), testLog(11)}, "index 11 follows index 12"},
		{"duplicate", []*raft.Log{testLog(11), testLog(11)}, "index 11 follows index 11"},
		{"index zero", []*raft.Log{{Index: 0}}, "index 0"},
		{"nil entry", []*raft.Log{testLog(11), nil}, "entry 1 of 2 is nil"},
		{"overwrite last", []*raft.Log{testLog(10), testLog(11)}, "store logs 10..11: does not follow the stored log 5..10"},
		{"overwrite middle", testLogs(7, 8), "store logs 7..8: does not follow the stored log 5..10"},
		{"before first", testLogs(1, 2), "store logs 1..2: does not follow the stored log 5..10"},
	}
	for _, c := range cases {
		err := s.StoreLogs(c.logs)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "raftstore: ") {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
		checkBounds(t, s, 5, 10)
	}
	if after := dump(t, db); len(after) != len(before) {
		t.Fatalf("rejected writes changed the db: %d keys before, %d after", len(before), len(after))
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
}

// TestStoreLogsAfterGapResets covers raft writing past a gap, which happens
// only when a snapshot covers the gap and removeOldLogs did not run (crash
// between snapshot install and log removal).
func TestStoreLogsAfterGapResets(t *testing.T) {
	fs := vfs.NewMem()
	db := openTestDB(t, fs)
	s := newTestStore(t, db)
	mustStore(t, s, 1, 5)
	mustStore(t, s, 10, 12)
	checkBounds(t, s, 10, 12)
	var got raft.Log
	for i := uint64(1); i <= 9; i++ {
		if err := s.GetLog(i, &got); err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) after reset: %v", i, err)
		}
	}
	mustStore(t, s, 13, 13)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, newTestStore(t, openTestDB(t, fs)), 10, 13)
}

func TestDeleteRange(t *testing.T) {
	const max64 = math.MaxUint64
	cases := []struct {
		name             string
		min, max         uint64
		first, last      uint64 // expected afterwards
		wantErrSubstring string
	}{
		{"prefix", 1, 3, 4, 10, ""},
		{"prefix from below first", 0, 3, 4, 10, ""},
		{"single first", 1, 1, 2, 10, ""},
		{"suffix", 8, 10, 1, 7, ""},
		{"suffix to max", 8, max64, 1, 7, ""},
		{"single last", 10, 10, 1, 9, ""},
		{"all exact", 1, 10, 0, 0, ""},
		{"all wide", 0, max64, 0, 0, ""},
		{"empty range", 5, 4, 1, 10, ""},
		{"above last", 11, 20, 1, 10, ""},
		{"below first", 0, 0, 1, 10, ""},
		{"middle", 4, 6, 1, 10, "would leave a gap"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t, openTestDB(t, vfs.NewMem()))
			mustStore(t, s, 1, 10)
			err := s.DeleteRange(c.min, c.max)
			if c.wantErrSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrSubstring) {
					t.Fatalf("DeleteRange(%d, %d) error %v, want %q", c.min, c.max, err, c.wantErrSubstring)
				}
			} else if err != nil {
				t.Fatalf("DeleteRange(%d, %d): %v", c.min, c.max, err)
			}
			checkBounds(t, s, c.first, c.last)
			for i := c.first; i <= c.last && c.last != 0; i++ {
				var got raft.Log
				if err := s.GetLog(i, &got); err != nil {
					t.Fatalf("GetLog(%d) after delete: %v", i, err)
				}
			}
		})
	}
}

// TestRaftWritePatterns replays the log writes hashicorp/raft v1.8.0 issues.
func TestRaftWritePatterns(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))
	// BootstrapCluster stores index 1; the leader appends.
	mustStore(t, s, 1, 1)
	mustStore(t, s, 2, 20)
	// Follower with a conflicting suffix: DeleteRange(conflict, last), then
	// StoreLogs from the conflict index.
	if err := s.DeleteRange(15, 20); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 14)
	mustStore(t, s, 15, 25)
	// Compaction after a snapshot: DeleteRange(first, snapshotIndex - trailing).
	if err := s.DeleteRange(1, 18); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 19, 25)
	// removeOldLogs after a snapshot install or restore: DeleteRange(first,
	// last), then StoreLogs from snapshotIndex+1.
	if err := s.DeleteRange(19, 25); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	mustStore(t, s, 101, 110)
	checkBounds(t, s, 101, 110)
}

func TestReopenKeepsEverything(t *testing.T) {
	fs := vfs.NewMem()
	db := openTestDB(t, fs)
	s := newTestStore(t, db)
	mustStore(t, s, 1, 100)
	if err := s.DeleteRange(1, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = newTestStore(t, openTestDB(t, fs))
	checkBounds(t, s, 31, 90)
	for i := uint64(31); i <= 90; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil || !sameLog(&got, testLog(i)) {
			t.Fatalf("GetLog(%d) after reopen = %+v, %v", i, got, err)
		}
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-2" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
	}
	mustStore(t, s, 91, 95)
	checkBounds(t, s, 31, 95)
}

func TestStable(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))

	v, err := s.Get([]byte("missing"))
	if err == nil || err.Error() != "not found" || !errors.Is(err, ErrNotFound) || v != nil {
		t.Fatalf("Get(missing) = %q, %v; want nil and exactly \"not found\"", v, err)
	}
	n, err := s.GetUint64([]byte("missing"))
	if err == nil || err.Error() != "not found" || n != 0 {
		t.Fatalf("GetUint64(missing) = %d, %v; want 0 and exactly \"not found\"", n, err)
	}

	// raft's own use: HasExistingState reads the missing term as absent.
	has, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore())
	if err != nil || has {
		t.Fatalf("HasExistingState on a fresh store = %v, %v", has, err)
	}

	if err := s.Set([]byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v2" {
		t.Fatalf("Get(k) = %q, %v", v, err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %#v, %v; want non-nil empty", v, err)
	}
	bin := []byte{0, 0xff, 's', 'l'}
	if err := s.Set(bin, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(bin); err != nil || !bytes.Equal(v, []byte{1}) {
		t.Fatalf("Get(binary key) = %v, %v", v, err)
	}

	for _, want := range []uint64{0, 1, 1 << 40, math.MaxUint64} {
		if err := s.SetUint64([]byte("CurrentTerm"), want); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != want {
			t.Fatalf("GetUint64 = %d, %v; want %d", got, err, want)
		}
	}
	// Set and SetUint64 share the key space; a wrong-sized value is an error.
	if _, err := s.GetUint64([]byte("k")); err == nil || !strings.HasPrefix(err.Error(), "raftstore: ") ||
		!strings.Contains(err.Error(), "value is 2 bytes") {
		t.Fatalf("GetUint64 of a 2-byte value: %v", err)
	}

}

// TestPrefixIsolation checks that the store neither reads nor deletes keys
// outside its two sub-ranges, including keys laid out like its own under
// other prefixes.
func TestPrefixIsolation(t *testing.T) {
	fs := vfs.NewMem()
	db := openTestDB(t, fs)
	foreign := func(tag string) map[string]string {
		m := map[string]string{}
		for _, k := range [][]byte{
			{0x00},
			{0x00, 0xff, 0xff},
			{0x00, 'l', 0, 0, 0, 0, 0, 0, 0, 1},
			{0x01},                  // the bare prefix
			{0x01, 'k', 0xff, 0xff}, // just below the log range
			{0x01, 'm'},             // just above the log range
			{0x01, 'r', 0xff},       // just below the stable range
			{0x01, 't'},             // just above the stable range
			{0x02},                  // the event store's prefix
			{0x02, 'l', 0, 0, 0, 0, 0, 0, 0x03, 0xe7}, // looks like log 999
			{0x02, 's', 'C', 'u', 'r', 'r', 'e', 'n', 't', 'T', 'e', 'r', 'm'},
			{0x02, 0, 0, 0, 0},
			{0xff, 0xff},
		} {
			m[string(k)] = "foreign-" + tag
		}
		return m
	}
	write := func(m map[string]string) {
		b := db.NewBatch()
		for k, v := range m {
			if err := b.Set([]byte(k), []byte(v), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	before := foreign("before")
	write(before)

	s := newTestStore(t, db)
	checkBounds(t, s, 0, 0) // the 0x02 "log 999" key is not ours
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(CurrentTerm) saw another prefix's key: %v", err)
	}
	mustStore(t, s, 1, 50)
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}

	// A second store on the neighbouring prefix, as the event store would be.
	other, err := New(db, 0x02)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := other.FirstIndex(); f != 999 {
		t.Fatalf("store at 0x02 sees first index %d, want the 999 planted there", f)
	}

	after := foreign("after") // same keys, new values: overwrite
	write(after)
	checkBounds(t, s, 1, 50)

	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	mustStore(t, s, 60, 61)
	if err := s.DeleteRange(60, 61); err != nil {
		t.Fatal(err)
	}

	got := dump(t, db)
	for k, v := range after {
		if got[k] != v {
			t.Errorf("foreign key %x = %q after the store's writes, want %q", k, got[k], v)
		}
	}
	// Only the foreign keys and the store's stable key remain.
	if len(got) != len(after)+1 {
		t.Errorf("db holds %d keys, want %d foreign + 1 stable", len(got), len(after))
	}
	if f, _ := other.FirstIndex(); f != 999 {
		t.Fatalf("DeleteRange on 0x01 changed 0x02: first %d", f)
	}
	var l raft.Log
	if err := other.GetLog(999, &l); err == nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("planted non-record under 0x02 should read as corrupt, got %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, newTestStore(t, openTestDB(t, fs)), 0, 0)
}

func TestPrefixEdgeBytes(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	for _, p := range []byte{0x00, 0xff} {
		s, err := New(db, p)
		if err != nil {
			t.Fatal(err)
		}
		mustStore(t, s, 1, 3)
		checkBounds(t, s, 1, 3)
		if err := s.DeleteRange(1, 3); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 0, 0)
	}
}

// TestNoAliasing checks that returned values are copies: they survive later
// writes, flushes and compactions, and mutating them changes nothing stored.
// It also checks that the store keeps no reference to what it was given.
func TestNoAliasing(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	s := newTestStore(t, db)
	in := testLogs(1, 10)
	if err := s.StoreLogs(in); err != nil {
		t.Fatal(err)
	}
	for _, l := range in { // caller reuses its buffers
		for i := range l.Data {
			l.Data[i] = 'X'
		}
	}
	var first raft.Log
	if err := s.GetLog(1, &first); err != nil {
		t.Fatal(err)
	}
	if !sameLog(&first, testLog(1)) {
		t.Fatalf("stored entry changed with the caller's slice: %q", first.Data)
	}
	if err := s.Set([]byte("k"), []byte("value-1")); err != nil {
		t.Fatal(err)
	}
	val, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}

	// Churn: overwrite both, write more, flush and compact so the memory
	// Pebble handed out is reused.
	if err := s.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := s.StoreLogs([]*raft.Log{{Index: uint64(i + 1), Data: bytes.Repeat([]byte{'Z'}, 4096)}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Set([]byte("k"), bytes.Repeat([]byte{'Z'}, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	if !sameLog(&first, testLog(1)) {
		t.Fatalf("GetLog result changed after later writes: %q", first.Data)
	}
	if string(val) != "value-1" {
		t.Fatalf("Get result changed after later writes: %q", val)
	}
	// Mutating a returned value does not change the store.
	var again raft.Log
	if err := s.GetLog(1, &again); err != nil {
		t.Fatal(err)
	}
	again.Data[0] = 'Q'
	var third raft.Log
	if err := s.GetLog(1, &third); err != nil || third.Data[0] != 'Z' {
		t.Fatalf("mutating a returned slice reached the store: %q, %v", third.Data[:1], err)
	}
}

func TestCorruptRecords(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	s := newTestStore(t, db)
	mustStore(t, s, 1, 3)
	put := func(idx uint64, v []byte) {
		if err := db.Set(s.logKey(idx), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	flipped := EncodeLog(testLog(1))
	flipped[len(flipped)/2] ^= 0x10
	put(1, flipped)
	put(2, EncodeLog(testLog(7))) // a valid record under the wrong key
	put(3, []byte{1, 2})
	for idx, want := range map[uint64]string{
		1: "raftstore: log 1: corrupt log record: checksum mismatch",
		2: "raftstore: log 2: corrupt log record: record holds index 7",
		3: "raftstore: log 3: corrupt log record: record is 2 bytes",
	} {
		var l raft.Log
		err := s.GetLog(idx, &l)
		if err == nil || !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("GetLog(%d) error %v, want prefix %q", idx, err, want)
		}
		if l.Index != 0 || l.Data != nil {
			t.Errorf("GetLog(%d) filled the entry despite the error: %+v", idx, l)
		}
	}
}

func TestNewRejectsMalformedLogKey(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	if err := db.Set([]byte{testPrefix, 'l', 1, 2, 3}, []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := New(db, testPrefix); err == nil || !strings.Contains(err.Error(), "malformed key") {
		t.Fatalf("New with a short key in the log range: %v", err)
	}
}

// TestConcurrentAppendAndRead runs under -race: readers never see a bound
// whose entry is missing.
func TestConcurrentAppendAndRead(t *testing.T) {
	s := newTestStore(t, openTestDB(t, vfs.NewMem()))
	mustStore(t, s, 1, 1)
	const batches = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				var l raft.Log
				for _, idx := range []uint64{first, last} {
					if err := s.GetLog(idx, &l); err != nil || l.Index != idx {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := uint64(0); i < batches; i++ {
		mustStore(t, s, 2+i*4, 5+i*4)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("reader saw a missing entry: %v", err)
	}
	checkBounds(t, s, 1, 1+batches*4)
}

func TestOpenDBOptions(t *testing.T) {
	_, err := OpenDB("", DBOptions{CacheSize: -1, MemTableSize: 4 << 30})
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"raftstore: ", "dir is empty", "CacheSize is -1", "MemTableSize is 4294967296"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Defaults and a real directory.
	dir := t.TempDir() + "/nested/db"
	db, err := OpenDB(dir, DBOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got := db.FormatMajorVersion(); got != pebble.FormatTableFormatV6 {
		t.Errorf("format %d, want %d", got, pebble.FormatTableFormatV6)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
