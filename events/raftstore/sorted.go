package raftstore

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// SortedWrites collects the point writes (sets and deletes) of one atomic
// commit and writes them into a Pebble batch in key order, keeping only the
// last write of each key.
//
// Why: Pebble inserts a committed batch into the memtable's skiplist record
// by record, in the order the records were added, reusing the position of
// the previous insert when the next key is close to it. Writes added in
// application order jump between key ranges (an event, its stream index,
// its dedup record, …), so each insert descends the whole skiplist of a
// large memtable: cache misses that made memtable inserts the largest CPU
// cost of applying the log. Sorted, consecutive inserts land next to each
// other (new events, which extend the end of their range, nearly for free).
// A key written several times in one commit (a stream's metadata, by every
// append to it) is inserted once.
//
// The result is the same as applying the writes in the order they were
// added: within one batch the last write of a key wins either way.
//
// The zero value is ready to use; Reset reuses the memory. Not safe for
// concurrent use.
type SortedWrites struct {
	arena []byte
	ops   []sortedOp
}

type sortedOp struct {
	k, v   [2]int // offsets into arena: [start, end)
	del    bool
	serial int // order of addition, to keep the last write of a key
}

// Set records a set of k to v (both copied).
func (w *SortedWrites) Set(k, v []byte) { w.add(k, v, false) }

// Delete records a deletion of k (copied).
func (w *SortedWrites) Delete(k []byte) { w.add(k, nil, true) }

func (w *SortedWrites) add(k, v []byte, del bool) {
	op := sortedOp{del: del, serial: len(w.ops)}
	op.k = [2]int{len(w.arena), len(w.arena) + len(k)}
	w.arena = append(w.arena, k...)
	op.v = [2]int{len(w.arena), len(w.arena) + len(v)}
	w.arena = append(w.arena, v...)
	w.ops = append(w.ops, op)
}

// Len is the number of writes recorded (before collapsing repeated keys).
func (w *SortedWrites) Len() int { return len(w.ops) }

// Reset forgets every write, keeping the memory.
func (w *SortedWrites) Reset() {
	w.arena = w.arena[:0]
	w.ops = w.ops[:0]
}

func (w *SortedWrites) key(op sortedOp) []byte { return w.arena[op.k[0]:op.k[1]] }

// WriteTo adds the writes to b in key order, the last write of each key
// only, and returns how many it added.
func (w *SortedWrites) WriteTo(b *pebble.Batch) (int, error) {
	slices.SortFunc(w.ops, func(x, y sortedOp) int {
		if c := bytes.Compare(w.key(x), w.key(y)); c != 0 {
			return c
		}
		return x.serial - y.serial
	})
	n := 0
	for i, op := range w.ops {
		k := w.key(op)
		if i+1 < len(w.ops) && bytes.Equal(k, w.key(w.ops[i+1])) {
			continue // a later write of the same key wins
		}
		var err error
		if op.del {
			err = b.Delete(k, nil)
		} else {
			err = b.Set(k, w.arena[op.v[0]:op.v[1]], nil)
		}
		if err != nil {
			return n, fmt.Errorf("raftstore: sorted writes: %w", err)
		}
		n++
	}
	return n, nil
}
