// Package sessionedge is the client-facing edge of relayed sessions: the
// WebSocket endpoint every node serves (docs/protocol.md). It authenticates
// hosts, turns client messages into commands for session grains
// (actors/session) and delivers what the grains push back, in order and
// exactly once per connection.
//
// How delivery works. Every durable message of a session is an event of the
// session's stream before anyone sees it. After appending, the session grain
// pushes the message to the connection actor of each attached participant
// (fire and forget, with the seq of the previous message meant for that
// participant). A connection delivers a push only if it has delivered
// everything up to the push's prev_seq; otherwise, and whenever a push may
// have been lost (its queue overflowed, the grain moved, the client
// resumed), it reads the session's stream from the log with a consistent
// read and delivers what it missed. The log, not the push, is the source of
// truth; pushes make the common case fast.
//
// Concurrency. Each connection has its own goroutines (reader, writer,
// deliverer, durable sender) and its own actor; nothing is shared between
// sessions on the hot path except the registry map, touched on connect and
// disconnect only.
package sessionedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
)

// Path is the WebSocket endpoint.
const Path = "/v1/session"

// Node is what the edge needs from its cluster node; *cluster.Node provides
// it through an adapter in cmd/switchboard.
type Node interface {
	// Cluster is the current protoactor cluster (replaced when the node
	// rejoins), nil while there is none.
	Cluster() *pcluster.Cluster
	// ReadStream reads a stream; consistent=true first catches up with the
	// log (events.Node.ReadStream).
	ReadStream(ctx context.Context, stream string, from uint64, max int, consistent bool) ([]events.RecordedEvent, error)
	// Watch signals membership changes (cluster/membership.Watch).
	Watch() (<-chan struct{}, func())
	// Topology identifies the current grain topology (the routable members
	// and their actor systems): it changes exactly when grains may move.
	Topology() string
	// Healthy is nil while the node takes part in a working cluster (it
	// knows a Raft leader and is caught up: cluster.Node.Ready).
	Healthy() error
}

// Edge serves the session protocol on one node.
type Edge struct {
	cfg  Config
	node Node
	log  *slog.Logger
	m    *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[string]*conn
	// resyncSem bounds the idle re-attachments in flight (resyncIdle).
	resyncSem chan struct{}
	sys       *pcluster.Cluster // the cluster connection actors are spawned on
	closing   bool
	isolated  error // why the node is cut off from the cluster (nil: it is not)
	refusing  error // set once it has been cut off for refuseAfter: new clients are refused
	count     atomic.Int64

	flushConns sync.Map // remote address -> *flushConn (see Listener)
}

// New starts an edge (its background watcher); serve it with Handler.
func New(cfg Config, node Node) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if node == nil {
		return nil, errors.New("sessionedge: node is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Edge{cfg: cfg, node: node, log: cfg.Logger.With("component", "session-edge"), m: m, conns: map[string]*conn{},
		resyncSem: make(chan struct{}, maxResyncs)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.sys = node.Cluster()
	e.wg.Add(3)
	go func() { defer e.wg.Done(); e.watch() }()
	go func() { defer e.wg.Done(); e.sweep() }()
	go func() { defer e.wg.Done(); e.watchIsolation() }()
	return e, nil
}

// Handler serves Path.
func (e *Edge) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, e.serveWS)
	return mux
}

// Connections is the number of open client connections.
func (e *Edge) Connections() int { return int(e.count.Load()) }

// Shutdown closes every connection with close code 1001 (clients resume on
// another node) and stops the edge; it returns when all are closed or ctx
// ends. Participants stay in their sessions.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	all := make([]*conn, 0, len(e.conns))
	for _, c := range e.conns {
		all = append(all, c)
	}
	e.mu.Unlock()
	for _, c := range all {
		c.closeWith(websocket.StatusGoingAway, "node shutting down")
	}
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sessionedge: shutdown: %w", ctx.Err())
	}
}

func (e *Edge) serveWS(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !slices.Contains(e.cfg.AllowedOrigins, o) {
		e.m.refused.WithLabelValues("origin_not_allowed").Inc()
		http.Error(w, "origin_not_allowed", http.StatusForbidden)
		return
	}
	e.mu.Lock()
	closing, isolated := e.closing, e.refusing
	e.mu.Unlock()
	if closing {
		http.Error(w, "node shutting down", http.StatusServiceUnavailable)
		return
	}
	if isolated != nil {
		e.m.refused.WithLabelValues("node_isolated").Inc()
		http.Error(w, "node_isolated: this node is cut off from the cluster; connect to another node", http.StatusServiceUnavailable)
		return
	}
	if e.count.Add(1) > int64(e.cfg.MaxConnections) {
		e.count.Add(-1)
		e.m.refused.WithLabelValues("too_many_connections").Inc()
		http.Error(w, "too_many_connections", http.StatusServiceUnavailable)
		return
	}
	defer e.count.Add(-1)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // the Origin policy above replaces the library's same-host check
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		e.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	e.wg.Add(1)
	defer e.wg.Done()
	c := newConn(e, ws, r.RemoteAddr, e.flushConnFor(r.RemoteAddr))
	c.run()
}

// register adds c to the registry and spawns its actor; it fails while the
// node has no actor system or is closing.
func (e *Edge) register(c *conn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return errors.New("node shutting down")
	}
	if cur := e.node.Cluster(); cur != e.sys {
		e.sys = cur
	}
	if e.sys == nil {
		return errors.New("the node's actor system is restarting")
	}
	if err := c.spawn(e.sys); err != nil {
		return err
	}
	e.conns[c.id] = c
	return nil
}

func (e *Edge) unregister(c *conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns[c.id] == c {
		delete(e.conns, c.id)
	}
}

// watch re-registers connections when the cluster changes: after a rejoin
// (new actor system) their actors are spawned again; after a membership
// change each connection re-attaches, which re-activates a session grain
// whose node died and tells it where its participants are.
func (e *Edge) watch() {
	ch, cancel := e.node.Watch()
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	topology := e.node.Topology()
	for {
		reattach := false
		select {
		case <-e.ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			// Most membership signals (suspicions refuted, metadata) move
			// no grain: act only when the grain topology changed.
			if t := e.node.Topology(); t != topology {
				topology = t
				reattach = true
			}
			if !reattach {
				continue
			}
			// Let the grain topology (updated from the same membership
			// change by the cluster provider) settle first, so that the
			// re-attach goes to the new owner rather than to the dead one.
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(topologySettle):
			}
		case <-tick.C:
			e.resyncIdle(time.Now())
		}
		e.mu.Lock()
		cur := e.node.Cluster()
		var all []*conn
		if cur != e.sys {
			e.sys = cur
			reattach = true
			for _, c := range e.conns {
				if cur == nil {
					continue
				}
				if err := c.spawn(cur); err != nil {
					e.log.Warn("cannot respawn connection actor", "conn", c.id, "err", err)
				}
			}
		}
		if reattach && cur != nil {
			for _, c := range e.conns {
				c.membershipChanged()
				all = append(all, c)
			}
		}
		e.mu.Unlock()
		if len(all) > 0 {
			e.reattachAll(all)
		}
	}
}

// maxResyncs bounds the idle re-attachments in flight on one edge.
const maxResyncs = 32

// resyncIdle starts the idle re-attachment (conn.resync) of every
// connection due at now, at most maxResyncs at once across the edge.
func (e *Edge) resyncIdle(now time.Time) {
	e.mu.Lock()
	var due []*conn
	for _, c := range e.conns {
		if !c.attachedOnce.Load() || c.left.Load() || c.ctx.Err() != nil {
			continue
		}
		if now.Sub(time.Unix(0, c.lastPush.Load())) < time.Duration(c.resyncEvery.Load()) {
			continue
		}
		if len(e.resyncSem) == cap(e.resyncSem) {
			break
		}
		if c.resyncing.CompareAndSwap(false, true) {
			due = append(due, c)
		}
	}
	e.mu.Unlock()
	for _, c := range due {
		select {
		case e.resyncSem <- struct{}{}:
			go func() {
				defer func() { <-e.resyncSem }()
				c.resync()
			}()
		default:
			c.resyncing.Store(false) // the next tick takes it
		}
	}
}

func (e *Edge) reattachAll(all []*conn) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, c := range all {
		if !c.attachedOnce.Load() {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.attachAgain()
		}()
	}
	wg.Wait()
}

// refuseAfter is how long the node must have been cut off before it refuses
// new client connections (existing ones are closed after
// Config.IsolationGrace): long enough not to refuse during an election.
const refuseAfter = time.Second

// watchIsolation closes every client connection with close code 1013 once
// the node has been cut off from the cluster (no Raft leader, not caught
// up) for Config.IsolationGrace, and refuses new ones (after refuseAfter
// already) until it is back:
// clients then resume on a node that can serve them instead of waiting on
// one that cannot (a partition, a lost quorum). Shorter troubles — an
// election after a leader died — do not disconnect anyone.
func (e *Edge) watchIsolation() {
	t := time.NewTicker(e.cfg.IsolationGrace / 8)
	defer t.Stop()
	var since time.Time
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		err := e.node.Healthy()
		if err == nil {
			since = time.Time{}
			e.mu.Lock()
			was := e.isolated
			e.isolated, e.refusing = nil, nil
			e.mu.Unlock()
			if was != nil {
				e.log.Info("node back in the cluster: accepting session clients again")
			}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) >= min(refuseAfter, e.cfg.IsolationGrace) {
			// New clients go elsewhere at once: a handshake here would
			// wait for a session it cannot reach (a resume hung for the
			// client's whole handshake timeout, 10 s, in a chaos run).
			e.mu.Lock()
			e.refusing = err
			e.mu.Unlock()
		}
		if time.Since(since) < e.cfg.IsolationGrace {
			continue
		}
		e.mu.Lock()
		first := e.isolated == nil
		e.isolated = err
		all := make([]*conn, 0, len(e.conns))
		for _, c := range e.conns {
			all = append(all, c)
		}
		e.mu.Unlock()
		if first {
			e.log.Warn("node cut off from the cluster: sending session clients to other nodes", "err", err, "connections", len(all))
		}
		for _, c := range all {
			e.m.isolationCloses.Inc()
			c.closeWith(websocket.StatusTryAgainLater, "node cut off from the cluster; resume on another node")
		}
	}
}

// topologySettle is how long the edge waits after a membership change before
// re-attaching its connections.
const topologySettle = 25 * time.Millisecond

// sweep asks the sessions of this node's connections to expire if they are
// past their expiry or idle timeout.
func (e *Edge) sweep() {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		seen := map[string]bool{}
		e.mu.Lock()
		for _, c := range e.conns {
			if s := c.sessionCode(); s != "" {
				seen[s] = true
			}
		}
		sys := e.sys
		e.mu.Unlock()
		for code := range seen {
			e.tell(sys, code, &sessionpb.Expire{}, nil)
		}
	}
}

// call sends cmd to the session grain and waits for its reply.
func (e *Edge) call(ctx context.Context, code string, cmd proto.Message, idempotent bool) (proto.Message, error) {
	if e.node.Cluster() == nil {
		return nil, &entity.Error{Kind: session.Kind, ID: code, Code: entity.CodeUnavailable, Message: "the node's actor system is restarting"}
	}
	var opts []entity.CallOption
	if idempotent {
		opts = append(opts, entity.Idempotent(2*time.Second))
	}
	// CallOn, not Call: if the node rejoins while the call retries, the
	// next attempts go through its new actor system.
	return entity.CallOn(ctx, e.node, session.Kind, code, cmd, opts...)
}

// requestCached sends cmd to the session grain's cached activation and
// returns the future of its reply, or nil when no activation is cached.
func (e *Edge) requestCached(c *pcluster.Cluster, code string, cmd proto.Message, timeout time.Duration) *actor.Future {
	if c == nil {
		return nil
	}
	pid, ok := c.PidCache.Get(code, session.Kind)
	if !ok || pid == nil {
		return nil
	}
	return c.ActorSystem.Root.RequestFuture(pid, cmd, timeout)
}

func (e *Edge) grainPID(c *pcluster.Cluster, code string) *actor.PID {
	if c == nil {
		return nil
	}
	pid, ok := c.PidCache.Get(code, session.Kind)
	if !ok || pid == nil {
		if pid = c.Get(code, session.Kind); pid == nil {
			return nil
		}
		c.PidCache.Set(code, session.Kind, pid)
	}
	return pid
}

// tell sends cmd to the session grain without waiting for a reply (stream
// frames, acks, detach, expire; the grain answers none of them). With a
// sender (a connection's actor), a message that finds no activation comes
// back as a dead letter, which makes the sender forget the cached PID so the
// next message activates the grain again.
func (e *Edge) tell(c *pcluster.Cluster, code string, cmd proto.Message, sender *actor.PID) {
	pid := e.grainPID(c, code)
	if pid == nil {
		return
	}
	if sender == nil {
		c.ActorSystem.Root.Send(pid, cmd)
		return
	}
	c.ActorSystem.Root.RequestWithCustomSender(pid, cmd, sender)
}

func newConnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// actorIDPrefix names connection actors; the rest is the connection id.
const actorIDPrefix = "sbconn-"

// spawnActor spawns the actor forwarding pushes to c on sys.
func spawnActor(sys *actor.ActorSystem, c *conn) (*actor.PID, error) {
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *sessionpb.Deliver, *sessionpb.StreamDeliver, *sessionpb.Sync, *sessionpb.Gap:
			c.push(m.(proto.Message))
		case *sessionpb.Delivers:
			for _, d := range m.GetItems() {
				c.push(d)
			}
		case *actor.DeadLetterResponse:
			// A message this connection told its grain found no
			// activation: the cached PID is stale.
			if cl := c.e.node.Cluster(); cl != nil {
				cl.PidCache.Remove(c.sessionCode(), session.Kind)
			}
		}
	})
	pid, err := sys.Root.SpawnNamed(props, actorIDPrefix+c.id)
	if err != nil {
		return nil, fmt.Errorf("spawn connection actor: %w", err)
	}
	return pid, nil
}
