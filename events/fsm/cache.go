package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// Apply-path caches. Both are optimizations only: a result never depends on
// them, because a cache miss (or a "maybe" from the filter) falls back to the
// Pebble read the rules are written against. They are touched only by the
// apply goroutine (under FSM.mu), except that the filter's initial build runs
// in its own goroutine and takes the filter's lock.

// idFilter answers "has this append id possibly been remembered within the
// retention window?" without a Pebble read, which on a large memtable costs
// a skiplist descent per append (the largest single cost of apply when every
// append carries a fresh id). It is a set of Bloom filters, one per time
// bucket of retention/8 by entry time; buckets older than the retention are
// dropped.
//
// After New or a restore it must first learn the ids already stored: apply
// feeds it the expiry index a bounded chunk per batch (step), from a cursor,
// so neither start-up nor any one batch waits for a long scan. Until the
// scan is complete it answers "maybe" to everything. Ids remembered while the
// scan runs are added by apply directly, so none is missed.
//
// Only the apply goroutine uses it (under FSM.mu).
type idFilter struct {
	ready   bool
	cursor  []byte // next expiry key to scan; nil = from the start
	width   int64  // bucket width, ns of entry time
	buckets map[int64]*idBloom
}

const (
	bloomBits   = 1 << 23 // 1 MiB per bucket: ~2% false positives at 1M ids per bucket
	bloomHashes = 3
	// filterScanChunk bounds the expiry keys scanned per apply batch while
	// the filter is being built.
	filterScanChunk = 8192
)

type idBloom struct{ words []uint64 }

func newIDFilter(retention int64) *idFilter {
	return &idFilter{width: max(retention/8, 1e9), buckets: map[int64]*idBloom{}}
}

func idHashes(id AppendID) (uint64, uint64) {
	h := xxhash.Sum64(id[:])
	return h, (h >> 33) | 1
}

// add records id, remembered at entry time t.
func (f *idFilter) add(id AppendID, t int64) {
	k := floorDiv(t, f.width)
	b := f.buckets[k]
	if b == nil {
		b = &idBloom{words: make([]uint64, bloomBits/64)}
		f.buckets[k] = b
	}
	h1, h2 := idHashes(id)
	for i := uint64(0); i < bloomHashes; i++ {
		bit := (h1 + i*h2) % bloomBits
		b.words[bit/64] |= 1 << (bit % 64)
	}
}

// mayContain reports false only if id was surely not remembered at an entry
// time at or after cutoff. It drops buckets wholly before the cutoff.
func (f *idFilter) mayContain(id AppendID, cutoff int64) bool {
	if !f.ready {
		return true
	}
	oldest := floorDiv(cutoff, f.width)
	h1, h2 := idHashes(id)
	found := false
	for k, b := range f.buckets {
		if k < oldest {
			delete(f.buckets, k)
			continue
		}
		if found {
			continue
		}
		hit := true
		for i := uint64(0); i < bloomHashes && hit; i++ {
			bit := (h1 + i*h2) % bloomBits
			hit = b.words[bit/64]&(1<<(bit%64)) != 0
		}
		found = hit
	}
	return found
}

// reset forgets everything and starts a new scan.
func (f *idFilter) reset() {
	f.ready = false
	f.cursor = nil
	f.buckets = map[int64]*idBloom{}
}

// step scans up to limit keys of the expiry index from the cursor and marks
// the filter ready when the index is exhausted.
func (f *idFilter) step(r pebble.Reader, keys keyspace, limit int) error {
	if f.ready {
		return nil
	}
	lower := keys.ns(nil, nsExpiry)
	upper := successor(lower)
	if f.cursor != nil {
		lower = f.cursor
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("fsm: scan append ids: %w", err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if n == limit {
			f.cursor = append(f.cursor[:0], k...)
			break
		}
		if len(k) != 2+8+len(AppendID{}) {
			it.Close()
			return fmt.Errorf("fsm: scan append ids: corrupt expiry key %x", k)
		}
		var id AppendID
		copy(id[:], k[10:])
		f.add(id, unorderedTime(binary.BigEndian.Uint64(k[2:10])))
		n++
	}
	exhausted := !it.Valid()
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsm: scan append ids: %w", err)
	}
	if exhausted {
		f.ready = true
		f.cursor = nil
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// metaCache keeps the metadata (version, epoch, existence) of recently
// written streams, so that an append to a busy stream does not read it back
// from Pebble. Entries change only when an apply batch commits (pending
// writes of the batch in flight are kept in applyTx.pending). Bounded: when
// full, an arbitrary tenth is dropped.
type metaCache struct {
	max int
	m   map[string]cachedMeta
}

type cachedMeta struct {
	meta   streamMeta
	exists bool
}

func newMetaCache(max int) *metaCache { return &metaCache{max: max, m: make(map[string]cachedMeta)} }

func (c *metaCache) get(stream string) (cachedMeta, bool) {
	v, ok := c.m[stream]
	return v, ok
}

func (c *metaCache) put(stream string, v cachedMeta) {
	if _, ok := c.m[stream]; !ok && len(c.m) >= c.max {
		drop := c.max / 10
		for k := range c.m {
			if drop == 0 {
				break
			}
			delete(c.m, k)
			drop--
		}
	}
	c.m[stream] = v
}

func (c *metaCache) clear() { c.m = make(map[string]cachedMeta) }
