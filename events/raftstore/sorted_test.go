package raftstore

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSortedWritesEqualWritesInOrder applies random sets and deletes over a
// small key space (so keys repeat within a batch, deletes follow sets and
// sets follow deletes) both directly, in order, and through SortedWrites, to
// two databases holding the same earlier state: they must end equal.
func TestSortedWritesEqualWritesInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	direct, sorted := openTestDB(t, vfs.NewMem()), openTestDB(t, vfs.NewMem())
	var w SortedWrites
	for round := 0; round < 200; round++ {
		b1 := direct.NewBatch()
		w.Reset()
		n := 1 + rng.IntN(40)
		for i := 0; i < n; i++ {
			k := []byte(fmt.Sprintf("k%02d", rng.IntN(30)))
			if rng.IntN(4) == 0 {
				if err := b1.Delete(k, nil); err != nil {
					t.Fatal(err)
				}
				w.Delete(k)
				continue
			}
			v := []byte(fmt.Sprintf("r%d-%d", round, i))
			if err := b1.Set(k, v, nil); err != nil {
				t.Fatal(err)
			}
			w.Set(k, v)
			k[0], v[0] = 'X', 'X' // SortedWrites must have copied them
		}
		if err := b1.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		b2 := sorted.NewBatch()
		added, err := w.WriteTo(b2)
		if err != nil {
			t.Fatal(err)
		}
		if added > n || int(b2.Count()) != added {
			t.Fatalf("round %d: %d writes recorded, %d added, batch count %d", round, n, added, b2.Count())
		}
		if err := b2.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if a, b := dump(t, direct), dump(t, sorted); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("round %d: in order %v, sorted %v", round, a, b)
		}
	}
}

func TestSortedWritesKeyOrderAndLastWriteWins(t *testing.T) {
	var w SortedWrites
	w.Set([]byte("b"), []byte("1"))
	w.Set([]byte("a"), []byte("1"))
	w.Delete([]byte("b"))
	w.Set([]byte("c"), []byte("1"))
	w.Set([]byte("a"), []byte("2"))
	db := openTestDB(t, vfs.NewMem())
	b := db.NewBatch()
	n, err := w.WriteTo(b)
	if err != nil || n != 3 || w.Len() != 5 {
		t.Fatalf("WriteTo = %d, %v (recorded %d); want 3 of 5", n, err, w.Len())
	}
	r := b.Reader()
	var got []string
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, fmt.Sprintf("%v %s=%s", kind, k, v))
	}
	want := []string{"SET a=2", "DEL b=", "SET c=1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batch records %q, want %q", got, want)
	}
}

// BenchmarkSortedWrites sorts and writes the writes of one applied batch of
// 1,024 appends shaped like the event store's (five keys each, from several
// key ranges interleaved), into a fresh Pebble batch.
func BenchmarkSortedWrites(b *testing.B) {
	var w SortedWrites
	val := make([]byte, 300)
	fill := func() {
		w.Reset()
		for i := range 1024 {
			stream := fmt.Sprintf("session/%09d", 100000000+i%64)
			pos := binary.BigEndian.AppendUint64(nil, uint64(1_000_000+i))
			w.Set(append(append([]byte{2, 'v', byte(len(stream))}, stream...), pos...), pos)
			w.Set(append([]byte{2, 'g'}, pos...), val)
			w.Set(append([]byte{2, 's', byte(len(stream))}, stream...), pos)
			id := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(i)*0x9e3779b97f4a7c15), uint64(i))
			w.Set(append([]byte{2, 'd'}, id...), pos)
			w.Set(append(append([]byte{2, 't'}, pos...), id...), nil)
		}
	}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		fill()
		batch := db.NewBatch()
		b.StartTimer()
		if _, err := w.WriteTo(batch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = batch.Close()
		b.StartTimer()
	}
}
