package fsm

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// BenchmarkApplyBatch applies raft batches of 64 entries, each one append of
// one 256-byte event (the shape of group-committed appends), to a Pebble DB on
// disk without fsync (the raft log's synced write is what makes it durable).
// One op is one batch. The "tuned" case gives Pebble bloom filters and a
// 256 MiB block cache: idempotent appends look up absent dedup keys, which
// without filters read index and data blocks of every level.
func BenchmarkApplyBatch(b *testing.B) {
	for _, bc := range []struct {
		name  string
		id    bool
		bloom bool
		big   bool // the node's memtable size (64 MiB): inserts descend a deep skiplist
	}{{"plain", false, false, false}, {"idempotent", true, false, false}, {"idempotent-tuned", true, true, false}, {"idempotent-tuned-64MiB", true, true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			f := benchFSM(b, bc.bloom, bc.big)
			const perBatch = 64
			payload := make([]byte, 256-len("session.frame"))
			index := uint64(0)
			var seq uint64
			logs := make([]*raft.Log, perBatch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range logs {
					index++
					seq++
					a := &Append{Stream: "session-" + string(rune('a'+j%16)), Expected: Any(), Events: []Event{{Type: "session.frame", Data: payload}}}
					if bc.id {
						a.ID = AppendID{1, byte(seq), byte(seq >> 8), byte(seq >> 16), byte(seq >> 24), byte(seq >> 32)}
					}
					data, err := EncodeEntry(Entry{Time: t0 + int64(seq), Commands: []Command{{Append: a}}})
					if err != nil {
						b.Fatal(err)
					}
					logs[j] = &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
				}
				b.StartTimer()
				resp := f.ApplyBatch(logs)
				if rs := resp[perBatch-1].([]Result); rs[0].Code != OK {
					b.Fatalf("%+v", rs[0])
				}
			}
			b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkApplyBatchSteady is the "idempotent-tuned-64MiB" case of
// BenchmarkApplyBatch with random append ids and entry times 10 ms apart, so
// that after the first minutes of log the apply also expires the ids older
// than Limits.AppendIDRetention, as on a node under sustained load ("fresh":
// from an empty store; "steady": after 3× the retention of appends). The
// "-ordered" cases give the ids a time prefix, as events.NewAppendID does:
// their dedup records are inserted next to each other in the memtable.
func BenchmarkApplyBatchSteady(b *testing.B) {
	for _, bc := range []struct {
		name    string
		prefill int  // batches applied before the timer starts
		ordered bool // ids start with the entry's sequence number (big-endian)
	}{{"fresh", 0, false}, {"fresh-ordered", 0, true}, {"steady", 3 * 60_000 / 64, false}, {"steady-ordered", 3 * 60_000 / 64, true}} {
		b.Run(bc.name, func(b *testing.B) {
			f := benchFSM(b, true, true)
			const perBatch = 64
			payload := make([]byte, 256-len("session.frame"))
			rng := rand.New(rand.NewPCG(1, 2))
			index, seq := uint64(0), int64(0)
			logs := make([]*raft.Log, perBatch)
			apply := func() {
				for j := range logs {
					index++
					seq++
					a := &Append{Stream: "session-" + string(rune('a'+j%16)), Expected: Any(), Events: []Event{{Type: "session.frame", Data: payload}}}
					binary.LittleEndian.PutUint64(a.ID[:8], rng.Uint64())
					binary.LittleEndian.PutUint64(a.ID[8:], rng.Uint64())
					if bc.ordered {
						binary.BigEndian.PutUint64(a.ID[:8], uint64(seq))
					}
					data, err := EncodeEntry(Entry{Time: t0 + seq*int64(10*time.Millisecond), Commands: []Command{{Append: a}}})
					if err != nil {
						b.Fatal(err)
					}
					logs[j] = &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
				}
			}
			for range bc.prefill {
				apply()
				f.ApplyBatch(logs)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				apply()
				b.StartTimer()
				resp := f.ApplyBatch(logs)
				if rs := resp[perBatch-1].([]Result); rs[0].Code != OK {
					b.Fatalf("%+v", rs[0])
				}
			}
			b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// benchFSM opens an FSM on a Pebble DB on disk (closed when b ends); tuned
// gives it bloom filters and a 256 MiB block cache, big the node's 64 MiB
// memtables.
func benchFSM(b *testing.B, tuned, big bool) *FSM {
	opts := &pebble.Options{FS: vfs.Default, Logger: quietPebbleLogger{}}
	if tuned {
		for i := range opts.Levels {
			opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		}
		opts.Cache = pebble.NewCache(256 << 20)
		b.Cleanup(opts.Cache.Unref)
	}
	if big {
		opts.MemTableSize = 64 << 20
	}
	db, err := pebble.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	f, err := New(db, DefaultPrefix, DefaultLimits(), Options{Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return f
}
