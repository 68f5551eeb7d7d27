// Package localcluster runs several event log nodes in one process, over real
// TCP on loopback, each with its own Pebble directory, with their traffic
// (Raft and forwarding) passing through a faultnet.Network so tests and the
// chaos harness can cut and slow links. It is product code, like raft's
// InmemTransport: tests of every layer above the log use it.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/switchboard-io/switchboard/chaos/faultnet"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/internal/ports"
)

// Options tune a local cluster.
type Options struct {
	// Configure, when set, adjusts each node's configuration before it opens.
	Configure func(*events.Config)
	Logger    *slog.Logger
	Net       *faultnet.Network // nil = a new one
	// NoBootstrap starts every node without a Bootstrap list: no cluster
	// forms until something bootstraps one (Node.BootstrapCluster, e.g. a
	// bootstrap_expect reconciler).
	NoBootstrap bool
}

// Member is one node of the cluster.
type Member struct {
	ID       string
	RaftAddr string
	APIAddr  string
	Dir      string

	mu   sync.Mutex
	node *events.Node
	grpc *grpc.Server
}

// Node returns the running node, or nil while the member is stopped.
func (m *Member) Node() *events.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	Net  *faultnet.Network
	opts Options
	dir  string

	mu      sync.RWMutex // guards members and byID (Add runs while nodes resolve ids)
	members []*Member
	byID    map[string]*Member
}

// Start creates n nodes named n1..nN under dir and bootstraps them as one
// cluster (unless opts.NoBootstrap). It returns once every node runs (not
// necessarily with a leader: use Leader).
func Start(dir string, n int, opts Options) (*Cluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Net == nil {
		opts.Net = faultnet.New(faultnet.WithLogger(opts.Logger))
	}
	c := &Cluster{Net: opts.Net, opts: opts, dir: dir, byID: map[string]*Member{}}
	var boot []raft.Server
	for i := 1; i <= n; i++ {
		m, err := c.newMember()
		if err != nil {
			return nil, err
		}
		boot = append(boot, raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Voter})
	}
	if opts.NoBootstrap {
		boot = nil
	}
	for _, m := range c.Members() {
		if err := c.start(m, boot); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// newMember picks the addresses of the next member (n<k+1>) and registers it.
func (c *Cluster) newMember() (*Member, error) {
	raftAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := fmt.Sprintf("n%d", len(c.members)+1)
	m := &Member{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr, Dir: filepath.Join(c.dir, id)}
	c.members = append(c.members, m)
	c.byID[m.ID] = m
	c.Net.Register(m.ID, raftAddr, apiAddr)
	return m, nil
}

// Add starts one more node (named n<k+1>) with no Raft state and no
// Bootstrap list: it takes part once a leader adds it to the configuration.
func (c *Cluster) Add() (*Member, error) {
	m, err := c.newMember()
	if err != nil {
		return nil, err
	}
	if err := c.start(m, nil); err != nil {
		return nil, err
	}
	return m, nil
}

func freeAddr() (string, error) {
	a, err := ports.Addr()
	if err != nil {
		return "", fmt.Errorf("localcluster: pick a port: %w", err)
	}
	return a, nil
}

// TestConfig returns event log settings suited to a cluster on one loaded
// machine: quick elections without flapping under the race detector.
func TestConfig() events.Config {
	c := events.DefaultConfig()
	c.Raft.HeartbeatTimeout = 300 * time.Millisecond
	c.Raft.ElectionTimeout = 300 * time.Millisecond
	c.Raft.LeaderLeaseTimeout = 150 * time.Millisecond
	c.Raft.CommitTimeout = 20 * time.Millisecond
	return c
}

func (c *Cluster) start(m *Member, boot []raft.Server) error {
	cfg := TestConfig()
	cfg.NodeID = m.ID
	cfg.Dir = m.Dir
	cfg.Bootstrap = boot
	cfg.Logger = c.opts.Logger
	rl, err := listenRetry(m.RaftAddr)
	if err != nil {
		return err
	}
	tcp, err := faultnet.NewTCPStreamLayer(rl, m.RaftAddr, nil)
	if err != nil {
		rl.Close()
		return err
	}
	cfg.StreamLayer = c.Net.StreamLayer(m.ID, tcp)
	dial := c.Net.Dialer(m.ID, nil)
	cfg.DialOptions = []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }),
	}
	cfg.ResolveAPI = func(id raft.ServerID) (string, bool) {
		if o := c.Member(string(id)); o != nil {
			return o.APIAddr, true
		}
		return "", false
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	node, err := events.Open(cfg)
	if err != nil {
		rl.Close()
		return fmt.Errorf("localcluster: open %s: %w", m.ID, err)
	}
	al, err := listenRetry(m.APIAddr)
	if err != nil {
		node.Close()
		return err
	}
	gs := grpc.NewServer()
	eventspb.RegisterLogServer(gs, node.API())
	go gs.Serve(al)
	m.mu.Lock()
	m.node, m.grpc = node, gs
	m.mu.Unlock()
	return nil
}

// listenRetry binds addr, retrying briefly: a port just released by a
// stopped member may still be held by the kernel for a moment.
func listenRetry(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("localcluster: listen %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Members returns the members in the order they were created (n1, n2, ...).
func (c *Cluster) Members() []*Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*Member(nil), c.members...)
}

// Member returns a member by id, or nil.
func (c *Cluster) Member(id string) *Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

// Stop stops a member (Raft shut down, database closed) keeping its data.
func (c *Cluster) Stop(id string) error {
	m := c.Member(id)
	m.mu.Lock()
	node, gs := m.node, m.grpc
	m.node, m.grpc = nil, nil
	m.mu.Unlock()
	if node == nil {
		return nil
	}
	gs.Stop()
	return node.Close()
}

// Restart starts a stopped member again from its data directory.
func (c *Cluster) Restart(id string) error {
	m := c.Member(id)
	if m.Node() != nil {
		return fmt.Errorf("localcluster: %s is running", id)
	}
	return c.start(m, nil)
}

// Leader waits until the running members agree on one leader and returns it.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	for {
		var leaders []string
		agreed := true
		var seen string
		for _, m := range c.Members() {
			n := m.Node()
			if n == nil {
				continue
			}
			if n.IsLeader() {
				leaders = append(leaders, m.ID)
			}
			_, id := n.Raft().LeaderWithID()
			if seen == "" {
				seen = string(id)
			} else if string(id) != seen {
				agreed = false
			}
		}
		if len(leaders) == 1 && agreed && seen == leaders[0] {
			return c.Member(leaders[0]), nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(leaders)
			return nil, fmt.Errorf("localcluster: no agreed leader (leaders %v): %w", leaders, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitConverged waits until every running member has applied the same index
// as the leader's commit index.
func (c *Cluster) WaitConverged(ctx context.Context) error {
	for {
		l, err := c.Leader(ctx)
		if err != nil {
			return err
		}
		target := l.Node().Raft().LastIndex()
		ok := true
		for _, m := range c.Members() {
			n := m.Node()
			if n == nil {
				continue
			}
			if n.FSM().AppliedIndex() < target {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localcluster: not converged: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops every member.
func (c *Cluster) Close() error {
	var errs []error
	for _, m := range c.Members() {
		if err := c.Stop(m.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StartSingle starts a one-node cluster under dir and returns it with its
// node once that node leads (or ctx ends).
func StartSingle(ctx context.Context, dir string, opts Options) (*Cluster, *events.Node, error) {
	c, err := Start(dir, 1, opts)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.Leader(ctx)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, m.Node(), nil
}
