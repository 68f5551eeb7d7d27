package raftstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
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
	pre    uint64    // 8 key bytes after the batch's common prefix (see WriteTo)
	k, v   [2]uint32 // offsets into arena: [start, end)
	serial uint32    // order of addition, to keep the last write of a key
	del    bool
}

// Set records a set of k to v (both copied) and returns the copy of v,
// which stays valid and unchanged until Reset (callers must not modify it).
func (w *SortedWrites) Set(k, v []byte) []byte { return w.add(k, v, false) }

// Delete records a deletion of k (copied).
func (w *SortedWrites) Delete(k []byte) { w.add(k, nil, true) }

func (w *SortedWrites) add(k, v []byte, del bool) []byte {
	// Offsets are 32 bits (a smaller op sorts faster): one commit's writes
	// stay far below 4 GiB (Pebble's own batch limit).
	if len(w.arena)+len(k)+len(v) > math.MaxUint32 {
		panic("raftstore: SortedWrites: more than 4 GiB of writes in one commit")
	}
	op := sortedOp{del: del, serial: uint32(len(w.ops))}
	op.k = [2]uint32{uint32(len(w.arena)), uint32(len(w.arena) + len(k))}
	w.arena = append(w.arena, k...)
	op.v = [2]uint32{uint32(len(w.arena)), uint32(len(w.arena) + len(v))}
	w.arena = append(w.arena, v...)
	w.ops = append(w.ops, op)
	// Growing the arena later copies it, but this slice keeps the array it
	// points into, whose bytes are never written again before Reset.
	return w.arena[op.v[0]:op.v[1]:op.v[1]]
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
	// Keys of one batch share long prefixes (a view's name and generation,
	// a namespace), so most byte comparisons would walk them: compare the 8
	// bytes after the prefix all keys share first, as a number, and the
	// whole keys only when those are equal. (Zero padding of short keys
	// keeps the order: a tie falls through to bytes.Compare.)
	lcp := 0
	if len(w.ops) > 0 {
		first := w.key(w.ops[0])
		lcp = len(first)
		for _, op := range w.ops[1:] {
			k := w.key(op)
			n := min(lcp, len(k))
			i := 0
			for i < n && k[i] == first[i] {
				i++
			}
			lcp = i
		}
	}
	for i := range w.ops {
		var buf [8]byte
		copy(buf[:], w.key(w.ops[i])[lcp:])
		w.ops[i].pre = binary.BigEndian.Uint64(buf[:])
	}
	slices.SortFunc(w.ops, func(x, y sortedOp) int {
		if x.pre != y.pre {
			if x.pre < y.pre {
				return -1
			}
			return 1
		}
		if c := bytes.Compare(w.key(x), w.key(y)); c != 0 {
			return c
		}
		return int(x.serial) - int(y.serial)
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
