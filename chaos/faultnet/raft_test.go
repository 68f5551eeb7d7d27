package faultnet

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countFSM counts the entries applied to it.
type countFSM struct {
	mu sync.Mutex
	n  int
}

func (f *countFSM) Apply(*raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return f.n
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

type raftNode struct {
	id    string
	addr  raft.ServerAddress
	raft  *raft.Raft
	trans *raft.NetworkTransport
}

// startRaftCluster starts size Raft nodes n1..nN talking over TCP through
// faultnet and bootstraps them as one cluster.
func startRaftCluster(t *testing.T, n *Network, size int) []*raftNode {
	t.Helper()
	logs := newTestWriter(t)
	nodes := make([]*raftNode, size)
	var servers []raft.Server
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := NewTCPStreamLayer(ln, "", nil)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		n.Register(id, tcp.Addr().String())
		trans := raft.NewNetworkTransport(n.StreamLayer(id, tcp), 3, time.Second, logs)
		nodes[i] = &raftNode{id: id, addr: trans.LocalAddr(), trans: trans}
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: trans.LocalAddr()})
	}
	for _, nd := range nodes {
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(nd.id)
		cfg.HeartbeatTimeout = 300 * time.Millisecond
		cfg.ElectionTimeout = 300 * time.Millisecond
		cfg.LeaderLeaseTimeout = 150 * time.Millisecond
		cfg.CommitTimeout = 10 * time.Millisecond
		cfg.LogOutput = logs
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(cfg, &countFSM{}, store, store, raft.NewInmemSnapshotStore(), nd.trans)
		if err != nil {
			t.Fatal(err)
		}
		nd.raft = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown %s: %v", nd.id, err)
			}
			if err := nd.trans.Close(); err != nil {
				t.Errorf("close transport of %s: %v", nd.id, err)
			}
		})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// waitLeader waits until exactly one node among candidates is leader and
// returns it.
func waitLeader(t *testing.T, candidates []*raftNode) *raftNode {
	t.Helper()
	var leader *raftNode
	checkFor(t, waitTimeout, 10*time.Millisecond, func() error {
		leader = nil
		for _, nd := range candidates {
			if nd.raft.State() == raft.Leader {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.id, nd.id)
				}
				leader = nd
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		return nil
	})
	return leader
}

func apply(t *testing.T, leader *raftNode, entries int) {
	t.Helper()
	for i := 0; i < entries; i++ {
		if err := leader.raft.Apply([]byte("entry"), waitTimeout).Error(); err != nil {
			t.Fatalf("apply on %s: %v", leader.id, err)
		}
	}
}

// A real Raft cluster over faultnet: isolating the leader makes the other
// two elect a new one and commit without it; after Heal the old leader
// rejoins as a follower and all three converge on the same log.
func TestRaftClusterSurvivesLeaderIsolation(t *testing.T) {
	n := New(WithSeed(1), WithLogger(testLogger(t, slog.LevelInfo)))
	nodes := startRaftCluster(t, n, 3)

	old := waitLeader(t, nodes)
	apply(t, old, 5)

	n.Isolate(old.id)
	var rest []*raftNode
	for _, nd := range nodes {
		if nd != old {
			rest = append(rest, nd)
		}
	}
	leader := waitLeader(t, rest)
	apply(t, leader, 5) // commits with the two remaining nodes
	// The isolated node saw none of it, and faultnet did the cutting.
	if got, want := old.raft.LastIndex(), leader.raft.LastIndex(); got >= want {
		t.Fatalf("isolated %s has last index %d, not behind the leader's %d", old.id, got, want)
	}
	stats := n.Stats()
	var cut int64
	for _, other := range rest {
		s := stats[Link{From: old.id, To: other.id}]
		cut += s.StalledWrites + s.RefusedDials
	}
	if cut == 0 {
		t.Fatalf("no write stalled or dial refused from the isolated leader: %+v", stats)
	}

	n.Heal()
	checkFor(t, waitTimeout, 10*time.Millisecond, func() error {
		if s := old.raft.State(); s != raft.Follower {
			return fmt.Errorf("old leader %s is %v", old.id, s)
		}
		if addr, _ := old.raft.LeaderWithID(); addr != leader.addr {
			return fmt.Errorf("old leader %s follows %q, want %s at %s", old.id, addr, leader.id, leader.addr)
		}
		want := leader.raft.LastIndex()
		for _, nd := range nodes {
			if got := nd.raft.LastIndex(); got != want {
				return fmt.Errorf("%s has last index %d, leader %s has %d", nd.id, got, leader.id, want)
			}
			if got := nd.raft.AppliedIndex(); got != want {
				return fmt.Errorf("%s has applied index %d, want %d", nd.id, got, want)
			}
		}
		return nil
	})
}
