package cluster

import (
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// activatorName is the name of the placement actor on every member.
const activatorName = "switchboard-activator"

// Lookup is Switchboard's protoactor identity lookup. It replaces disthash
// (see docs/architecture.md, "Grains"), keeping its placement rule and fixing
// what hurt us at the pinned commit:
//
//   - The owner of an identity is chosen by rendezvous hashing over the
//     current topology's members that host the kind (as disthash does); the
//     owner's placement actor spawns the grain on first request.
//   - Get waits at most Timeout for the owner's answer (disthash waits a
//     hard-coded 5 s), so callers on a dead owner retry quickly.
//   - The rendezvous table is swapped under a lock (disthash races on it).
//   - The placement actor never panics on a Terminated it does not know
//     (upstream issue #1142) and answers an unknown kind with Failed.
//   - On a topology change the placement actor stops the grains it no longer
//     owns; two activations can still exist briefly while views differ: the
//     event log's activation epochs fence the older one.
type Lookup struct {
	// Timeout bounds one activation request to the owner.
	Timeout time.Duration
	Logger  *slog.Logger
	// OnActivations, if set, is called with the number of local activations
	// whenever it changes (metrics).
	OnActivations func(n int)

	mu        sync.RWMutex
	rdv       *pcluster.Rendezvous
	members   int
	c         *pcluster.Cluster
	placement *actor.PID
	sub       *eventstream.Subscription
	stopOnce  sync.Once
}

var _ pcluster.IdentityLookup = (*Lookup)(nil)

// NewLookup returns a lookup whose activation requests wait at most timeout.
func NewLookup(timeout time.Duration, logger *slog.Logger) *Lookup {
	if logger == nil {
		logger = slog.Default()
	}
	return &Lookup{Timeout: timeout, Logger: logger.With("component", "lookup"), rdv: pcluster.NewRendezvous()}
}

// Setup starts the placement actor and follows topology changes.
func (l *Lookup) Setup(c *pcluster.Cluster, _ []string, isClient bool) {
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
	if isClient {
		return
	}
	pid, err := c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &placement{l: l, c: c, byKey: map[string]grain{}, byID: map[string]string{}}
	}), activatorName)
	if err != nil {
		l.Logger.Error("cannot start the placement actor", "err", err)
		return
	}
	l.mu.Lock()
	l.placement = pid
	l.mu.Unlock()
	l.sub = c.ActorSystem.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			rdv := pcluster.NewRendezvous()
			rdv.UpdateMembers(t.Members)
			l.mu.Lock()
			l.rdv, l.members = rdv, len(t.Members)
			l.mu.Unlock()
			c.ActorSystem.Root.Send(pid, t)
		}
	})
}

// Get returns the PID of identity's activation, activating it at its owner
// if needed; nil when no owner is known or it did not answer within Timeout.
func (l *Lookup) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	l.mu.RLock()
	owner := l.rdv.GetByClusterIdentity(ci)
	c := l.c
	l.mu.RUnlock()
	if owner == "" || c == nil {
		return nil
	}
	f := c.ActorSystem.Root.RequestFuture(actor.NewPID(owner, activatorName),
		&pcluster.ActivationRequest{ClusterIdentity: ci}, l.Timeout)
	res, err := f.Result()
	if err != nil {
		l.Logger.Debug("activation request failed", "owner", owner, "identity", ci.AsKey(), "future", f.PID().GetId(), "err", err)
		return nil
	}
	r, ok := res.(*pcluster.ActivationResponse)
	if !ok || r.GetFailed() || r.GetPid() == nil {
		return nil
	}
	return r.GetPid()
}

// Members is the number of members in the latest topology this lookup saw.
func (l *Lookup) Members() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.members
}

// RemovePid forgets a cached PID of identity.
func (l *Lookup) RemovePid(ci *pcluster.ClusterIdentity, pid *actor.PID) {
	l.mu.RLock()
	c := l.c
	l.mu.RUnlock()
	if c != nil {
		c.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
	}
}

// Shutdown stops the placement actor and, with it, every local activation.
// It is safe to call more than once (the pinned Cluster.Shutdown calls it twice).
func (l *Lookup) Shutdown() {
	l.stopOnce.Do(func() {
		l.mu.RLock()
		c, pid := l.c, l.placement
		l.mu.RUnlock()
		if c == nil || pid == nil {
			return
		}
		if l.sub != nil {
			c.ActorSystem.EventStream.Unsubscribe(l.sub)
		}
		if err := c.ActorSystem.Root.PoisonFuture(pid).Wait(); err != nil {
			l.Logger.Warn("placement actor did not stop cleanly", "err", err)
		}
	})
}

type grain struct {
	ci  *pcluster.ClusterIdentity
	pid *actor.PID
}

// placement owns this member's activations.
type placement struct {
	l     *Lookup
	c     *pcluster.Cluster
	byKey map[string]grain  // identity key -> activation
	byID  map[string]string // pid id -> identity key
}

func (p *placement) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pcluster.ActivationRequest:
		p.activate(ctx, m)
	case *actor.Terminated:
		if key, ok := p.byID[m.GetWho().GetId()]; ok {
			delete(p.byID, m.GetWho().GetId())
			if g, ok := p.byKey[key]; ok && g.pid.Equal(m.GetWho()) {
				delete(p.byKey, key)
				if k, ok := p.c.TryGetClusterKind(g.ci.Kind); ok {
					k.Dec()
				}
			}
			p.changed()
		}
	case *pcluster.ClusterTopology:
		p.rebalance(ctx, m)
	case *actor.Stopping:
		futures := make([]*actor.Future, 0, len(p.byKey))
		for _, g := range p.byKey {
			futures = append(futures, ctx.PoisonFuture(g.pid))
		}
		for _, f := range futures {
			_ = f.Wait()
		}
	}
}

func (p *placement) activate(ctx actor.Context, m *pcluster.ActivationRequest) {
	ci := m.GetClusterIdentity()
	if ci == nil || ci.Identity == "" {
		ctx.Respond(&pcluster.ActivationResponse{Failed: true})
		return
	}
	key := ci.AsKey()
	p.l.Logger.Debug("activation request", "identity", key, "from", ctx.Sender()) // formatted only when enabled; a nil sender prints <nil>
	if g, ok := p.byKey[key]; ok {
		ctx.Respond(&pcluster.ActivationResponse{Pid: g.pid})
		return
	}
	kind, ok := p.c.TryGetClusterKind(ci.Kind)
	if !ok {
		p.l.Logger.Warn("activation of an unknown kind", "kind", ci.Kind, "identity", ci.Identity)
		ctx.Respond(&pcluster.ActivationResponse{Failed: true})
		return
	}
	pid, err := ctx.SpawnNamed(pcluster.WithClusterIdentity(kind.Props, ci), key)
	if err != nil {
		p.l.Logger.Warn("cannot spawn activation", "identity", key, "err", err)
		ctx.Respond(&pcluster.ActivationResponse{Failed: true})
		return
	}
	kind.Inc()
	p.byKey[key] = grain{ci: ci, pid: pid}
	p.byID[pid.GetId()] = key
	p.changed()
	ctx.Respond(&pcluster.ActivationResponse{Pid: pid})
}

// rebalance stops the activations this member no longer owns.
func (p *placement) rebalance(ctx actor.Context, t *pcluster.ClusterTopology) {
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(t.Members)
	self := p.c.ActorSystem.Address()
	for key, g := range p.byKey {
		if owner := rdv.GetByClusterIdentity(g.ci); owner != self {
			p.l.Logger.Debug("activation moves", "identity", key, "owner", owner)
			ctx.Poison(g.pid)
		}
	}
}

func (p *placement) changed() {
	if p.l.OnActivations != nil {
		p.l.OnActivations(len(p.byKey))
	}
}
