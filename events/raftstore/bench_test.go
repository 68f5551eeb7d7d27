package raftstore

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs appends batches of 64 entries of 256 bytes, each batch
// one synced commit, as a raft leader does under load, on the test machine's
// temporary directory (real fsyncs). vfs.MemFS is not a useful baseline: its
// file writes copy the whole file as it grows.
func BenchmarkStoreLogs(b *testing.B) {
	const batch, size = 64, 256
	for _, bc := range []struct {
		name string
		fs   vfs.FS
		dir  func() string
	}{
		{"disk", vfs.Default, func() string { return b.TempDir() }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db, err := OpenDB(bc.dir(), DBOptions{FS: bc.fs, Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := New(db, testPrefix)
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i)
			}
			logs := make([]*raft.Log, batch)
			for i := range logs {
				logs[i] = &raft.Log{Term: 3, Type: raft.LogCommand, Data: data}
			}
			next := uint64(1)
			b.SetBytes(batch * size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				now := time.Now()
				for _, l := range logs {
					l.Index, l.AppendedAt = next, now
					next++
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
