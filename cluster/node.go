package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/switchboard-io/switchboard/chaos/faultnet"
	"github.com/switchboard-io/switchboard/cluster/membership"
	"github.com/switchboard-io/switchboard/cluster/voters"
	"github.com/switchboard-io/switchboard/events"
)

// Config configures a cluster node: the event log, membership, Raft voter
// reconciliation and the actor system, wired together.
type Config struct {
	NodeID  string
	Version string

	// Log is the event log's configuration; Node fills in NodeID,
	// StreamLayer, ResolveAPI, DialOptions and (for a lone first node)
	// Bootstrap.
	Log events.Config
	// RaftListener is the bound Raft listener; RaftAdvertise the address
	// peers dial (empty = the listener's).
	RaftListener  net.Listener
	RaftAdvertise string
	// APIAdvertise and HTTPAdvertise are published to peers in the gossip
	// metadata (log forwarding, status; health and metrics).
	APIAdvertise, HTTPAdvertise string

	Gossip membership.Config
	Actors ActorsConfig
	// Kinds builds the grain kinds once the log is open.
	Kinds func(log *events.Node) ([]*pcluster.Kind, error)
	// BootstrapExpect: see voters.Config. When 0 and Gossip.Join is empty,
	// the node bootstraps a cluster of its own on first start.
	Voters voters.Config

	// TLS, when set, secures Raft, log forwarding and actor traffic with
	// mutual TLS (PeerConfig: both ends present node certificates of the
	// cluster CA). Nil = plain TCP (tests on loopback only).
	TLS *tls.Config

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Node is a running cluster member.
type Node struct {
	cfg     Config
	log     *slog.Logger
	Log     *events.Node
	Members *membership.Membership

	mu     sync.Mutex
	actors *Actors
	kinds  []*pcluster.Kind

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	metrics *nodeMetrics

	// apiAddrs maps NodeID → Log API address of every known member; it is
	// rebuilt on each membership change (watchAPIAddrs), so resolving the
	// leader for a forwarded command is one lookup in an immutable map.
	apiAddrs atomic.Pointer[map[string]string]
}

type nodeMetrics struct {
	rejoins     prometheus.Counter
	activations prometheus.Gauge
}

// Start opens the log, joins the membership, starts Raft voter
// reconciliation and the actor system. On error everything started is
// stopped again.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// n is not the named result: "return nil, err" must leave it to the
	// clean-up below (which once dereferenced a nil node and panicked
	// instead of reporting why the node could not start).
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "node")}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.metrics = &nodeMetrics{
		rejoins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_cluster_rejoins_total", Help: "Times this node learned it had been declared dead and rejoined under a new actor-system id.",
		}),
		activations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_cluster_activations", Help: "Grain activations hosted on this node.",
		}),
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(n.metrics.rejoins), cfg.Registerer.Register(n.metrics.activations)); err != nil {
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	var closers []func()
	defer func() {
		if err != nil {
			n.cancel()
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	// The event log.
	lc := cfg.Log
	lc.NodeID = cfg.NodeID
	lc.Logger = cfg.Logger
	lc.Registerer = cfg.Registerer
	sl, err := faultnet.NewTCPStreamLayer(cfg.RaftListener, cfg.RaftAdvertise, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("raft stream layer: %w", err)
	}
	lc.StreamLayer = sl
	raftAddr := sl.Addr().String()
	if cfg.RaftAdvertise != "" {
		raftAddr = cfg.RaftAdvertise
	}
	if cfg.TLS != nil {
		lc.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS.Clone()))}
	} else {
		lc.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	lc.ResolveAPI = n.resolveAPI
	if cfg.Voters.BootstrapExpect == 0 && len(cfg.Gossip.Join) == 0 {
		lc.Bootstrap = []raft.Server{{ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(raftAddr), Suffrage: raft.Voter}}
	}
	n.Log, err = events.Open(lc)
	if err != nil {
		_ = sl.Close()
		return nil, err
	}
	closers = append(closers, func() { _ = n.Log.Close() })

	// Membership.
	gc := cfg.Gossip
	gc.NodeID = cfg.NodeID
	gc.Logger = cfg.Logger
	gc.Registerer = cfg.Registerer
	meta := membership.Meta{
		NodeID: cfg.NodeID, RaftAddr: raftAddr, APIAddr: cfg.APIAdvertise, HTTPAddr: cfg.HTTPAdvertise,
		Version: cfg.Version, HasRaftState: n.Log.HasState(),
	}
	n.mu.Lock()
	n.Members, err = membership.Start(gc, meta)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = n.Members.Shutdown() })
	addrsChanged, unwatchAddrs := n.Members.Watch()
	n.refreshAPIAddrs() // after subscribing: no change is missed, and forwarding works from here on
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.watchAPIAddrs(addrsChanged, unwatchAddrs) }()

	// Raft voters follow membership.
	vc := cfg.Voters
	vc.Logger = cfg.Logger
	vc.Registerer = cfg.Registerer
	changed, unwatch := n.Members.Watch()
	rec, err := voters.New(vc, n.Log, n.voterMembers, changed)
	if err != nil {
		unwatch()
		return nil, err
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); defer unwatch(); rec.Run(n.ctx) }()
	go func() { defer n.wg.Done(); n.publishRaftState() }()

	// Actors.
	if cfg.Kinds != nil {
		if n.kinds, err = cfg.Kinds(n.Log); err != nil {
			return nil, fmt.Errorf("grain kinds: %w", err)
		}
	}
	a, err := n.startActors()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.actors = a
	n.mu.Unlock()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.watchDeclaredDead() }()
	go func() { defer n.wg.Done(); n.watchLeaderGone() }()
	return n, nil
}

func (n *Node) startActors() (*Actors, error) {
	ac := n.cfg.Actors
	ac.Kinds = n.kinds
	if ac.Logger == nil {
		ac.Logger = n.cfg.Logger
	}
	if n.cfg.TLS != nil {
		ac.ServerOptions = append(ac.ServerOptions, grpc.Creds(credentials.NewTLS(n.cfg.TLS.Clone())))
		ac.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(n.cfg.TLS.Clone()))}
	}
	ac.OnActivations = func(k int) { n.metrics.activations.Set(float64(k)) }
	return StartActors(ac, n.Members)
}

// Actors returns the current actor system (it is replaced on rejoin).
func (n *Node) Actors() *Actors {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.actors
}

// Cluster returns the current protoactor cluster, for grain calls.
func (n *Node) Cluster() *pcluster.Cluster {
	if a := n.Actors(); a != nil {
		return a.Cluster
	}
	return nil
}

// resolveAPI maps a Raft server id to its Log API address (false before the
// membership knows the node).
func (n *Node) resolveAPI(id raft.ServerID) (string, bool) {
	p := n.apiAddrs.Load()
	if p == nil {
		return "", false
	}
	addr, ok := (*p)[string(id)]
	return addr, ok
}

// refreshAPIAddrs rebuilds the apiAddrs snapshot from the membership.
func (n *Node) refreshAPIAddrs() {
	addrs := map[string]string{}
	for _, mem := range n.Members.Members() {
		if mem.APIAddr != "" {
			addrs[mem.NodeID] = mem.APIAddr
		}
	}
	n.apiAddrs.Store(&addrs)
}

// watchAPIAddrs keeps the apiAddrs snapshot current. ch is a membership
// Watch, which signals every change of the member set or of a member's Meta
// after it subscribed; the caller refreshes once after subscribing, which
// covers what came before.
func (n *Node) watchAPIAddrs(ch <-chan struct{}, unwatch func()) {
	defer unwatch()
	for {
		select {
		case <-n.ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			n.refreshAPIAddrs()
		}
	}
}

func (n *Node) voterMembers() []voters.Member {
	ms := n.Members.Members()
	out := make([]voters.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, voters.Member{
			ID: m.NodeID, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr,
			Alive: m.State == membership.Alive || m.State == membership.Suspect, Since: m.Since,
			HasRaftState: m.HasRaftState,
		})
	}
	return out
}

// publishRaftState sets HasRaftState in the gossip metadata once the node
// has a Raft configuration (bootstrap_expect relies on it).
func (n *Node) publishRaftState() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Log.HasState() {
			if err := n.updateMeta(func(m *membership.Meta) { m.HasRaftState = true }); err != nil {
				n.log.Warn("cannot publish raft state", "err", err)
			} else {
				return
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) updateMeta(f func(*membership.Meta)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	meta := n.Members.LocalMember().Meta
	f(&meta)
	return n.Members.UpdateMeta(meta)
}

// watchDeclaredDead rejoins whenever the membership layer learns the other
// nodes declared this one dead: they have blocked its actor-system id for
// good (protoactor's block list) while its activations may be running again
// elsewhere. The node drops every activation and starts a new actor system,
// which joins under a new id.
func (n *Node) watchDeclaredDead() {
	for {
		ch := n.Members.DeclaredDead()
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
		}
		n.log.Warn("this node was declared dead by its peers; dropping activations and rejoining under a new actor-system id")
		n.metrics.rejoins.Inc()
		n.mu.Lock()
		old := n.actors
		n.actors = nil
		n.mu.Unlock()
		if old != nil {
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			if err := old.Stop(ctx, false); err != nil {
				n.log.Warn("stopping the old actor system", "err", err)
			}
			cancel()
		}
		n.awaitLogReady()
		for n.ctx.Err() == nil {
			a, err := n.startActors()
			if err == nil {
				n.mu.Lock()
				n.actors = a
				n.mu.Unlock()
				n.log.Info("rejoined", "actor_system", a.ID())
				break
			}
			n.log.Warn("rejoin failed; retrying", "err", err)
			select {
			case <-n.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// watchLeaderGone shortens the wait for a new Raft leader when the
// membership knows the leader's process is gone (it left the routable set:
// its gossip port refuses connections, or it was declared dead). Followers
// otherwise start an election only after their heartbeat timeout, randomised
// up to twice its value. The timeouts are lowered (to the leader lease, the
// least Raft accepts) until a new leader is known or a few seconds passed,
// then restored.
func (n *Node) watchLeaderGone() {
	ch, cancel := n.Members.Watch()
	defer cancel()
	r := n.Log.Raft()
	for {
		select {
		case <-n.ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
		}
		_, leader := r.LeaderWithID()
		if leader == "" || string(leader) == n.cfg.NodeID {
			continue
		}
		if slices.ContainsFunc(n.Members.Routable(), func(m membership.Member) bool { return m.NodeID == string(leader) }) {
			continue
		}
		orig := r.ReloadableConfig()
		fast := orig
		lease := n.Log.LeaderLeaseTimeout()
		if lease <= 0 || lease >= orig.HeartbeatTimeout {
			continue
		}
		fast.HeartbeatTimeout, fast.ElectionTimeout = lease, min(lease, orig.ElectionTimeout)
		if err := r.ReloadConfig(fast); err != nil {
			n.log.Warn("cannot shorten raft timeouts for a gone leader", "err", err)
			continue
		}
		n.log.Info("raft leader's process is gone: campaigning sooner", "leader", leader, "heartbeat_timeout", fast.HeartbeatTimeout)
		deadline := time.After(5 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			select {
			case <-n.ctx.Done():
				tick.Stop()
				return
			case <-deadline:
				break wait
			case <-tick.C:
				if _, now := r.LeaderWithID(); now != "" && now != leader {
					break wait
				}
			}
		}
		tick.Stop()
		if err := r.ReloadConfig(orig); err != nil {
			n.log.Warn("cannot restore raft timeouts", "err", err)
		}
	}
}

// awaitLogReady waits, before a rejoin, until the log is ready (logReady):
// a node that was declared dead because it was cut off rejoins the grain
// topology only once it hears from a Raft leader again and has caught up.
// Rejoining earlier — as soon as the gossip reaches it again, while its Raft
// connections are still in TCP's retransmission backoff — moved grains onto
// a node that could not yet claim or append, and their sessions stalled for
// seconds after the partition had healed.
func (n *Node) awaitLogReady() {
	start := time.Now()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	logged := false
	for {
		err := n.logReady()
		if err == nil {
			if logged {
				n.log.Info("log ready; rejoining", "waited", time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if !logged && time.Since(start) > 2*time.Second {
			n.log.Info("waiting for the log before rejoining the grain topology", "why", err.Error())
			logged = true
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports why the node cannot serve yet, or nil: it must run an actor
// system, be a server of the Raft configuration (bootstrapped or added, and
// not removed), know a Raft leader, and have applied everything committed.
func (n *Node) Ready() error {
	if n.Actors() == nil {
		return errors.New("actor system not running (rejoining)")
	}
	return n.logReady()
}

// logReady is Ready without the actor system: the log part.
func (n *Node) logReady() error {
	cfg, err := n.Log.Configuration()
	if err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	if !slices.ContainsFunc(cfg.Servers, func(s raft.Server) bool { return s.ID == raft.ServerID(n.cfg.NodeID) }) {
		return errors.New("not part of the raft configuration (waiting for bootstrap or to be added)")
	}
	r := n.Log.Raft()
	if _, id := r.LeaderWithID(); id == "" {
		return errors.New("no raft leader")
	}
	if r.State() == raft.Leader && !n.Log.LeaderCaughtUp() {
		// Its commit index is not known before an entry of its term is
		// applied; until then "applied >= commit" proves nothing.
		return errors.New("log catching up: the new leader is applying its log")
	}
	if applied, commit := n.Log.FSM().AppliedIndex(), r.CommitIndex(); applied < commit {
		return fmt.Errorf("log catching up: applied %d of %d", applied, commit)
	}
	return nil
}

// Shutdown leaves gracefully within ctx: hand Raft leadership over, withdraw
// from the grain topology and stop every activation (passivation), leave the
// gossip membership (peers see "left", not "dead"), then close the log.
// Leaving does not remove the node from the Raft configuration: a restart
// comes back as the same voter; see events.Node.RemoveSelf for a permanent
// departure.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	if n.Log.IsLeader() {
		if cfg, err := n.Log.Configuration(); err == nil && len(cfg.Servers) > 1 {
			if err := n.Log.AwaitFuture(ctx, n.Log.Raft().LeadershipTransfer()); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
	}
	if a := n.Actors(); a != nil {
		if err := a.Stop(ctx, true); err != nil {
			errs = append(errs, err)
		}
	}
	n.cancel()
	left := make(chan error, 1)
	go func() { left <- n.Members.Leave(time.Second) }()
	select {
	case err := <-left:
		if err != nil {
			n.log.Warn("gossip leave", "err", err)
		}
	case <-ctx.Done():
	}
	_ = n.Members.Shutdown()
	n.wg.Wait()
	errs = append(errs, n.Log.Close())
	return errors.Join(errs...)
}
