// Package projections folds the committed event log into read models kept in
// a node-local Pebble database (data_dir/views). Every node runs the same
// projections over its own copy of the log, so every node answers queries
// locally.
//
// Contracts:
//
//   - A Projection is a deterministic fold: Apply(w, evs) writes, through w
//     only, what the events change. Given the same events in the same order
//     it writes the same rows. It must not fail on an event it cannot
//     decode: it calls w.Skip (counted and logged) and goes on. An error
//     from Apply means storage failed; the batch is discarded and retried.
//   - The engine applies events in global-position order, each batch with
//     its checkpoint (the last position folded) in the same Pebble batch:
//     after a crash a projection resumes from its checkpoint and never folds
//     an event twice or skips one.
//   - Rows live under a generation. Rebuild folds the log from position 1
//     into a new generation while the current one keeps serving; once the new
//     one has caught up with the log, reads switch to it atomically and the
//     old rows are deleted. A projection whose Version changed is rebuilt at
//     start (its old rows are not served: their layout may differ).
//   - Reads (View) see one consistent snapshot of the active generation.
//     Consistent waits until a projection has folded everything the log had
//     committed, cluster-wide, when it was called.
package projections

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/raftstore"
)

// Projection is one read model.
type Projection interface {
	// Name identifies the projection in keys, metrics and the API:
	// 1..32 of [a-z0-9_].
	Name() string
	// Version is the layout version of the rows; changing it rebuilds the
	// projection at the next start.
	Version() uint32
	// Apply folds evs (consecutive, in position order) into w.
	Apply(w *Writer, evs []events.RecordedEvent) error
}

// Source is the committed log a node folds; NodeSource adapts *events.Node.
type Source interface {
	// Next blocks until an event at or after position from is committed and
	// applied locally, then returns up to max of them in order.
	Next(ctx context.Context, from uint64, max int) ([]events.RecordedEvent, error)
	// LastPosition is the newest position applied locally.
	LastPosition() uint64
	// Sync waits until everything committed cluster-wide before the call is
	// applied locally.
	Sync(ctx context.Context) error
}

// NodeSource returns the Source of an event log node.
func NodeSource(n *events.Node) Source { return nodeSource{n} }

type nodeSource struct{ n *events.Node }

func (s nodeSource) Next(ctx context.Context, from uint64, max int) ([]events.RecordedEvent, error) {
	// A subscription is only a position and a cursor: one per call is cheap
	// and keeps the engine free to jump (rebuilds start at 1).
	sub := s.n.Subscribe(from)
	evs, err := sub.Next(ctx)
	if len(evs) > max {
		evs = evs[:max]
	}
	return evs, err
}
func (s nodeSource) LastPosition() uint64           { return s.n.LastPosition() }
func (s nodeSource) Sync(ctx context.Context) error { return s.n.Sync(ctx) }

// Config configures an Engine.
type Config struct {
	// Dir is the directory of the views database (created if missing).
	Dir string
	// DB, when set, is used instead of opening Dir (tests: an in-memory
	// Pebble); the engine does not close it.
	DB *pebble.DB
	// BatchEvents bounds the events folded per Pebble batch (default 1024).
	BatchEvents int
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

var nameRE = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// ErrUnknown is returned for a projection name the engine does not run.
var ErrUnknown = errors.New("projections: unknown projection")

// Engine runs projections over a Source.
type Engine struct {
	cfg     Config
	src     Source
	db      *pebble.DB
	ownDB   bool
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	projs map[string]*proj
	names []string
}

// proj is the engine's state of one projection.
type proj struct {
	p       Projection
	active  *runner // serves reads
	rebuild *runner // non-nil while a rebuild runs
	changed chan struct{}
}

// Open opens the views database and prepares the projections (it folds
// nothing until Start).
func Open(cfg Config, src Source, ps ...Projection) (*Engine, error) {
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var problems []error
	if cfg.DB == nil && cfg.Dir == "" {
		problems = append(problems, errors.New("no views directory (Config.Dir) and no Config.DB"))
	}
	if src == nil {
		problems = append(problems, errors.New("source is nil"))
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if !nameRE.MatchString(p.Name()) {
			problems = append(problems, fmt.Errorf("projection name %q is not 1..32 of [a-z0-9_]", p.Name()))
		}
		if seen[p.Name()] {
			problems = append(problems, fmt.Errorf("projection %q registered twice", p.Name()))
		}
		seen[p.Name()] = true
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("projections: invalid configuration: %w", err)
	}
	e := &Engine{cfg: cfg, src: src, db: cfg.DB, log: cfg.Logger.With("component", "projections"), projs: map[string]*proj{}}
	if e.db == nil {
		db, err := raftstore.OpenDB(cfg.Dir, raftstore.DBOptions{Logger: cfg.Logger.With("db", "views"), CacheSize: 64 << 20,
			// Views are rebuilt from the log: a crash that loses the
			// unflushed tail only moves checkpoints back with their rows.
			DisableWAL: true})
		if err != nil {
			return nil, fmt.Errorf("projections: open views database: %w", err)
		}
		e.db, e.ownDB = db, true
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for _, p := range ps {
		st, err := e.loadState(p)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.projs[p.Name()] = st
		e.names = append(e.names, p.Name())
	}
	sort.Strings(e.names)
	e.metrics = newMetrics(cfg.Registerer, e)
	return e, nil
}

// loadState reads a projection's active generation and checkpoint; a
// projection seen for the first time or with a new Version starts a new
// generation from position 1.
func (e *Engine) loadState(p Projection) (*proj, error) {
	name := p.Name()
	gen, version, found, err := e.readMeta(name)
	if err != nil {
		return nil, err
	}
	st := &proj{p: p, changed: make(chan struct{})}
	if found && version == p.Version() {
		pos, err := e.readCheckpoint(name, gen)
		if err != nil {
			return nil, err
		}
		st.active = e.newRunner(st, gen, pos)
		return st, nil
	}
	newGen := gen + 1
	b := e.db.NewBatch()
	defer b.Close()
	if found {
		e.log.Info("projection layout changed: rebuilding from the log", "projection", name, "old_version", version, "version", p.Version())
		deleteGeneration(b, name, gen)
	}
	writeMeta(b, name, newGen, p.Version())
	if err := e.commitFlushed(b); err != nil {
		return nil, fmt.Errorf("projections: %s: start generation: %w", name, err)
	}
	st.active = e.newRunner(st, newGen, 0)
	return st, nil
}

// Start begins folding in the background.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, name := range e.names {
		e.startRunner(e.projs[name].active)
	}
}

// Close stops every projection and closes the database it opened.
func (e *Engine) Close() error {
	e.cancel()
	e.wg.Wait()
	if e.metrics != nil {
		e.metrics.unregister()
	}
	if e.ownDB {
		// Without a WAL, only flushed memtables survive a close.
		if err := e.db.Flush(); err != nil {
			e.log.Warn("cannot flush the views database before closing", "err", err)
		}
		if err := e.db.Close(); err != nil {
			return fmt.Errorf("projections: close views database: %w", err)
		}
	}
	return nil
}

// Names lists the projections in name order.
func (e *Engine) Names() []string { return append([]string(nil), e.names...) }

// Status is what the engine reports of one projection.
type Status struct {
	Name       string
	Version    uint32
	Generation uint64
	Position   uint64 // last position folded into the active generation
	Lag        uint64 // events applied locally but not yet folded
	Rebuilding bool
	// RebuildPosition is the rebuild's progress while Rebuilding.
	RebuildPosition uint64
	Skipped         uint64 // events Apply could not use (see Writer.Skip)
	LastError       string // the last storage error, until a batch succeeds
}

// Status returns the status of every projection, in name order.
func (e *Engine) Status() []Status {
	last := e.src.LastPosition()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Status, 0, len(e.names))
	for _, name := range e.names {
		st := e.projs[name]
		s := Status{Name: name, Version: st.p.Version(), Generation: st.active.gen, Position: st.active.position(),
			Skipped: st.active.skipped.Load(), LastError: st.active.lastError()}
		if s.Position < last {
			s.Lag = last - s.Position
		}
		if st.rebuild != nil {
			s.Rebuilding, s.RebuildPosition = true, st.rebuild.position()
		}
		out = append(out, s)
	}
	return out
}

// Rebuild folds the projection again from position 1 into a new generation
// while the current one keeps serving, and switches reads to it once it has
// caught up. It returns at once; Status shows the progress and Wait
// returns when the switch is done. Rebuilding a projection that is already
// being rebuilt restarts nothing and returns nil.
func (e *Engine) Rebuild(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.projs[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknown, name)
	}
	if st.rebuild != nil {
		return nil
	}
	if e.ctx.Err() != nil {
		return fmt.Errorf("projections: engine closed")
	}
	gen := st.active.gen + 1
	if err := e.db.Set(checkpointKey(name, gen), encodeU64(0), pebble.NoSync); err != nil {
		return fmt.Errorf("projections: %s: start rebuild: %w", name, err)
	}
	st.rebuild = e.newRunner(st, gen, 0)
	e.metrics.rebuilds.WithLabelValues(name).Inc()
	e.log.Info("projection rebuild started", "projection", name, "generation", gen)
	e.startRunner(st.rebuild)
	return nil
}

// WaitRebuilt blocks until no rebuild of name is running.
func (e *Engine) WaitRebuilt(ctx context.Context, name string) error {
	for {
		e.mu.Lock()
		st, ok := e.projs[name]
		if !ok {
			e.mu.Unlock()
			return fmt.Errorf("%w %q", ErrUnknown, name)
		}
		busy, ch := st.rebuild != nil, st.changed
		e.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Consistent waits until projection name has folded every event committed
// anywhere in the cluster before the call (a linearizable read point).
func (e *Engine) Consistent(ctx context.Context, name string) error {
	if err := e.src.Sync(ctx); err != nil {
		return fmt.Errorf("projections: consistent read: %w", err)
	}
	return e.WaitPosition(ctx, name, e.src.LastPosition())
}

// WaitPosition waits until projection name's active generation has folded
// position pos.
func (e *Engine) WaitPosition(ctx context.Context, name string, pos uint64) error {
	for {
		e.mu.Lock()
		st, ok := e.projs[name]
		if !ok {
			e.mu.Unlock()
			return fmt.Errorf("%w %q", ErrUnknown, name)
		}
		r, ch := st.active, st.changed
		e.mu.Unlock()
		if r.position() >= pos {
			return nil
		}
		select {
		case <-r.progress():
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: %s at %d, waiting for %d: %w", name, r.position(), pos, ctx.Err())
		}
	}
}

// View runs fn with a reader over one consistent snapshot of projection
// name's active generation.
func (e *Engine) View(name string, fn func(r *Reader) error) error {
	e.mu.Lock()
	st, ok := e.projs[name]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknown, name)
	}
	gen := st.active.gen
	snap := e.db.NewSnapshot()
	e.mu.Unlock()
	defer snap.Close()
	return fn(&Reader{r: snap, prefix: rowPrefix(name, gen), name: name})
}

// switchTo makes the rebuild runner the active one (called by the rebuild
// runner once it has caught up). The old runner is stopped before the
// switch so that it writes nothing after its rows are deleted.
func (e *Engine) switchTo(st *proj, r *runner) error {
	e.mu.Lock()
	old := st.active
	e.mu.Unlock()
	old.stopAndWait()

	b := e.db.NewBatch()
	defer b.Close()
	writeMeta(b, st.p.Name(), r.gen, st.p.Version())
	if err := e.commitFlushed(b); err != nil {
		// The old runner is stopped: restart it and give up this rebuild.
		e.mu.Lock()
		st.active = e.newRunner(st, old.gen, old.position())
		st.rebuild = nil
		e.startRunner(st.active)
		e.notifyChanged(st)
		e.mu.Unlock()
		return fmt.Errorf("projections: %s: switch to generation %d: %w", st.p.Name(), r.gen, err)
	}
	e.mu.Lock()
	st.active, st.rebuild = r, nil
	e.notifyChanged(st)
	e.mu.Unlock()
	del := e.db.NewBatch()
	defer del.Close()
	deleteGeneration(del, st.p.Name(), old.gen)
	if err := del.Commit(pebble.NoSync); err != nil {
		e.log.Warn("cannot delete the rows of the old generation (they are unused)", "projection", st.p.Name(), "generation", old.gen, "err", err)
	}
	e.log.Info("projection rebuilt", "projection", st.p.Name(), "generation", r.gen, "position", r.position())
	return nil
}

// commitFlushed commits a change of generation and flushes it: the database
// has no WAL, and Pebble writes memtables in order, so after the flush
// neither this change nor any row before it can be lost.
func (e *Engine) commitFlushed(b *pebble.Batch) error {
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return e.db.Flush()
}

// notifyChanged wakes waiters on st (e.mu held).
func (e *Engine) notifyChanged(st *proj) {
	close(st.changed)
	st.changed = make(chan struct{})
}

// ---- runner ----

// runner folds the log into one generation of one projection.
type runner struct {
	e    *Engine
	st   *proj
	gen  uint64
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}
	pos  uint64
	mu   sync.Mutex
	wake chan struct{} // closed and replaced on every advance
	err  string

	started atomic.Bool
	skipped atomic.Uint64
	sorted  raftstore.SortedWrites // the writes of the batch being applied (apply's goroutine only)
	written map[string]written     // the same, by key, for Writer.Get (apply's goroutine only)
	// reads caches committed values Writer.Get read from the database
	// (found or not), across batches: a busy session's frames read the
	// same few rows batch after batch. A commit updates the entries of
	// the keys it wrote; a failed batch clears it (apply's goroutine only).
	reads map[string]written
}

// maxCachedReads bounds runner.reads; a full cache is cleared.
const maxCachedReads = 16384

func (e *Engine) newRunner(st *proj, gen, pos uint64) *runner {
	ctx, cancel := context.WithCancel(e.ctx)
	return &runner{e: e, st: st, gen: gen, pos: pos, ctx: ctx, stop: cancel, done: make(chan struct{}), wake: make(chan struct{})}
}

// startRunner starts r's goroutine (e.mu held).
func (e *Engine) startRunner(r *runner) {
	if !r.started.CompareAndSwap(false, true) {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(r.done)
		r.run()
	}()
}

func (r *runner) stopAndWait() {
	r.stop()
	if r.started.Load() {
		<-r.done
	}
}

func (r *runner) position() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

func (r *runner) progress() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}

func (r *runner) lastError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *runner) setError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.err = ""
	} else {
		r.err = err.Error()
	}
}

func (r *runner) run() {
	name := r.st.p.Name()
	log := r.e.log.With("projection", name, "generation", r.gen)
	backoff := 100 * time.Millisecond
	for {
		if r.ctx.Err() != nil {
			return
		}
		if r.isRebuild() && r.position() >= r.e.src.LastPosition() {
			if err := r.e.switchTo(r.st, r); err != nil {
				log.Error("projection rebuild could not switch; the old generation keeps serving", "err", err)
				return
			}
			// Now the active runner: go on folding.
		}
		evs, err := r.e.src.Next(r.ctx, r.position()+1, r.e.cfg.BatchEvents)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			log.Warn("projection cannot read the log; retrying", "err", err)
			r.setError(err)
			if !sleepCtx(r.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if err := r.apply(evs); err != nil {
			if r.ctx.Err() != nil {
				return
			}
			log.Error("projection batch failed; retrying", "err", err, "from", evs[0].Position)
			r.setError(err)
			r.e.metrics.errors.WithLabelValues(name).Inc()
			if !sleepCtx(r.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

func (r *runner) isRebuild() bool {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	return r.st.rebuild == r
}

// apply folds evs and the checkpoint in one batch.
func (r *runner) apply(evs []events.RecordedEvent) error {
	if len(evs) == 0 {
		return nil
	}
	name := r.st.p.Name()
	if want := r.position() + 1; evs[0].Position != want {
		return fmt.Errorf("projections: %s: log returned position %d, expected %d", name, evs[0].Position, want)
	}
	start := time.Now()
	r.sorted.Reset()
	if r.written == nil {
		r.written = map[string]written{}
	}
	clear(r.written)
	if r.reads == nil {
		r.reads = map[string]written{}
	}
	committed := false
	defer func() {
		if !committed {
			// The database is as it was, so the cache is still right;
			// the retry reads afresh anyway (the error may have been a read).
			clear(r.reads)
		}
	}()
	w := &Writer{db: r.e.db, written: r.written, reads: r.reads, sorted: &r.sorted, prefix: rowPrefix(name, r.gen), r: r}
	if err := r.st.p.Apply(w, evs); err != nil {
		return fmt.Errorf("projections: %s: apply from %d: %w", name, evs[0].Position, err)
	}
	last := evs[len(evs)-1].Position
	// The writes go to the memtable in key order (raftstore.SortedWrites:
	// far cheaper inserts than the projection's order, which jumps between
	// rows and indexes); Get read the batch's own writes from r.written.
	out := r.e.db.NewBatch()
	defer out.Close()
	if _, err := r.sorted.WriteTo(out); err != nil {
		return fmt.Errorf("projections: %s: %w", name, err)
	}
	// The checkpoint is outside the rows' key range (so it stays out of
	// their sort, whose keys then share the view's prefix), in the same
	// atomic batch.
	if err := out.Set(checkpointKey(name, r.gen), encodeU64(last), nil); err != nil {
		return fmt.Errorf("projections: %s: checkpoint: %w", name, err)
	}
	if err := out.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("projections: %s: commit: %w", name, err)
	}
	committed = true
	for k, x := range r.written {
		if _, ok := r.reads[k]; ok {
			r.reads[k] = written{v: append([]byte(nil), x.v...), del: x.del}
		}
	}
	r.mu.Lock()
	r.pos, r.err = last, ""
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
	r.e.metrics.applied.WithLabelValues(name).Add(float64(len(evs)))
	r.e.metrics.batchSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ---- meta ----

func (e *Engine) readMeta(name string) (gen uint64, version uint32, found bool, err error) {
	v, closer, err := e.db.Get(metaKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("projections: %s: read meta: %w", name, err)
	}
	defer closer.Close()
	if len(v) != 12 {
		return 0, 0, false, fmt.Errorf("projections: %s: corrupt meta (%d bytes)", name, len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:]), true, nil
}

func (e *Engine) readCheckpoint(name string, gen uint64) (uint64, error) {
	v, closer, err := e.db.Get(checkpointKey(name, gen))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projections: %s: read checkpoint: %w", name, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("projections: %s: corrupt checkpoint (%d bytes)", name, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func writeMeta(b *pebble.Batch, name string, gen uint64, version uint32) {
	v := make([]byte, 12)
	binary.BigEndian.PutUint64(v, gen)
	binary.BigEndian.PutUint32(v[8:], version)
	_ = b.Set(metaKey(name), v, nil)
}

func deleteGeneration(b *pebble.Batch, name string, gen uint64) {
	p := rowPrefix(name, gen)
	_ = b.DeleteRange(p, prefixEnd(p), nil)
	_ = b.Delete(checkpointKey(name, gen), nil)
}

// Digest is a fingerprint of one projection's rows.
type Digest struct {
	Name     string
	Position uint64 // the log position the rows cover
	Rows     uint64
	SHA256   [32]byte
}

// Digests returns, for every projection, a SHA-256 over its active
// generation's rows (key length, key, value length, value, in key order)
// and the checkpoint they cover, each from one snapshot. Two nodes (or a
// node and a rebuild) that folded the same log to the same position have
// equal digests.
func (e *Engine) Digests() ([]Digest, error) {
	out := make([]Digest, 0, len(e.names))
	for _, name := range e.names {
		e.mu.Lock()
		gen := e.projs[name].active.gen
		snap := e.db.NewSnapshot()
		e.mu.Unlock()
		d := Digest{Name: name}
		h := sha256.New()
		err := func() error {
			defer snap.Close()
			v, closer, err := snap.Get(checkpointKey(name, gen))
			if err == nil {
				if len(v) == 8 {
					d.Position = binary.BigEndian.Uint64(v)
				}
				closer.Close()
			} else if !errors.Is(err, pebble.ErrNotFound) {
				return err
			}
			r := &Reader{r: snap, prefix: rowPrefix(name, gen), name: name}
			var n [binary.MaxVarintLen64]byte
			return r.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
				h.Write(n[:binary.PutUvarint(n[:], uint64(len(k)))])
				h.Write(k)
				h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
				h.Write(v)
				d.Rows++
				return true, nil
			})
		}()
		if err != nil {
			return nil, fmt.Errorf("projections: %s: digest: %w", name, err)
		}
		copy(d.SHA256[:], h.Sum(nil))
		out = append(out, d)
	}
	return out, nil
}
