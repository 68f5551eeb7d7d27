package cluster

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/switchboard-io/switchboard/cluster/membership"
)

// Membership is what the provider needs from the membership layer;
// *membership.Membership implements it. Contracts: Alive lists the members the
// failure detector considers alive, this node included; Watch's channel
// receives a value after any change (coalesced, never blocking the gossip);
// UpdateMeta replaces this node's metadata and gossips it.
type Membership interface {
	Routable() []membership.Member
	Watch() (<-chan struct{}, func())
	LocalMember() membership.Member
	UpdateMeta(membership.Meta) error
}

// Provider is a protoactor ClusterProvider on the memberlist-based
// membership layer. StartMember publishes this actor system's id, address and
// kinds in the node's gossip metadata; from then on every membership change is
// turned into a protoactor topology: the alive members that run an actor
// system. Topology updates come from the provider's own goroutine, never from
// inside memberlist's callbacks (which hold memberlist's lock).
type Provider struct {
	m   Membership
	log *slog.Logger

	mu     sync.Mutex
	c      *pcluster.Cluster
	cancel func()
	done   chan struct{}

	// started, when set, receives StartMember's result.
	started chan error
}

var _ pcluster.ClusterProvider = (*Provider)(nil)

// NewProvider returns a provider over m.
func NewProvider(m Membership, logger *slog.Logger) *Provider {
	if logger == nil {
		logger = slog.Default()
	}
	return &Provider{m: m, log: logger.With("component", "provider")}
}

// StartMember advertises the actor system and starts following membership.
func (p *Provider) StartMember(c *pcluster.Cluster) (err error) {
	defer func() {
		if p.started != nil {
			select {
			case p.started <- err:
			default:
			}
		}
	}()
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("provider: actor system address: %w", err)
	}
	kinds := c.GetClusterKinds()
	sort.Strings(kinds)
	meta := p.m.LocalMember().Meta
	meta.ActorSystemID, meta.ActorHost, meta.ActorPort, meta.Kinds = c.ActorSystem.ID, host, port, kinds
	if err := p.m.UpdateMeta(meta); err != nil {
		return fmt.Errorf("provider: advertise actor system: %w", err)
	}
	return p.follow(c)
}

// StartClient follows membership without advertising (not used by nodes).
func (p *Provider) StartClient(c *pcluster.Cluster) error { return p.follow(c) }

func (p *Provider) follow(c *pcluster.Cluster) error {
	ch, unwatch := p.m.Watch()
	done, stop := make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.c, p.cancel, p.done = c, func() { close(stop); unwatch() }, done
	p.mu.Unlock()
	p.publish(c)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				p.publish(c)
			}
		}
	}()
	return nil
}

// Topology converts membership into protoactor members: alive nodes with an
// actor system, sorted by id.
func Topology(members []membership.Member) pcluster.Members {
	out := make(pcluster.Members, 0, len(members))
	for _, m := range members {
		if m.ActorSystemID == "" || m.ActorPort <= 0 {
			continue
		}
		out = append(out, &pcluster.Member{
			Id: m.ActorSystemID, Host: m.ActorHost, Port: int32(m.ActorPort), Kinds: append([]string(nil), m.Kinds...),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func (p *Provider) publish(c *pcluster.Cluster) {
	c.MemberList.UpdateClusterTopology(Topology(p.m.Routable()))
}

// Shutdown stops following membership. Graceful: first withdraw the actor
// system from the gossip metadata, so that the other nodes stop routing to it.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if graceful {
		meta := p.m.LocalMember().Meta
		meta.ActorSystemID, meta.ActorHost, meta.ActorPort, meta.Kinds = "", "", 0, nil
		if err := p.m.UpdateMeta(meta); err != nil {
			return fmt.Errorf("provider: withdraw actor system: %w", err)
		}
	}
	return nil
}
