package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/events/raftstore"
)

// DefaultPrefix is the conventional key prefix of the event store in the
// node's Pebble DB (the raft log store uses 0x01).
const DefaultPrefix byte = 0x02

// minExpirePerEntry is the least number of expired dedup records one log
// entry deletes (an entry with n commands deletes up to max(this, 2n), so
// expiry keeps pace with idempotent commands without ever stalling apply).
const minExpirePerEntry = 256

// Options configure an FSM. The zero value is valid.
type Options struct {
	// NoWAL declares that db runs without a write-ahead log
	// (raftstore.DBOptions.DisableWAL). Applied batches then cost no WAL
	// write or fsync; the FSM makes its state durable by flushing memtables
	// where durability matters: before a snapshot is persisted (so Raft only
	// truncates log entries the store holds on disk), at the steps of a
	// restore, and in Flush, which the owner calls before closing db. After a
	// crash the store is at an earlier applied index and Raft re-applies the
	// entries after it from its log.
	NoWAL bool
	// Logger receives the FSM's logs, with component=fsm. Default slog.Default().
	Logger *slog.Logger
	// SyncWrites makes every applied batch a synced Pebble commit. Leave it
	// false when the raft log lives in the same Pebble DB (same WAL): raft's
	// next synced log write makes the batch durable, and a batch lost in a
	// crash is re-applied from the raft log (apply is idempotent by applied
	// index). Set it when the raft log is elsewhere.
	SyncWrites bool
	// ReferenceSnapshots makes Persist write a reference to the durable
	// store instead of a copy of it; the raft snapshot store must then be
	// the FSM's SnapshotStore, which expands a reference into a full
	// snapshot when one is opened (refsnap.go).
	ReferenceSnapshots bool
	// Registerer, if set, receives the FSM's Prometheus metrics. Collectors
	// already registered (a second FSM on the same registry) are reused.
	Registerer prometheus.Registerer
}

// FSM is the event store state machine: a raft.BatchingFSM over one key prefix
// of a Pebble DB (key layout in keys.go, value formats in codec.go).
//
// Rules, applied in this order to each command:
//
//   - Validation (ValidateCommand with the FSM's limits): CodeInvalid or
//     CodeTooLarge.
//   - Idempotency: a command with a non-zero ID whose ID was remembered within
//     Limits.AppendIDRetention (by entry time: a record is live while
//     recordTime >= entryTime-retention) returns the remembered Result with
//     Duplicate=true and writes nothing. IDs are global: the same ID on the
//     other command kind or another stream is CodeInvalid. Only OK results are
//     remembered, so a retry after a conflict, fencing or a validation error
//     is evaluated afresh.
//   - Claim: increments the stream's epoch (creating the stream at version 0);
//     Result.Epoch is the new epoch, Result.Version the stream's version.
//   - Append epochs: 0 is allowed only while the stream was never claimed;
//     older than the current epoch is CodeFenced (Result.Epoch = current);
//     newer is CodeInvalid ("epoch N was never issued").
//   - Append expected version: Exact(v) needs version == v (0 for a stream
//     that does not exist or has no events), NoStream needs no stream at all
//     (not even claimed), Any passes; otherwise CodeConflict with
//     Result.Version = current version.
//   - Append writes the events at versions current+1.. and global positions
//     lastPosition+1.. (dense across streams), Time = Entry.Time, Epoch = the
//     append's epoch.
//
// Expired dedup records are deleted by entry time as entries are applied, at
// most max(256, 2×commands) per entry, oldest first, so apply never stalls;
// lookups ignore expired records not yet deleted, so results never depend on
// the sweep.
//
// Concurrency: ApplyBatch, Apply, Snapshot and Restore are serialized (raft
// calls them from one goroutine; a mutex enforces it for other callers). Reads,
// waits and FSMSnapshot.Persist are safe concurrently with all of them; each
// read answers from one consistent Pebble view.
//
// Failure: a Pebble error or corrupt stored data while applying cannot be
// turned into a deterministic result, so ApplyBatch panics (after logging);
// the node restarts and re-applies from the raft log. A log entry that does
// not decode yields an error response and writes nothing.
type FSM struct {
	db        *pebble.DB
	keys      keyspace
	limits    Limits
	log       *slog.Logger
	writeOpts *pebble.WriteOptions
	metrics   *metrics

	// mu serializes ApplyBatch, Snapshot and Restore, and guards the fields
	// below it. Lock order: mu before notifyMu.
	mu sync.Mutex
	// expiryHint is a lower bound of the entry time of the oldest dedup
	// record (math.MinInt64 = unknown). It only lets apply skip a sweep that
	// would find nothing; results never depend on it.
	expiryHint int64
	kbuf, vbuf []byte                 // scratch for keys and values (Pebble copies on Set)
	sorted     raftstore.SortedWrites // the writes of the batch being applied, committed in key order
	noWAL      bool                   // see Options.NoWAL
	references bool                   // see Options.ReferenceSnapshots
	ids        *idFilter              // see cache.go
	metas      *metaCache             // see cache.go
	tail       *tail                  // see tail.go

	applied atomic.Uint64 // last applied raft index (0 while a restore is needed)
	lastPos atomic.Uint64 // last global position written
	// restoreSeq is odd while a restore is in progress or needed (the store
	// is incomplete) and changes whenever a restore starts or completes.
	// Reads load it before taking their Pebble view and compare after (see
	// read.go), so no read serves a view that a restore touched.
	restoreSeq atomic.Uint64

	notifyMu sync.Mutex
	notifyCh chan struct{} // closed and replaced after each applied batch
}

// New opens the event store kept under prefix in db. db stays owned by the
// caller (close it after the FSM is no longer used). limits must be valid and
// the same on every node of a cluster.
//
// If the DB holds a restore-in-progress marker (a Restore was interrupted or
// failed), New succeeds but NeedsRestore reports true and reads return
// ErrUnavailable until a Restore completes.
func New(db *pebble.DB, prefix byte, limits Limits, opts Options) (*FSM, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: fsm: nil pebble DB", ErrInvalid)
	}
	if prefix == 0xff {
		return nil, fmt.Errorf("%w: fsm: prefix 0xff is reserved (the keyspace needs an upper bound)", ErrInvalid)
	}
	if err := limits.Validate(); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("fsm: metrics: %w", err)
	}
	f := &FSM{
		db:         db,
		keys:       keyspace{p: prefix},
		limits:     limits,
		log:        logger.With("component", "fsm"),
		writeOpts:  pebble.NoSync,
		metrics:    m,
		expiryHint: math.MinInt64,
		notifyCh:   make(chan struct{}),
		ids:        newIDFilter(limits.AppendIDRetention),
		metas:      newMetaCache(1 << 16),
		tail:       newTail(tailEvents, tailBytes),
	}
	if opts.SyncWrites {
		f.writeOpts = pebble.Sync
	}
	f.noWAL = opts.NoWAL
	f.references = opts.ReferenceSnapshots

	found, err := f.dbHas(f.keys.marker())
	if err != nil {
		return nil, fmt.Errorf("fsm: read restore marker: %w", err)
	}
	if found {
		f.restoreSeq.Store(1)
		f.log.Warn("an interrupted or failed snapshot restore left the event store incomplete; it needs a restore before it serves reads")
		return f, nil
	}
	st, err := f.readApplied(db)
	if err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	f.applied.Store(st.Index)
	f.lastPos.Store(st.Position)
	f.log.Debug("opened", "applied_index", st.Index, "last_position", st.Position)
	return f, nil
}

// Flush makes every applied batch durable. With Options.NoWAL the owner must
// call it before closing the database; otherwise it is a no-op.
func (f *FSM) Flush() error {
	if !f.noWAL {
		return nil
	}
	if err := f.db.Flush(); err != nil {
		return fmt.Errorf("fsm: flush: %w", err)
	}
	return nil
}

// durable makes every applied batch durable, with or without a WAL.
func (f *FSM) durable() error {
	if f.noWAL {
		return f.Flush()
	}
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("fsm: sync: %w", err)
	}
	return nil
}

// commitDurable commits b so that it survives a crash: a synced commit, and
// with Options.NoWAL a flush of the memtables as well.
func (f *FSM) commitDurable(b *pebble.Batch) error {
	if f.noWAL {
		// Pebble refuses synced commits without a WAL.
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		return f.db.Flush()
	}
	return b.Commit(pebble.Sync)
}

type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func (f *FSM) dbHas(key []byte) (bool, error) {
	_, closer, err := f.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// readApplied reads the applied state; absent means a fresh store.
func (f *FSM) readApplied(r reader) (appliedState, error) {
	v, closer, err := r.Get(f.keys.applied())
	if errors.Is(err, pebble.ErrNotFound) {
		return appliedState{}, nil
	}
	if err != nil {
		return appliedState{}, fmt.Errorf("read applied state: %w", err)
	}
	defer closer.Close()
	st, err := decodeAppliedState(v)
	if err != nil {
		return appliedState{}, fmt.Errorf("stored applied state is corrupt: %w", err)
	}
	return st, nil
}

// NeedsRestore reports whether the store is incomplete (an interrupted or
// failed Restore) and must be restored from a snapshot before it serves.
func (f *FSM) NeedsRestore() bool { return f.restoreSeq.Load()&1 == 1 }

// AppliedIndex is the index of the last raft log entry applied (0 while the
// store needs a restore). Raft does not pass barriers and no-ops to the FSM,
// so it may lag raft's own applied index by such entries.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// LastPosition is the global position of the last event written (0: none, or
// while the store needs a restore).
func (f *FSM) LastPosition() uint64 { return f.lastPos.Load() }

// Apply applies one log entry; see ApplyBatch.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed raft log entries in order, in one Pebble batch
// committed once (synced only with Options.SyncWrites). It implements
// raft.BatchingFSM; the result has one response per log:
//
//   - a LogCommand entry: []Result, one per command of the Entry, in order;
//     commands see the effects of earlier commands of the same batch; a
//     failed command writes nothing and does not affect the others. If the
//     entry does not decode: an error wrapping ErrInvalid; only the applied
//     index advances.
//   - other log types: nil (they only advance the applied index).
//   - an entry whose index is not above the stored applied index (re-applied
//     after a restart): nil, nothing written.
//   - while the store needs a restore: an error wrapping ErrUnavailable for
//     every log; nothing is written and the applied index does not move.
//
// The applied index and last position are written in the same batch. After
// the commit, AppliedIndex and LastPosition advance and waiters wake.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	resp := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()

	if f.NeedsRestore() {
		err := fmt.Errorf("%w: fsm: the event store needs a restore from a snapshot", ErrUnavailable)
		for i := range resp {
			resp[i] = err
		}
		f.log.Error("apply refused: the event store needs a restore from a snapshot", "logs", len(logs))
		return resp
	}

	tx := applyTx{
		f:     f,
		b:     f.db.NewIndexedBatch(),
		state: appliedState{Index: f.applied.Load(), Position: f.lastPos.Load()},
	}
	defer tx.b.Close()
	f.sorted.Reset()
	if err := f.ids.step(f.db, f.keys, filterScanChunk); err != nil {
		f.fatal("build append-id filter", err)
	}
	start := tx.state.Index
	for i, l := range logs {
		if l == nil || l.Index <= tx.state.Index {
			continue
		}
		if l.Type == raft.LogCommand {
			resp[i] = tx.applyLog(l)
		}
		tx.state.Index = l.Index
	}
	if tx.state.Index == start {
		return resp
	}
	f.vbuf = encodeAppliedState(f.vbuf[:0], tx.state)
	tx.set(f.keys.applied(), f.vbuf)
	// The indexed batch served the reads of this apply; what is committed
	// is the same writes in key order (raftstore.SortedWrites: far cheaper
	// memtable inserts).
	out := f.db.NewBatch()
	defer out.Close()
	if _, err := f.sorted.WriteTo(out); err != nil {
		f.fatal("sort applied batch", err)
	}
	if err := out.Commit(f.writeOpts); err != nil {
		f.fatal("commit applied batch", err)
	}
	for stream, m := range tx.pending {
		f.metas.put(stream, m)
	}
	f.tail.push(tx.recorded)

	f.lastPos.Store(tx.state.Position)
	f.applied.Store(tx.state.Index)
	f.metrics.observe(len(logs), &tx.stats)
	f.wake()
	return resp
}

// fatal logs and panics: apply cannot continue deterministically.
func (f *FSM) fatal(what string, err error) {
	f.log.Error("fatal apply error: the state machine cannot continue; restart re-applies from the raft log", "op", what, "err", err)
	panic(fmt.Errorf("fsm: %s: %w", what, err))
}

type applyStats struct {
	codes      [CodeInvalid + 1]int
	events     int
	bytes      int
	dedupHits  int
	expiredIDs int
	sweepSteps int // internal iterator steps and seeks of the expiry sweeps
}

// applyTx is the state of one ApplyBatch call.
type applyTx struct {
	f *FSM
	b *pebble.Batch // indexed: reads see earlier writes of the batch
	// pending holds stream metadata written by this batch, ahead of the
	// committed metaCache.
	pending map[string]cachedMeta
	state   appliedState
	time    int64 // entry time of the entry being applied
	cutoff  int64 // dedup records with time < cutoff are expired
	stats   applyStats
	// recorded are the events written by this batch, for the tail.
	recorded []RecordedEvent
}

// record keeps a copy of an event written at pos for the tail. Data and
// Meta share one allocation per event, so that the tail's memory is what
// it holds (a larger arena shared by a batch would stay alive as long as
// any of its events does).
func (tx *applyTx) record(pos uint64, stream string, version, epoch uint64, ev Event) {
	var data, meta []byte // nil when empty, as decodeRecordedEvent reads an empty field
	if n := len(ev.Data) + len(ev.Meta); n > 0 {
		buf := make([]byte, n)
		copy(buf, ev.Data)
		copy(buf[len(ev.Data):], ev.Meta)
		if len(ev.Data) > 0 {
			data = buf[:len(ev.Data):len(ev.Data)]
		}
		if len(ev.Meta) > 0 {
			meta = buf[len(ev.Data):]
		}
	}
	tx.recorded = append(tx.recorded, RecordedEvent{Position: pos, Stream: stream, Version: version, Epoch: epoch,
		Time: tx.time, Type: ev.Type, Data: data, Meta: meta})
}

func (tx *applyTx) applyLog(l *raft.Log) interface{} {
	e, err := DecodeEntry(l.Data)
	if err != nil {
		tx.f.log.Error("raft log entry does not decode; skipped", "index", l.Index, "err", err)
		return fmt.Errorf("fsm: raft log %d: %w", l.Index, err)
	}
	tx.time = e.Time
	tx.cutoff = e.Time - tx.f.limits.AppendIDRetention
	if e.Time < math.MinInt64+tx.f.limits.AppendIDRetention {
		tx.cutoff = math.MinInt64
	}
	tx.expire(max(minExpirePerEntry, 2*len(e.Commands)))

	results := make([]Result, len(e.Commands))
	for i, c := range e.Commands {
		var r Result
		switch {
		case c.Claim != nil && c.Append == nil:
			r = tx.claim(c.Claim)
		case c.Append != nil && c.Claim == nil:
			r = tx.append(c.Append)
		default:
			r = resultOf(ValidateCommand(c, tx.f.limits))
		}
		if int(r.Code) < len(tx.stats.codes) {
			tx.stats.codes[r.Code]++
		}
		results[i] = r
	}
	return results
}

func (tx *applyTx) claim(c *Claim) Result {
	if err := ValidateCommand(Command{Claim: c}, tx.f.limits); err != nil {
		return resultOf(err)
	}
	prev, hasPrev := tx.dedup(c.ID)
	if hasPrev && prev.Time >= tx.cutoff {
		return tx.duplicate(c.ID, prev, tagClaim, c.Stream)
	}
	m, _ := tx.streamMeta(c.Stream)
	m.Epoch++
	tx.setStreamMeta(c.Stream, m)
	r := Result{Code: OK, Epoch: m.Epoch, Version: m.Version}
	tx.remember(c.ID, tagClaim, c.Stream, r, prev, hasPrev)
	return r
}

func (tx *applyTx) append(a *Append) Result {
	if err := ValidateCommand(Command{Append: a}, tx.f.limits); err != nil {
		return resultOf(err)
	}
	prev, hasPrev := tx.dedup(a.ID)
	if hasPrev && prev.Time >= tx.cutoff {
		return tx.duplicate(a.ID, prev, tagAppend, a.Stream)
	}
	m, exists := tx.streamMeta(a.Stream)

	// Activation epochs.
	switch {
	case a.Epoch == 0 && m.Epoch != 0:
		return Result{Code: CodeFenced, Epoch: m.Epoch, Version: m.Version,
			Message: fmt.Sprintf("stream %q: an unfenced append (epoch 0) is not allowed once the stream is claimed (current epoch %d)", a.Stream, m.Epoch)}
	case a.Epoch < m.Epoch:
		return Result{Code: CodeFenced, Epoch: m.Epoch, Version: m.Version,
			Message: fmt.Sprintf("stream %q: epoch %d is fenced by epoch %d", a.Stream, a.Epoch, m.Epoch)}
	case a.Epoch > m.Epoch:
		return Result{Code: CodeInvalid, Epoch: m.Epoch, Version: m.Version,
			Message: fmt.Sprintf("stream %q: epoch %d was never issued (current epoch %d)", a.Stream, a.Epoch, m.Epoch)}
	}

	// Optimistic concurrency.
	switch a.Expected.Kind {
	case ExpectExact:
		if m.Version != a.Expected.Version {
			return Result{Code: CodeConflict, Epoch: m.Epoch, Version: m.Version,
				Message: fmt.Sprintf("stream %q: expected version %d, current version %d", a.Stream, a.Expected.Version, m.Version)}
		}
	case ExpectNoStream:
		if exists {
			return Result{Code: CodeConflict, Epoch: m.Epoch, Version: m.Version,
				Message: fmt.Sprintf("stream %q: expected no stream, but it exists at version %d (epoch %d)", a.Stream, m.Version, m.Epoch)}
		}
	}

	f := tx.f
	first := tx.state.Position + 1
	f.kbuf = f.keys.version(f.kbuf[:0], a.Stream, m.Version+1)
	f.vbuf = appendVersionEntry(f.vbuf[:0], first, uint64(len(a.Events)))
	tx.set(f.kbuf, f.vbuf)
	for i, ev := range a.Events {
		v := m.Version + 1 + uint64(i)
		pos := first + uint64(i)
		f.kbuf = f.keys.event(f.kbuf[:0], pos)
		f.vbuf = appendRecordedValue(f.vbuf[:0], a.Stream, v, a.Epoch, tx.time, ev)
		tx.set(f.kbuf, f.vbuf)
		tx.record(pos, a.Stream, v, a.Epoch, ev)
		tx.stats.bytes += ev.Size()
	}
	n := uint64(len(a.Events))
	tx.stats.events += len(a.Events)
	m.Version += n
	tx.state.Position += n
	tx.setStreamMeta(a.Stream, m)
	r := Result{Code: OK, Epoch: m.Epoch, Version: m.Version, FirstPosition: first, LastPosition: first + n - 1}
	tx.remember(a.ID, tagAppend, a.Stream, r, prev, hasPrev)
	return r
}

// duplicate answers a command whose id has a live dedup record.
func (tx *applyTx) duplicate(id AppendID, rec dedupRecord, kind byte, stream string) Result {
	if rec.Kind != kind || rec.Stream != stream {
		return Result{Code: CodeInvalid, Message: fmt.Sprintf("id %x was already used by %s on stream %q", id[:], kindName(rec.Kind), rec.Stream)}
	}
	tx.stats.dedupHits++
	r := rec.Result
	r.Duplicate = true
	return r
}

func kindName(k byte) string {
	if k == tagClaim {
		return "a claim"
	}
	return "an append"
}

// remember stores the dedup record of a successful command with a non-zero
// id. Only OK results are remembered: a retry after a conflict, fencing or a
// validation error is evaluated again. prev is an expired record of the same
// id (if hasPrev); its expiry index entry is removed.
func (tx *applyTx) remember(id AppendID, kind byte, stream string, r Result, prev dedupRecord, hasPrev bool) {
	if id.IsZero() {
		return
	}
	f := tx.f
	if hasPrev {
		f.kbuf = f.keys.expiry(f.kbuf[:0], prev.Time, id)
		tx.delete(f.kbuf)
	}
	f.kbuf = f.keys.dedup(f.kbuf[:0], id)
	f.vbuf = encodeDedupRecord(f.vbuf[:0], dedupRecord{Time: tx.time, Kind: kind, Stream: stream, Result: r})
	tx.set(f.kbuf, f.vbuf)
	f.kbuf = f.keys.expiry(f.kbuf[:0], tx.time, id)
	tx.set(f.kbuf, nil)
	f.ids.add(id, tx.time)
	f.expiryHint = min(f.expiryHint, tx.time)
}

// expire deletes up to limit dedup records whose entry time is before the
// cutoff, oldest first, and refreshes the expiry hint. Records not yet swept
// are treated as absent by lookups, so results never depend on the sweep.
func (tx *applyTx) expire(limit int) {
	f := tx.f
	if tx.cutoff <= f.expiryHint {
		return
	}
	ns := f.keys.ns(nil, nsExpiry)
	lower := ns
	if f.expiryHint != math.MinInt64 {
		// Every record older than the hint is deleted: start at the hint.
		// From the namespace's first key the sweep stepped over the
		// tombstone of every record expired since the last compaction, on
		// every entry, and apply slowed down without bound once a node had
		// taken appends for longer than the retention
		// (BenchmarkApplyBatchSteady).
		lower = binary.BigEndian.AppendUint64(f.keys.ns(nil, nsExpiry), orderedTime(f.expiryHint))
	}
	it, err := tx.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: successor(ns)})
	if err != nil {
		f.fatal("open expiry iterator", err)
	}
	var expired [][]byte
	hint := int64(math.MaxInt64)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 2+8+len(AppendID{}) {
			_ = it.Close()
			f.fatal("sweep expired append ids", fmt.Errorf("corrupt expiry key %x", k))
		}
		t := unorderedTime(binary.BigEndian.Uint64(k[2:10]))
		if t >= tx.cutoff || len(expired) == limit {
			hint = t
			break
		}
		expired = append(expired, append([]byte(nil), k...))
	}
	st := it.Stats()
	tx.stats.sweepSteps += st.ForwardStepCount[pebble.InternalIterCall] + st.ForwardSeekCount[pebble.InternalIterCall]
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		f.fatal("sweep expired append ids", err)
	}
	for _, k := range expired {
		tx.delete(k)
		var id AppendID
		copy(id[:], k[10:])
		f.kbuf = f.keys.dedup(f.kbuf[:0], id)
		tx.delete(f.kbuf)
	}
	tx.stats.expiredIDs += len(expired)
	f.expiryHint = hint
}

func (tx *applyTx) dedup(id AppendID) (dedupRecord, bool) {
	if id.IsZero() {
		return dedupRecord{}, false
	}
	f := tx.f
	if !f.ids.mayContain(id, tx.cutoff) {
		return dedupRecord{}, false
	}
	f.kbuf = f.keys.dedup(f.kbuf[:0], id)
	v, closer, err := tx.b.Get(f.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return dedupRecord{}, false
	}
	if err != nil {
		f.fatal("read dedup record", err)
	}
	rec, err := decodeDedupRecord(v)
	_ = closer.Close()
	if err != nil {
		f.fatal("read dedup record", err)
	}
	return rec, true
}

func (tx *applyTx) streamMeta(stream string) (streamMeta, bool) {
	if c, ok := tx.pending[stream]; ok {
		return c.meta, c.exists
	}
	f := tx.f
	if c, ok := f.metas.get(stream); ok {
		return c.meta, c.exists
	}
	f.kbuf = f.keys.stream(f.kbuf[:0], stream)
	v, closer, err := tx.b.Get(f.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		f.metas.put(stream, cachedMeta{})
		return streamMeta{}, false
	}
	if err != nil {
		f.fatal("read stream meta", err)
	}
	m, err := decodeStreamMeta(v)
	_ = closer.Close()
	if err != nil {
		f.fatal("read stream meta", fmt.Errorf("stream %q: %w", stream, err))
	}
	f.metas.put(stream, cachedMeta{meta: m, exists: true})
	return m, true
}

func (tx *applyTx) setStreamMeta(stream string, m streamMeta) {
	f := tx.f
	f.kbuf = f.keys.stream(f.kbuf[:0], stream)
	f.vbuf = encodeStreamMeta(f.vbuf[:0], m)
	tx.set(f.kbuf, f.vbuf)
	if tx.pending == nil {
		tx.pending = map[string]cachedMeta{}
	}
	tx.pending[stream] = cachedMeta{meta: m, exists: true}
}

func (tx *applyTx) set(k, v []byte) {
	if err := tx.b.Set(k, v, nil); err != nil {
		tx.f.fatal("write batch", err)
	}
	tx.f.sorted.Set(k, v)
}

func (tx *applyTx) delete(k []byte) {
	if err := tx.b.Delete(k, nil); err != nil {
		tx.f.fatal("write batch", err)
	}
	tx.f.sorted.Delete(k)
}

// Interface guards.
var (
	_ raft.BatchingFSM = (*FSM)(nil)
	_ raft.FSMSnapshot = (*Snapshot)(nil)
)
