// Package events is Switchboard's replicated event log: per-stream event
// streams kept by the fsm package in Pebble, replicated with hashicorp/raft,
// with group commit on the leader, forwarding of writes from followers, consistent
// reads and subscriptions to the global log.
//
// Every other part of the system writes through a Node: it accepts a write on
// any node and forwards it to the leader, so callers never need to know which
// node leads.
package events

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/switchboard-io/switchboard/chaos/faultnet"
	"github.com/switchboard-io/switchboard/events/fsm"
	"github.com/switchboard-io/switchboard/events/raftstore"
	"github.com/switchboard-io/switchboard/internal/logutil"
)

// Key prefixes of the node's Pebble database. Each component owns one byte.
const (
	PrefixRaft   byte = 0x01
	PrefixEvents byte = 0x02
)

// Re-exported types of the event store, so that users import one package.
type (
	Event         = fsm.Event
	RecordedEvent = fsm.RecordedEvent
	Expected      = fsm.Expected
	AppendID      = fsm.AppendID
	Result        = fsm.Result
	StreamInfo    = fsm.StreamInfo
	Append        = fsm.Append
	ConflictError = fsm.ConflictError
	FencedError   = fsm.FencedError
)

// AppendArgs builds an unfenced append (epoch 0) of evs to stream; the node
// picks its append id.
func AppendArgs(stream string, expected Expected, evs ...Event) Append {
	return Append{Stream: stream, Expected: expected, Events: evs}
}

// Errors returned by the node; test with errors.Is.
var (
	ErrConflict    = fsm.ErrConflict
	ErrFenced      = fsm.ErrFenced
	ErrTooLarge    = fsm.ErrTooLarge
	ErrInvalid     = fsm.ErrInvalid
	ErrUnavailable = fsm.ErrUnavailable
)

// Expected-version constructors.
var (
	Exact    = fsm.Exact
	Any      = fsm.Any
	NoStream = fsm.NoStream
)

// Node is one member of the replicated event log.
type Node struct {
	cfg     Config
	log     *slog.Logger
	db      *pebble.DB // the Raft log and stable store (WAL, every write synced)
	evdb    *pebble.DB // the event store (no WAL; see fsm.Options.NoWAL)
	store   *raftstore.Store
	fsm     *fsm.FSM
	snaps   *fsm.SnapshotStore // raft's file store; references expanded on Open
	trans   *raft.NetworkTransport
	raft    *raft.Raft
	batcher *batcher
	fwd     *forwarder
	fence   readFence
	metrics *metrics

	// barrierTerm is the term in which this node, as leader, completed a
	// barrier: only then is its commit index a valid read index.
	barrierTerm atomic.Uint64
	barrierMu   sync.Mutex

	leaderChanged chan struct{} // closed and replaced when leadership changes
	leaderMu      sync.Mutex

	// dbMu guards the database against reads racing Close: readers hold it
	// shared and check dbClosed; Close takes it exclusively.
	dbMu     sync.RWMutex
	dbClosed bool

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// Open starts a node: it opens (or creates) the node's database in cfg.Dir,
// brings the event store up to date with the latest snapshot when needed,
// starts Raft and, if cfg.Bootstrap is set and the node has no Raft state,
// bootstraps the cluster.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	base := logger.With("node", cfg.NodeID)
	logger = base.With("component", "events")
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("events: create data dir: %w", err)
	}
	n := &Node{
		cfg:           cfg,
		log:           logger,
		closed:        make(chan struct{}),
		leaderChanged: make(chan struct{}),
		metrics:       newMetrics(cfg.Registerer),
	}
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
		}
	}()

	var err error
	n.db, err = raftstore.OpenDB(filepath.Join(cfg.Dir, "raft"), raftstore.DBOptions{Logger: base.With("db", "raft"), CacheSize: 32 << 20})
	if err != nil {
		return nil, fmt.Errorf("events: open raft database: %w", err)
	}
	n.evdb, err = raftstore.OpenDB(filepath.Join(cfg.Dir, "events"), raftstore.DBOptions{Logger: base.With("db", "events"), DisableWAL: true})
	if err != nil {
		return nil, fmt.Errorf("events: open event database: %w", err)
	}
	n.store, err = raftstore.New(n.db, PrefixRaft)
	if err != nil {
		return nil, fmt.Errorf("events: raft store: %w", err)
	}
	// Reference snapshots: a snapshot is a flush of the event store and a
	// few bytes naming it; the copy is made only when a follower needs one.
	n.fsm, err = fsm.New(n.evdb, PrefixEvents, cfg.Limits, fsm.Options{Logger: logger, Registerer: cfg.Registerer, NoWAL: true, ReferenceSnapshots: true})
	if err != nil {
		return nil, fmt.Errorf("events: event store: %w", err)
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.Raft.SnapshotsRetained, logutil.HCLog(logger, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("events: snapshot store: %w", err)
	}
	n.snaps = n.fsm.SnapshotStore(files)
	if err := n.catchUpFromSnapshot(); err != nil {
		return nil, err
	}

	stream := cfg.StreamLayer
	if stream == nil {
		adv := cfg.RaftAdvertise
		if adv == "" {
			adv = cfg.RaftBind
		}
		l, err := net.Listen("tcp", cfg.RaftBind)
		if err != nil {
			return nil, fmt.Errorf("events: raft listener on %s: %w", cfg.RaftBind, err)
		}
		stream, err = faultnet.NewTCPStreamLayer(l, adv, nil)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("events: raft stream layer: %w", err)
		}
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         4,
		MaxRPCsInFlight: 1, // pipelining hurts latency under batching (hashicorp/raft#541)
		Timeout:         10 * time.Second,
		Logger:          logutil.HCLog(logger, "transport"),
	})

	rc := cfg.raftConfig()
	rc.Logger = logutil.HCLog(logger, "raft")
	// Recent entries stay in memory: replication to followers and a
	// follower's apply of what it has just stored read them back from
	// there instead of from Pebble (a memtable search and a decode each).
	logs, err := raft.NewLogCache(logCacheEntries, n.store)
	if err != nil {
		return nil, fmt.Errorf("events: raft log cache: %w", err)
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.store, n.snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("events: start raft: %w", err)
	}
	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(n.store, n.store, n.snaps)
		if err != nil {
			return nil, fmt.Errorf("events: check raft state: %w", err)
		}
		if !has {
			f := n.raft.BootstrapCluster(raft.Configuration{Servers: cfg.Bootstrap})
			if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return nil, fmt.Errorf("events: bootstrap: %w", err)
			}
		}
	}
	n.fence.n = n
	n.batcher = newBatcher(n)
	n.fwd = newForwarder(n)
	n.wg.Add(2)
	go n.watchLeadership()
	go n.batcher.run()
	n.metrics.watch(n)
	ok = true
	return n, nil
}

// catchUpFromSnapshot restores the event store from the newest snapshot when
// the store is behind it or an earlier restore was interrupted. With
// NoSnapshotRestoreOnStart Raft will not do it for us.
func (n *Node) catchUpFromSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("events: list snapshots: %w", err)
	}
	if len(metas) == 0 {
		if n.fsm.NeedsRestore() {
			return fmt.Errorf("events: event store has an interrupted restore and no snapshot to restore from; restore a backup into %s", n.cfg.Dir)
		}
		return nil
	}
	latest := metas[0]
	if !n.fsm.NeedsRestore() && n.fsm.AppliedIndex() >= latest.Index {
		return nil
	}
	n.log.Warn("event store is behind the latest snapshot; restoring",
		"applied_index", n.fsm.AppliedIndex(), "snapshot_index", latest.Index, "snapshot", latest.ID)
	_, rc, err := n.snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("events: open snapshot %s: %w (if the event store under %s was lost, move the node's whole data directory away and start the node again with join: the leader sends it a full snapshot; docs/operations.md)", latest.ID, err, n.cfg.Dir)
	}
	if err := n.fsm.Restore(rc); err != nil {
		return fmt.Errorf("events: restore snapshot %s: %w", latest.ID, err)
	}
	return nil
}

// watchLeadership runs a barrier whenever this node becomes leader (so that
// its commit index covers every earlier write and can serve read indexes) and
// wakes writers waiting for a leader.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.closed:
			return
		case <-obsCh:
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
			if n.raft.State() == raft.Leader {
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					n.ensureBarrier()
				}()
			}
		}
	}
}

// ensureBarrier makes sure that, in the current term, this leader has
// committed and applied an entry of its own. Then its commit index covers
// every write of earlier terms, and every entry after it is one the event
// store sees (commands and configuration changes), so a commit index taken
// later names an entry that the store records as applied. The barrier is an
// empty command entry rather than raft.Barrier: Raft's own barrier and noop
// entries never reach the FSM, whose applied index would then never reach
// them.
func (n *Node) ensureBarrier() error {
	term := n.raft.CurrentTerm()
	if n.barrierTerm.Load() == term {
		return nil
	}
	n.barrierMu.Lock()
	defer n.barrierMu.Unlock()
	if n.barrierTerm.Load() == term {
		return nil
	}
	data, err := fsm.EncodeEntry(fsm.Entry{Time: time.Now().UnixNano()})
	if err != nil {
		return fmt.Errorf("events: encode barrier: %w", err)
	}
	if err := awaitFuture(n.raft.Apply(data, n.cfg.ApplyTimeout), n.closed); err != nil {
		return err
	}
	n.barrierTerm.Store(term)
	return nil
}

func (n *Node) leaderWait() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

// LeaderLeaseTimeout is the Raft leader lease of this node's configuration,
// the shortest heartbeat timeout Raft accepts in a reload.
func (n *Node) LeaderLeaseTimeout() time.Duration { return n.cfg.Raft.LeaderLeaseTimeout }

// LeaderCaughtUp reports, on the leader, whether it has applied an entry of
// its own term (the barrier every new leader appends): only then is its
// commit index known and everything before it applied. A new leader
// replaying a long log answers false until it is done.
func (n *Node) LeaderCaughtUp() bool {
	return n.raft.State() == raft.Leader && n.barrierTerm.Load() == n.raft.CurrentTerm()
}

// IsLeader reports whether this node is the Raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Raft gives access to the underlying Raft instance (for membership changes
// and status); writes must go through Append and Claim.
func (n *Node) Raft() *raft.Raft { return n.raft }

// FirstLogIndex returns the first index still in the local Raft log (0 when
// empty): entries below it were truncated after a snapshot.
func (n *Node) FirstLogIndex() (uint64, error) { return n.store.FirstIndex() }

// FSM gives read access to the local event store.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Claim starts a new activation epoch on stream and returns it together with
// the stream's current version. The caller must carry the epoch in every
// append; appends with an older epoch are then fenced. It returns once the
// claim is applied on this node, so a (non-consistent) read of the stream
// here sees every event up to the returned version.
func (n *Node) Claim(ctx context.Context, stream string) (epoch, version uint64, err error) {
	c := fsm.Claim{Stream: stream, ID: NewAppendID()}
	res, err := n.propose(ctx, fsm.Command{Claim: &c})
	if err != nil {
		return 0, 0, err
	}
	if err := res.Err(stream, fsm.Expected{}, 0); err != nil {
		return 0, 0, err
	}
	// A claim forwarded to the leader may not be applied here yet; once it
	// is, so is every event of the stream before it (entries apply in order).
	if err := n.waitEpoch(ctx, stream, res.Epoch); err != nil {
		return 0, 0, err
	}
	return res.Epoch, res.Version, nil
}

// waitEpoch waits until this node's store has the stream at epoch or later.
func (n *Node) waitEpoch(ctx context.Context, stream string, epoch uint64) error {
	for {
		notify := n.fsm.Notify()
		var info StreamInfo
		if err := n.read(func() (err error) { info, err = n.fsm.Stream(stream); return err }); err != nil {
			return err
		}
		if info.Epoch >= epoch {
			return nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting to apply the claim of %s: %w", ErrUnavailable, stream, ctx.Err())
		case <-n.closed:
			return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		}
	}
}

// Append appends a.Events to a.Stream atomically if a.Expected holds and
// a.Epoch is current. On success it returns the result (new version, global
// positions); a business failure comes back as a typed error (ConflictError,
// FencedError, ErrTooLarge, ErrInvalid) together with the result. If a.ID is
// zero the node picks one, so its own retries are never written twice; a
// caller that retries after a timeout must pass the same non-zero ID. An
// ErrUnavailable error means the outcome is unknown.
func (n *Node) Append(ctx context.Context, a fsm.Append) (fsm.Result, error) {
	if a.ID.IsZero() {
		a.ID = NewAppendID()
	}
	start := time.Now()
	res, err := n.propose(ctx, fsm.Command{Append: &a})
	n.metrics.observeAppend(start, err)
	if err != nil {
		return fsm.Result{}, err
	}
	return res, res.Err(a.Stream, a.Expected, a.Epoch)
}

// propose validates cmd and gets it applied: through the local batcher when
// this node leads, else forwarded to the leader; retried with jittered
// backoff while there is no reachable leader, until ctx ends.
func (n *Node) propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if err := fsm.ValidateCommand(cmd, n.cfg.Limits); err != nil {
		return fsm.Result{}, err
	}
	backoff := 5 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		select {
		case <-n.closed:
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		default:
		}
		wait := n.leaderWait()
		var res fsm.Result
		var err error
		if n.IsLeader() {
			res, err = n.batcher.submit(ctx, cmd)
		} else if addr, ok := n.leaderAPI(); ok {
			res, err = n.fwd.forward(ctx, addr, cmd)
		} else {
			err = errNoLeader
		}
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnavailable) {
				return fsm.Result{}, err
			}
			// Raft shut down, an entry the store could not decode, ...: the
			// outcome is unknown to the caller.
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		lastErr = err
		if ctx.Err() != nil {
			return fsm.Result{}, fmt.Errorf("%w: %w (last error: %w)", ErrUnavailable, ctx.Err(), lastErr)
		}
		n.metrics.retries.Inc()
		d := jitter(backoff)
		backoff = min(backoff*2, 250*time.Millisecond)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fsm.Result{}, fmt.Errorf("%w: %w (last error: %w)", ErrUnavailable, ctx.Err(), lastErr)
		case <-n.closed:
			t.Stop()
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		case <-wait:
			t.Stop()
		case <-t.C:
		}
	}
}

var errNoLeader = errors.New("events: no leader")

// retryable reports whether a proposal failed because of leadership or
// transport trouble (the command may be retried with the same id).
func retryable(err error) bool {
	switch {
	case errors.Is(err, errNoLeader), errors.Is(err, errNotLeader),
		errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrAbortedByRestore), errors.Is(err, errForwardTransport):
		return true
	}
	return false
}

// logCacheEntries is how many of the latest Raft entries the log cache
// keeps: at a few hundred entries per second under load, a follower up to
// ≈200 ms behind is served from memory. An entry is at most BatchMaxBytes,
// so the cache holds at most 64 × BatchMaxBytes (128 MiB by default; a few
// hundred KiB at 64 clients' 4 KiB entries).
const logCacheEntries = 64

func (n *Node) leaderAPI() (string, bool) {
	_, id := n.raft.LeaderWithID()
	if id == "" || n.cfg.ResolveAPI == nil {
		return "", false
	}
	return n.cfg.ResolveAPI(id)
}

// ReadIndex returns a log index such that every write acknowledged before the
// call is in the local store once AppliedIndex reaches it. It asks the leader
// (which confirms its leadership with a quorum) when this node is a follower.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	backoff := 5 * time.Millisecond
	for {
		wait := n.leaderWait()
		var idx uint64
		var err error
		if n.IsLeader() {
			idx, err = n.leaderReadIndex()
		} else if addr, ok := n.leaderAPI(); ok {
			idx, err = n.fwd.readIndex(ctx, addr)
		} else {
			err = errNoLeader
		}
		if err == nil {
			return idx, nil
		}
		if !retryable(err) {
			return 0, err
		}
		t := time.NewTimer(jitter(backoff))
		backoff = min(backoff*2, 250*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("%w: read index: %w (last error: %w)", ErrUnavailable, ctx.Err(), err)
		case <-n.closed:
			t.Stop()
			return 0, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		case <-wait:
			t.Stop()
		case <-t.C:
		}
	}
}

// leaderReadIndex confirms through the log that this node still leads and
// returns the index of that confirmation (see readFence).
func (n *Node) leaderReadIndex() (uint64, error) {
	if err := n.ensureBarrier(); err != nil {
		return 0, err
	}
	return n.fence.wait()
}

// Sync waits until this node's store reflects every write acknowledged
// anywhere before the call: reads after Sync are linearizable.
func (n *Node) Sync(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	// Stop waiting when the node closes, not only when ctx ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := n.fsm.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w: wait for index %d: %w", ErrUnavailable, idx, err)
	}
	return nil
}

// ReadStream reads up to max events of stream from version from (1 = the
// first). With consistent it first Syncs.
func (n *Node) ReadStream(ctx context.Context, stream string, from uint64, max int, consistent bool) ([]RecordedEvent, error) {
	if consistent {
		if err := n.Sync(ctx); err != nil {
			return nil, err
		}
	}
	var evs []RecordedEvent
	err := n.read(func() (err error) { evs, err = n.fsm.ReadStream(stream, from, max); return err })
	return evs, err
}

// read runs fn against the local store unless the node is closed.
func (n *Node) read(fn func() error) error {
	n.dbMu.RLock()
	defer n.dbMu.RUnlock()
	if n.dbClosed {
		return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
	return fn()
}

// Stream returns a stream's version and epoch from the local store.
func (n *Node) Stream(ctx context.Context, stream string, consistent bool) (StreamInfo, error) {
	if consistent {
		if err := n.Sync(ctx); err != nil {
			return StreamInfo{}, err
		}
	}
	var info StreamInfo
	err := n.read(func() (err error) { info, err = n.fsm.Stream(stream); return err })
	return info, err
}

// Close leaves Raft running state cleanly (no leadership transfer: the
// cluster package hands leadership over before calling Close) and closes the
// database. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.closed)
		err = n.closeResources()
		n.wg.Wait()
	})
	return err
}

func (n *Node) closeResources() error {
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if n.batcher != nil {
		n.batcher.stop()
	}
	if n.trans != nil {
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport: %w", err))
		}
	}
	if n.fwd != nil {
		n.fwd.close()
	}
	if n.metrics != nil {
		n.metrics.unwatch()
	}
	n.dbMu.Lock()
	n.dbClosed = true
	n.dbMu.Unlock()
	if n.fsm != nil {
		if err := n.fsm.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.evdb != nil {
		if err := n.evdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("event database: %w", err))
		}
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft database: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("events: close: %w", errors.Join(errs...))
	}
	return nil
}

// awaitFuture waits for a Raft future, or until abort is closed. Raft may
// never complete a future that was still queued when it shut down (with
// BatchApplyCh its apply queue is buffered and nobody drains it after
// shutdown), so no goroutine of ours may wait on one without a way out. The
// helper goroutine of an abandoned future ends if Raft ever completes it.
func awaitFuture(f raft.Future, abort <-chan struct{}) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-abort:
		return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
}

// NewAppendID returns a fresh append (or claim) id: the wall clock's Unix
// time in nanoseconds (8 bytes, big-endian), then 8 random bytes. The log
// treats ids as opaque 16-byte values; ids that grow with time are cheaper to
// keep, because the dedup records of the ids of one moment land next to each
// other in the store's memtable instead of all over it (apply +15-25 % against
// random ids, BenchmarkApplyBatchSteady). Unique unless two calls in the same
// nanosecond also draw the same 64 random bits.
func NewAppendID() AppendID {
	var id AppendID
	binary.BigEndian.PutUint64(id[:8], uint64(time.Now().UnixNano()))
	if _, err := rand.Read(id[8:]); err != nil {
		panic(fmt.Sprintf("events: crypto/rand failed: %v", err))
	}
	return id
}

// jitter returns a random duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	r, err := rand.Int(rand.Reader, big.NewInt(int64(d/2)))
	if err != nil {
		return d
	}
	return d/2 + time.Duration(r.Int64())
}

func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) || retryable(err) }
