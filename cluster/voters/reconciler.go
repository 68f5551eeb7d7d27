package voters

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/switchboard-io/switchboard/events"
)

// enqueueTimeout bounds how long Raft may take to accept a configuration
// change (it refuses a new one while the previous one is uncommitted). The
// wait for the change itself is bounded by the caller's context.
const enqueueTimeout = 5 * time.Second

// Reconciler keeps the Raft configuration of a node's event log in line with
// the cluster members (see the package documentation for the rules). Create
// it with New and call Run once.
type Reconciler struct {
	cfg     Config
	node    *events.Node
	members func() []Member
	changed <-chan struct{}
	log     *slog.Logger
	metrics *metrics
	running atomic.Bool

	// State of the Run goroutine only.
	missingSince map[string]time.Time // configured server absent from the member list, first noticed
	downSince    map[string]time.Time // not-alive member with an unknown Since, first noticed
	healthySince map[string]time.Time // non-voter caught up without interruption since
	note         string               // last "waiting" message logged, to log each once
}

// New returns a reconciler for node. members lists the cluster members as
// the failure detector sees them: it is called from Run's goroutine, must be
// quick and must return a slice the reconciler may keep. changed (may be nil)
// signals a membership change: send on it without blocking (a buffer of one
// suffices); closing it is allowed and only stops the signals.
func New(cfg Config, node *events.Node, members func() []Member, changed <-chan struct{}) (*Reconciler, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if node == nil {
		errs = append(errs, errors.New("voters: node: must be set"))
	}
	if members == nil {
		errs = append(errs, errors.New("voters: members: must be set"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{
		cfg:          cfg,
		node:         node,
		members:      members,
		changed:      changed,
		log:          logger.With("component", "voters", "node", node.ID()),
		metrics:      m,
		missingSince: map[string]time.Time{},
		downSince:    map[string]time.Time{},
		healthySince: map[string]time.Time{},
	}, nil
}

// Run reconciles until ctx is done: on every membership signal, on every
// change of the local node's leader or Raft state, and every Interval. Every
// wait in it (Raft futures, Status calls) ends with ctx, so it returns
// promptly. Call it once.
func (r *Reconciler) Run(ctx context.Context) {
	if !r.running.CompareAndSwap(false, true) {
		r.log.Error("Run called twice; the second call returns at once")
		return
	}
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	changed := r.changed
	for {
		leader := r.node.LeaderChanged()
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changed:
			if !ok {
				changed = nil
			}
		case <-leader:
		case <-tick.C:
		}
	}
}

// pass is one reconciliation.
func (r *Reconciler) pass(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if !r.node.HasState() {
		if r.cfg.BootstrapExpect > 0 {
			r.bootstrap(ctx)
		}
		return
	}
	cfg, err := r.node.Configuration()
	if err != nil {
		r.log.Warn("read raft configuration", "err", err)
		return
	}
	r.metrics.observe(cfg)
	now := time.Now()
	byID := r.index(r.members())
	r.track(now, cfg, byID)
	if !r.node.IsLeader() {
		clear(r.healthySince)
		return
	}
	// A failed change is logged and the pass goes on (a change that cannot
	// be made, e.g. an address still held by a dead server, must not block
	// the others) unless leadership was lost.
	steps := []func(context.Context, time.Time, raft.Configuration, map[string]Member){r.add, r.promote, r.remove}
	for _, step := range steps {
		if ctx.Err() != nil || !r.node.IsLeader() {
			return
		}
		step(ctx, now, cfg, byID)
	}
}

// stop reports whether a step must end after a failed change.
func (r *Reconciler) stop(ctx context.Context) bool { return ctx.Err() != nil || !r.node.IsLeader() }

func (r *Reconciler) index(members []Member) map[string]Member {
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		if m.ID == "" {
			continue
		}
		byID[m.ID] = m
	}
	return byID
}

// track updates when configured servers went missing from the member list
// and when not-alive members without a Since were first seen so.
func (r *Reconciler) track(now time.Time, cfg raft.Configuration, byID map[string]Member) {
	inCfg := map[string]bool{}
	for _, s := range cfg.Servers {
		id := string(s.ID)
		inCfg[id] = true
		if _, ok := byID[id]; !ok {
			if _, seen := r.missingSince[id]; !seen {
				r.missingSince[id] = now
				r.log.Info("configured server is missing from the member list", "server", id)
			}
		}
	}
	for id := range r.missingSince {
		if _, ok := byID[id]; ok || !inCfg[id] {
			delete(r.missingSince, id)
		}
	}
	for id, m := range byID {
		if !m.Alive && m.Since.IsZero() {
			if _, seen := r.downSince[id]; !seen {
				r.downSince[id] = now
			}
		} else {
			delete(r.downSince, id)
		}
	}
	for id := range r.downSince {
		if _, ok := byID[id]; !ok {
			delete(r.downSince, id)
		}
	}
}

// bootstrap bootstraps the cluster once the bootstrap_expect conditions hold.
func (r *Reconciler) bootstrap(ctx context.Context) {
	self := r.node.ID()
	var alive []Member
	selfAlive := false
	for _, m := range r.members() {
		if !m.Alive || m.ID == "" {
			continue
		}
		if m.HasRaftState {
			r.noteOnce(fmt.Sprintf("member %s already has raft state: not bootstrapping, waiting to be added by the leader", m.ID))
			return
		}
		if m.RaftAddr == "" {
			r.noteOnce(fmt.Sprintf("member %s has no raft address: not counted for bootstrap", m.ID))
			continue
		}
		if m.ID == self {
			selfAlive = true
		}
		alive = append(alive, m)
	}
	if !selfAlive {
		r.noteOnce("this node is not among the alive members yet: not bootstrapping")
		return
	}
	if len(alive) < r.cfg.BootstrapExpect {
		r.noteOnce(fmt.Sprintf("waiting for %d alive members without raft state to bootstrap (have %d)", r.cfg.BootstrapExpect, len(alive)))
		return
	}
	slices.SortFunc(alive, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	servers := make([]raft.Server, len(alive))
	ids := make([]string, len(alive))
	for i, m := range alive {
		servers[i] = raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Voter}
		ids[i] = m.ID
	}
	if ctx.Err() != nil {
		return
	}
	err := r.node.BootstrapCluster(servers)
	switch {
	case errors.Is(err, events.ErrHasState):
		// Added by a leader (or contacted by a candidate) meanwhile.
		r.log.Info("not bootstrapping: the node got raft state meanwhile")
	case err != nil:
		r.metrics.failures.WithLabelValues("bootstrap").Inc()
		r.log.Warn("bootstrap failed", "voters", ids, "err", err)
	default:
		r.metrics.bootstraps.Inc()
		r.log.Info("bootstrapped the cluster", "bootstrap_expect", r.cfg.BootstrapExpect, "voters", ids)
	}
}

// add adds alive members missing from the configuration as non-voters and
// updates changed addresses.
func (r *Reconciler) add(ctx context.Context, _ time.Time, cfg raft.Configuration, byID map[string]Member) {
	inCfg := map[string]raft.Server{}
	for _, s := range cfg.Servers {
		inCfg[string(s.ID)] = s
	}
	for _, m := range sortedMembers(byID) {
		if !m.Alive || m.RaftAddr == "" || m.ID == r.node.ID() {
			continue
		}
		s, ok := inCfg[m.ID]
		switch {
		case !ok:
			err := r.change(ctx, func() raft.IndexFuture {
				return r.node.Raft().AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, enqueueTimeout)
			})
			if err != nil {
				r.metrics.failures.WithLabelValues("add").Inc()
				r.log.Warn("add non-voter failed", "server", m.ID, "address", m.RaftAddr, "err", err)
				if r.stop(ctx) {
					return
				}
				continue
			}
			r.metrics.adds.Inc()
			r.log.Info("added member as non-voter", "server", m.ID, "address", m.RaftAddr)
		case string(s.Address) != m.RaftAddr:
			// AddNonvoter on a known server only updates its address.
			err := r.change(ctx, func() raft.IndexFuture {
				return r.node.Raft().AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, enqueueTimeout)
			})
			if err != nil {
				r.metrics.failures.WithLabelValues("address").Inc()
				r.log.Warn("update server address failed", "server", m.ID, "old_address", string(s.Address), "address", m.RaftAddr, "err", err)
				if r.stop(ctx) {
					return
				}
				continue
			}
			r.metrics.readdress.Inc()
			r.log.Info("updated server address", "server", m.ID, "suffrage", s.Suffrage.String(), "old_address", string(s.Address), "address", m.RaftAddr)
		}
	}
}

// promote promotes non-voters that have been caught up for the
// stabilization time.
func (r *Reconciler) promote(ctx context.Context, now time.Time, cfg raft.Configuration, byID map[string]Member) {
	nonvoters := map[string]bool{}
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Nonvoter {
			nonvoters[string(s.ID)] = true
		}
	}
	for id := range r.healthySince {
		if !nonvoters[id] {
			delete(r.healthySince, id)
		}
	}
	for _, s := range cfg.Servers {
		id := string(s.ID)
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		m, ok := byID[id]
		if !ok || !m.Alive || m.APIAddr == "" {
			delete(r.healthySince, id)
			continue
		}
		commit := r.node.Raft().CommitIndex()
		sctx, cancel := context.WithTimeout(ctx, r.cfg.StatusTimeout)
		st, err := r.node.RemoteStatus(sctx, m.APIAddr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var why string
		switch {
		case err != nil:
			why = err.Error()
		case st.GetNodeId() != id:
			why = fmt.Sprintf("%s answers as %q", m.APIAddr, st.GetNodeId())
		case commit > r.cfg.MaxLag && st.GetAppliedIndex() < commit-r.cfg.MaxLag:
			why = fmt.Sprintf("applied index %d trails commit index %d by more than %d", st.GetAppliedIndex(), commit, r.cfg.MaxLag)
		}
		if why != "" {
			if _, was := r.healthySince[id]; was {
				r.log.Info("non-voter no longer caught up; promotion clock restarts", "server", id, "reason", why)
			} else {
				r.log.Debug("non-voter not caught up", "server", id, "reason", why)
			}
			delete(r.healthySince, id)
			continue
		}
		since, ok := r.healthySince[id]
		if !ok {
			since = now
			r.healthySince[id] = now
		}
		if now.Sub(since) < r.cfg.StabilizationTime {
			continue
		}
		err = r.change(ctx, func() raft.IndexFuture {
			return r.node.Raft().AddVoter(s.ID, s.Address, 0, enqueueTimeout)
		})
		if err != nil {
			r.metrics.failures.WithLabelValues("promote").Inc()
			r.log.Warn("promote non-voter failed", "server", id, "err", err)
			if r.stop(ctx) {
				return
			}
			continue
		}
		delete(r.healthySince, id)
		r.metrics.promotions.Inc()
		r.log.Info("promoted non-voter to voter", "server", id, "address", string(s.Address),
			"applied_index", st.GetAppliedIndex(), "commit_index", commit, "caught_up_for", now.Sub(since).String())
	}
}

// remove removes at most one server whose member has not been alive for
// longer than the grace.
func (r *Reconciler) remove(ctx context.Context, now time.Time, cfg raft.Configuration, byID map[string]Member) {
	self := r.node.ID()
	type candidate struct {
		s     raft.Server
		since time.Time
	}
	var cands []candidate
	voters, aliveVoters := 0, 0
	for _, s := range cfg.Servers {
		id := string(s.ID)
		m, known := byID[id]
		alive := id == self || (known && m.Alive)
		if s.Suffrage == raft.Voter {
			voters++
			if alive {
				aliveVoters++
			}
		}
		if alive {
			continue
		}
		var since time.Time
		switch {
		case !known:
			since = r.missingSince[id]
		case m.Since.IsZero():
			since = r.downSince[id]
		default:
			since = m.Since
		}
		if since.IsZero() || now.Sub(since) <= r.cfg.DeadServerGrace {
			continue
		}
		cands = append(cands, candidate{s, since})
	}
	// The longest gone first.
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		return cmp.Compare(a.s.ID, b.s.ID)
	})
	quorate := aliveVoters*2 > voters
	for _, c := range cands {
		id := string(c.s.ID)
		if c.s.Suffrage == raft.Voter && !quorate {
			r.noteOnce(fmt.Sprintf("not removing dead voter %s: only %d of %d voters are alive (no majority)", id, aliveVoters, voters))
			continue
		}
		err := r.change(ctx, func() raft.IndexFuture {
			return r.node.Raft().RemoveServer(c.s.ID, 0, enqueueTimeout)
		})
		if err != nil {
			r.metrics.failures.WithLabelValues("remove").Inc()
			r.log.Warn("remove dead server failed", "server", id, "err", err)
			if r.stop(ctx) {
				return
			}
			continue
		}
		r.metrics.removals.Inc()
		r.log.Info("removed dead server", "server", id, "address", string(c.s.Address), "suffrage", c.s.Suffrage.String(),
			"not_alive_for", now.Sub(c.since).Round(time.Millisecond).String(), "grace", r.cfg.DeadServerGrace.String())
		return
	}
}

// change runs one Raft configuration change and waits for it to commit;
// both the hand-over to Raft and the wait end with ctx or when the node
// closes.
func (r *Reconciler) change(ctx context.Context, start func() raft.IndexFuture) error {
	ch := make(chan raft.IndexFuture, 1)
	go func() { ch <- start() }()
	select {
	case f := <-ch:
		return r.node.AwaitFuture(ctx, f)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noteOnce logs a waiting condition at Info when it differs from the last
// one logged.
func (r *Reconciler) noteOnce(msg string) {
	if msg == r.note {
		return
	}
	r.note = msg
	r.log.Info(msg)
}

func sortedMembers(byID map[string]Member) []Member {
	out := make([]Member, 0, len(byID))
	for _, m := range byID {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
