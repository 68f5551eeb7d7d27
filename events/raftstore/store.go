package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// ErrNotFound is returned, unwrapped, by Get and GetUint64 for a stable key
// that was never set. Its text is exactly "not found" and carries no
// "raftstore: " prefix because hashicorp/raft recognises a missing key by
// comparing err.Error() == "not found" (NewRaft, HasExistingState,
// requestVote); raft-boltdb returns the same text.
var ErrNotFound = errors.New("not found")

const (
	subLog    byte = 'l'
	subStable byte = 's'
	// logKeyLen is prefix, sub-prefix and the 8-byte big-endian index.
	logKeyLen = 2 + 8
	// maxBatchBytes bounds the encoded size of one StoreLogs call, well below
	// Pebble's 4 GiB batch limit (beyond which Pebble panics).
	maxBatchBytes = 1 << 31
)

// Store is a raft.LogStore, raft.StableStore and raft.MonotonicLogStore kept
// in a shared Pebble database under one prefix byte. Create it with New.
type Store struct {
	db     *pebble.DB
	prefix byte

	// Sub-range bounds: [logLower, logUpper) holds log entries,
	// [stableLower, stableUpper) the stable keys.
	logLower, logUpper       []byte
	stableLower, stableUpper []byte

	// writeMu serializes StoreLogs and DeleteRange and is held across their
	// commit, so bounds always describes the committed log once it is
	// released. No other lock is taken while it is held.
	writeMu sync.Mutex
	// bounds caches the first and last stored index (both 0 when the log is
	// empty). Written only with writeMu held; read without a lock.
	bounds atomic.Pointer[logBounds]
}

// logBounds is an immutable pair, swapped as a whole so that readers never
// see the first index of one state with the last index of another.
type logBounds struct {
	first, last uint64
}

func (b *logBounds) empty() bool { return b.last == 0 }

// New returns a Store keeping all its keys under the single byte prefix
// (the caller owns db and closes it, after it stops using the Store).
// Other components share the db under other prefixes (the event store uses
// 0x02); the raft store conventionally uses 0x01.
//
// New reads the first and last log index (two bounded seeks) and caches
// them. At most one Store may use a given db and prefix at a time. It fails
// if db is nil or the log sub-range holds a key that this package could not
// have written.
func New(db *pebble.DB, prefix byte) (*Store, error) {
	if db == nil {
		return nil, errors.New("raftstore: new: db is nil")
	}
	s := &Store{
		db:          db,
		prefix:      prefix,
		logLower:    []byte{prefix, subLog},
		logUpper:    []byte{prefix, subLog + 1},
		stableLower: []byte{prefix, subStable},
		stableUpper: []byte{prefix, subStable + 1},
	}
	b, err := s.readBounds()
	if err != nil {
		return nil, err
	}
	s.bounds.Store(&b)
	return s, nil
}

// readBounds finds the first and last log entry on disk.
func (s *Store) readBounds() (b logBounds, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: s.logLower, UpperBound: s.logUpper})
	if err != nil {
		return logBounds{}, fmt.Errorf("raftstore: load log bounds: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			b, err = logBounds{}, fmt.Errorf("raftstore: load log bounds: close iterator: %w", cerr)
		}
	}()
	if it.First() {
		if b.first, err = s.parseLogKey(it.Key()); err != nil {
			return logBounds{}, err
		}
		if !it.Last() {
			if err := it.Error(); err != nil {
				return logBounds{}, fmt.Errorf("raftstore: load log bounds: %w", err)
			}
			return logBounds{}, fmt.Errorf("raftstore: load log bounds: no last entry after first entry %d", b.first)
		}
		if b.last, err = s.parseLogKey(it.Key()); err != nil {
			return logBounds{}, err
		}
	}
	if err := it.Error(); err != nil {
		return logBounds{}, fmt.Errorf("raftstore: load log bounds: %w", err)
	}
	return b, nil
}

func (s *Store) parseLogKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != s.prefix || k[1] != subLog {
		return 0, fmt.Errorf("raftstore: malformed key %x in the log range", k)
	}
	idx := binary.BigEndian.Uint64(k[2:])
	if idx == 0 {
		return 0, fmt.Errorf("raftstore: malformed key %x in the log range: index 0", k)
	}
	return idx, nil
}

func (s *Store) logKey(idx uint64) []byte {
	k := make([]byte, logKeyLen)
	s.putLogKey(k, idx)
	return k
}

func (s *Store) putLogKey(dst []byte, idx uint64) {
	dst[0], dst[1] = s.prefix, subLog
	binary.BigEndian.PutUint64(dst[2:], idx)
}

func (s *Store) stableKey(k []byte) []byte {
	out := make([]byte, 0, 2+len(k))
	return append(append(out, s.prefix, subStable), k...)
}

// FirstIndex returns the index of the first stored log entry, or 0 if the
// log is empty. It reads the in-memory cache and never fails.
func (s *Store) FirstIndex() (uint64, error) {
	return s.bounds.Load().first, nil
}

// LastIndex returns the index of the last stored log entry, or 0 if the log
// is empty. It reads the in-memory cache and never fails.
func (s *Store) LastIndex() (uint64, error) {
	return s.bounds.Load().last, nil
}

// GetLog reads the entry at index into log, overwriting all of its fields.
// The entry's Data and Extensions are copies that stay valid after later
// writes. A missing index returns raft.ErrLogNotFound itself, unwrapped:
// raft's replication compares err == raft.ErrLogNotFound to decide to send a
// snapshot instead. A record that fails its checksum or does not decode, or
// that holds another index than its key, returns an error matching
// ErrCorrupt that names index.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	var key [logKeyLen]byte
	s.putLogKey(key[:], index)
	val, closer, err := s.db.Get(key[:])
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	// decodeLog copies what it keeps out of val, so val is not used after
	// the closer releases it.
	var entry raft.Log
	reason := decodeLog(val, &entry)
	if cerr := closer.Close(); cerr != nil {
		return fmt.Errorf("raftstore: get log %d: release value: %w", index, cerr)
	}
	if reason != "" {
		return fmt.Errorf("raftstore: log %d: %w: %s", index, ErrCorrupt, reason)
	}
	if entry.Index != index {
		return fmt.Errorf("raftstore: log %d: %w: record holds index %d", index, ErrCorrupt, entry.Index)
	}
	*log = entry
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs durably stores logs in one batch committed with pebble.Sync:
// when it returns nil all entries survive a crash; on error none was
// written. The store keeps no reference to logs or their byte slices.
//
// The indexes must be non-zero and consecutive, and the first one must
// continue the stored log:
//
//   - empty log: any first index (raft starts at 1, at snapshotIndex+1
//     after DeleteRange removed everything, or wherever a follower's first
//     AppendEntries after a snapshot starts);
//   - LastIndex()+1: an append (leader dispatch; follower append, including
//     after DeleteRange removed a conflicting suffix);
//   - at or below LastIndex(): rejected, because it would overwrite stored
//     entries. hashicorp/raft never does this: a follower deletes a
//     conflicting suffix with DeleteRange first (raft.go appendEntries).
//   - beyond LastIndex()+1 (a gap): the stale entries are deleted in the same
//     atomic batch and a warning is logged, so the log stays contiguous.
//     Raft writes past a gap only when a snapshot covers the missing indexes
//     and its removeOldLogs step did not run: a crash between installing a
//     snapshot and removing the old logs, or a removeOldLogs error that raft
//     logs and ignores. The deleted entries all precede that snapshot and
//     removeOldLogs would have deleted them; rejecting the write instead
//     would leave the node unable to append, across restarts.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	total := 0
	for i, l := range logs {
		if l == nil {
			return fmt.Errorf("raftstore: store logs: entry %d of %d is nil", i, len(logs))
		}
		if i == 0 {
			if l.Index == 0 {
				return errors.New("raftstore: store logs: index 0 is not a valid raft index")
			}
		} else if prev := logs[i-1].Index; prev == math.MaxUint64 || l.Index != prev+1 {
			return fmt.Errorf("raftstore: store logs: index %d follows index %d; indexes must be consecutive", l.Index, prev)
		}
		total += encodedLen(l)
		if total > maxBatchBytes {
			return fmt.Errorf("raftstore: store logs %d..%d: batch exceeds %d bytes", logs[0].Index, logs[len(logs)-1].Index, maxBatchBytes)
		}
	}
	first, last := logs[0].Index, logs[len(logs)-1].Index

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur := s.bounds.Load()
	reset := false
	switch {
	case cur.empty(), first == cur.last+1:
	case first <= cur.last:
		return fmt.Errorf("raftstore: store logs %d..%d: does not follow the stored log %d..%d (delete a conflicting suffix with DeleteRange first)",
			first, last, cur.first, cur.last)
	default:
		reset = true
	}

	b := s.db.NewBatch()
	defer b.Close()
	if reset {
		if err := b.DeleteRange(s.logLower, s.logUpper, nil); err != nil {
			return fmt.Errorf("raftstore: store logs %d..%d: %w", first, last, err)
		}
	}
	for _, l := range logs {
		n := encodedLen(l)
		op := b.SetDeferred(logKeyLen, n)
		s.putLogKey(op.Key, l.Index)
		if got := len(appendLog(op.Value[:0], l)); got != n {
			// appendLog would have reallocated: a bug in encodedLen.
			return fmt.Errorf("raftstore: store logs: log %d encoded to %d bytes, want %d", l.Index, got, n)
		}
		if err := op.Finish(); err != nil {
			return fmt.Errorf("raftstore: store logs %d..%d: %w", first, last, err)
		}
	}
	// Pebble's Commit either applies the batch or fails before applying
	// anything; failures past that point (WAL write or sync) go to
	// Logger.Fatalf and never return. So on error the cached bounds remain
	// right.
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: store logs %d..%d: commit: %w", first, last, err)
	}
	next := logBounds{first: cur.first, last: last}
	if cur.empty() || reset {
		next.first = first
	}
	s.bounds.Store(&next)
	if reset {
		slog.Default().Warn("raftstore: gap before appended logs; deleted the stale entries so the log stays contiguous",
			"component", "raftstore", "prefix", s.prefix,
			"deleted_first", cur.first, "deleted_last", cur.last, "appended_first", first, "appended_last", last)
	}
	return nil
}

// DeleteRange durably deletes the entries min..max, both inclusive, with one
// range deletion committed with pebble.Sync. Indexes that are not stored are
// ignored, and min > max deletes nothing. The range must remove a prefix, a
// suffix or all of the stored log (everything raft does: compaction after a
// snapshot, removal of a conflicting suffix, removal of all logs after a
// snapshot restore); a range strictly inside the log would leave a gap and is
// rejected. Deleting everything writes a single tombstone, whatever the
// number of entries (the MonotonicLogStore contract), after which the cached
// FirstIndex and LastIndex are 0.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur := s.bounds.Load()
	if cur.empty() || max < cur.first || min > cur.last {
		return nil
	}
	var lo, hi []byte
	var next logBounds
	switch {
	case min <= cur.first && max >= cur.last:
		lo, hi = s.logLower, s.logUpper
	case min <= cur.first:
		lo, hi = s.logLower, s.logKey(max+1) // max < cur.last, no overflow
		next = logBounds{first: max + 1, last: cur.last}
	case max >= cur.last:
		lo, hi = s.logKey(min), s.logUpper
		next = logBounds{first: cur.first, last: min - 1} // min > cur.first >= 1
	default:
		return fmt.Errorf("raftstore: delete logs %d..%d: would leave a gap inside the stored %d..%d; only a prefix or a suffix can be deleted",
			min, max, cur.first, cur.last)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return fmt.Errorf("raftstore: delete logs %d..%d: %w", min, max, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: delete logs %d..%d: commit: %w", min, max, err)
	}
	s.bounds.Store(&next)
	return nil
}

// IsMonotonic reports true: the store keeps the log contiguous (see
// StoreLogs), so raft deletes all logs after restoring a snapshot instead of
// relying on a gap (raft.MonotonicLogStore).
func (s *Store) IsMonotonic() bool { return true }

// Set durably stores val under key (a commit with pebble.Sync). Set and
// SetUint64 share one key space. An empty or nil val is stored as an empty
// value, which Get returns as a non-nil empty slice.
func (s *Store) Set(key []byte, val []byte) error {
	if err := s.db.Set(s.stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: set stable key %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of the value stored under key, which stays valid after
// later writes. A key never set returns (nil, ErrNotFound), unwrapped, whose
// text is exactly "not found".
func (s *Store) Get(key []byte) ([]byte, error) {
	val, closer, err := s.db.Get(s.stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: get stable key %q: %w", key, err)
	}
	out := make([]byte, len(val))
	copy(out, val)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("raftstore: get stable key %q: release value: %w", key, err)
	}
	return out, nil
}

// SetUint64 durably stores val under key as 8 bytes big-endian.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], val)
	return s.Set(key, buf[:])
}

// GetUint64 returns the value SetUint64 stored under key. A key never set
// returns (0, ErrNotFound), unwrapped, as raft-boltdb does; raft treats that
// text as "absent". A value that is not 8 bytes long is an error.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("raftstore: get stable key %q: value is %d bytes, want 8 for a uint64", key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// Interface guards.
var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)
