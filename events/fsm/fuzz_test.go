package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func memFS() vfs.FS { return vfs.NewMem() }

// Every decoder of bytes from disk or network: never panics, and every input
// it accepts re-encodes to exactly the same bytes (so decode→encode→decode is
// stable).

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range []Entry{sampleEntry(), {}, {Time: -1, Commands: []Command{claimCmd("x")}}} {
		b, _ := EncodeEntry(e)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 1, tagAppend, 1, 's', 200, 0, 0, 1, 1, 't', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		b2, err := EncodeEntry(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, b2)
		}
		e2, err := DecodeEntry(b2)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		// Validation never panics on decoded input either.
		for _, c := range e.Commands {
			_ = ValidateCommand(c, DefaultLimits())
		}
	})
}

func FuzzDecodeRecordedEvent(f *testing.F) {
	f.Add(uint64(1), encodeRecordedEvent(nil, RecordedEvent{Stream: "s", Version: 1, Epoch: 2, Time: t0, Type: "t", Data: []byte("d"), Meta: []byte("m")}))
	f.Add(uint64(7), encodeRecordedEvent(nil, RecordedEvent{}))
	f.Fuzz(func(t *testing.T, pos uint64, b []byte) {
		e, err := decodeRecordedEvent(pos, b)
		if err != nil {
			return
		}
		if e.Position != pos {
			t.Fatal("position")
		}
		if b2 := encodeRecordedEvent(nil, e); !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, b2)
		}
	})
}

func FuzzDecodeStoredValues(f *testing.F) {
	f.Add(byte(0), encodeStreamMeta(nil, streamMeta{Version: 3, Epoch: 1}))
	f.Add(byte(1), encodeDedupRecord(nil, dedupRecord{Time: t0, Kind: tagClaim, Stream: "s", Result: Result{Code: CodeConflict, Message: "m", Epoch: 1}}))
	f.Add(byte(2), encodeAppliedState(nil, appliedState{Index: 10, Position: 20}))
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		var b2 []byte
		switch which % 3 {
		case 0:
			m, err := decodeStreamMeta(b)
			if err != nil {
				return
			}
			b2 = encodeStreamMeta(nil, m)
		case 1:
			r, err := decodeDedupRecord(b)
			if err != nil {
				return
			}
			b2 = encodeDedupRecord(nil, r)
		case 2:
			s, err := decodeAppliedState(b)
			if err != nil {
				return
			}
			b2 = encodeAppliedState(nil, s)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, b2)
		}
	})
}

// snapshotSeeds returns snapshots of a small populated store.
func snapshotSeeds(f *testing.F) [][]byte {
	h := newHarness(f)
	empty := snapshotBytes(f, h.f)
	populate(h, "alpha", "beta")
	return [][]byte{empty, snapshotBytes(f, h.f)}
}

func FuzzReadSnapshot(f *testing.F) {
	for _, s := range snapshotSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, _, err := readSnapshot(bytes.NewReader(b), func(_, _ []byte) error { return nil })
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// Rebuild from the parsed header and records.
		var out bytes.Buffer
		sw := newSnapWriter(&out)
		sw.header(hdr)
		if _, _, err := readSnapshot(bytes.NewReader(b), func(rel, v []byte) error { sw.record(rel, v); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := sw.finish(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, out.Bytes()) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out.Bytes())
		}
	})
}

// FuzzSnapshotRestore restores arbitrary bytes into a real (in-memory) Pebble
// DB: a failure leaves the store needing a restore; a success persists back
// to the same bytes.
// FuzzDecodeReference: a reference snapshot read from disk either decodes
// and re-encodes to the same bytes or fails with ErrInvalid.
func FuzzDecodeReference(f *testing.F) {
	var buf bytes.Buffer
	if _, err := writeReference(&buf, appliedState{Index: 1 << 40, Position: 12345}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:len(buf.Bytes())-1])
	f.Add([]byte(snapshotMagic + "\x02\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeReference(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := writeReference(&out, st); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, out.Bytes()) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out.Bytes())
		}
	})
}

func FuzzSnapshotRestore(f *testing.F) {
	for _, s := range snapshotSeeds(f) {
		f.Add(s)
	}
	var (
		once sync.Once
		fsm  *FSM
		db   *pebble.DB
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		once.Do(func() {
			// One DB per fuzz worker process, kept for its lifetime.
			d, err := pebble.Open("db", &pebble.Options{FS: memFS(), Logger: quietPebbleLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			db = d
			fsm, err = New(db, DefaultPrefix, DefaultLimits(), Options{Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
		})
		was := fsm.NeedsRestore()
		if err := fsm.Restore(nopCloser(b)); err != nil {
			if checkSnapshotHeader(bufio.NewReader(bytes.NewReader(b))) != nil {
				// Refused by its header: nothing changed.
				if fsm.NeedsRestore() != was {
					t.Fatalf("a stream refused by its header changed NeedsRestore from %v", was)
				}
				return
			}
			if !fsm.NeedsRestore() {
				t.Fatal("failed restore without NeedsRestore")
			}
			return
		}
		if fsm.NeedsRestore() {
			t.Fatal("NeedsRestore after success")
		}
		if again := snapshotBytes(t, fsm); !bytes.Equal(again, b) {
			t.Fatalf("persisted snapshot differs from the restored one:\n in %x\nout %x", b, again)
		}
		// Reads work on whatever was restored (they may report corruption
		// across records, but must not panic).
		_, _ = fsm.ReadAll(1, 100, 0)
	})
}

// FuzzDecodeVersionEntry: a version entry either decodes to what encodes back
// to the same bytes, or is refused.
func FuzzDecodeVersionEntry(f *testing.F) {
	f.Add(appendVersionEntry(nil, 1, 1))
	f.Add(appendVersionEntry(nil, 99, 130))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		pos, n, err := decodeVersionEntry(b)
		if err != nil {
			return
		}
		if again := appendVersionEntry(nil, pos, n); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %d events at %d, which encode to %x", b, n, pos, again)
		}
	})
}
