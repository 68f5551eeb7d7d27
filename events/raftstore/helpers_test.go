package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

const testPrefix byte = 0x01

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openTestDB opens the database "db" on fs and closes it at the end of the
// test unless the test closed it already.
func openTestDB(t testing.TB, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := OpenDB("db", DBOptions{FS: fs, Logger: discardLogger(), CacheSize: 8 << 20, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	t.Cleanup(func() {
		// Close panics on an already closed DB; tests that close it
		// themselves reopen a new one, which this cleanup does not cover.
		defer func() { _ = recover() }()
		_ = db.Close()
	})
	return db
}

func newTestStore(t testing.TB, db *pebble.DB) *Store {
	t.Helper()
	s, err := New(db, testPrefix)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// testLog returns a fully populated entry whose content depends on idx.
func testLog(idx uint64) *raft.Log {
	return &raft.Log{
		Index:      idx,
		Term:       idx/10 + 1,
		Type:       raft.LogType(idx % 6),
		Data:       fmt.Appendf(nil, "data-%d", idx),
		Extensions: fmt.Appendf(nil, "ext-%d", idx),
		AppendedAt: time.Unix(1_700_000_000+int64(idx), int64(idx)*1000+7),
	}
}

func testLogs(first, last uint64) []*raft.Log {
	var out []*raft.Log
	for i := first; i <= last; i++ {
		out = append(out, testLog(i))
	}
	return out
}

func mustStore(t testing.TB, s *Store, first, last uint64) {
	t.Helper()
	if err := s.StoreLogs(testLogs(first, last)); err != nil {
		t.Fatalf("StoreLogs(%d..%d): %v", first, last, err)
	}
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

// checkBounds asserts the cached bounds, that a fresh Store reading the disk
// agrees, and that exactly first..last is readable around the edges.
func checkBounds(t testing.TB, s *Store, first, last uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("cached bounds %d..%d, want %d..%d", f, l, first, last)
	}
	disk, err := s.readBounds()
	if err != nil {
		t.Fatalf("readBounds: %v", err)
	}
	if disk.first != first || disk.last != last {
		t.Fatalf("on-disk bounds %d..%d, want %d..%d", disk.first, disk.last, first, last)
	}
	var got raft.Log
	if first > 1 {
		if err := s.GetLog(first-1, &got); err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) below first: err %v, want raft.ErrLogNotFound", first-1, err)
		}
	}
	if err := s.GetLog(last+1, &got); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(%d) above last: err %v, want raft.ErrLogNotFound", last+1, err)
	}
	if last == 0 {
		return
	}
	for _, idx := range []uint64{first, last} {
		if err := s.GetLog(idx, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", idx, err)
		}
		if want := testLog(idx); !sameLog(&got, want) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", idx, got, *want)
		}
	}
}

// dump returns every key/value in db.
func dump(t testing.TB, db *pebble.DB) map[string]string {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}
