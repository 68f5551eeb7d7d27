package events_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func logClient(t *testing.T, addr string) eventspb.LogClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return eventspb.NewLogClient(conn)
}

// servers returns the configuration of n as id -> suffrage.
func servers(t *testing.T, n *events.Node) map[string]raft.ServerSuffrage {
	t.Helper()
	cfg, err := n.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]raft.ServerSuffrage{}
	for _, s := range cfg.Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

// Status over gRPC (and through RemoteStatus, over the forwarder's
// connections) reports the answering node's own view.
func TestStatusRoundTrip(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, fs := leaderAndFollowers(ctx, t, c)
	f := fs[0]
	if _, err := l.Node().Append(ctx, events.AppendArgs("st", events.Any(), ev("t", "x"))); err != nil {
		t.Fatal(err)
	}
	if err := f.Node().Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := l.Node().RemoteStatus(ctx, f.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeId != f.ID || st.RaftState != "Follower" || !st.HasState || st.LeaderId != l.ID || st.LeaderAddr != l.RaftAddr {
		t.Fatalf("follower status: %v", st)
	}
	if st.Voters != 3 || st.Nonvoters != 0 || len(st.Servers) != 3 || st.Term == 0 {
		t.Fatalf("follower status configuration: %v", st)
	}
	if st.AppliedIndex == 0 || st.AppliedIndex > st.CommitIndex || st.CommitIndex > st.LastLogIndex || st.LastContactUnixNano == 0 {
		t.Fatalf("follower status indexes: %v", st)
	}
	for _, s := range st.Servers {
		if s.Suffrage != eventspb.Suffrage_SUFFRAGE_VOTER || c.Member(s.Id) == nil || c.Member(s.Id).RaftAddr != s.Address {
			t.Fatalf("server %v", s)
		}
	}
	ls, err := logClient(t, l.APIAddr).Status(ctx, &eventspb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ls.NodeId != l.ID || ls.RaftState != "Leader" || ls.LeaderId != l.ID || ls.CommitIndex < st.AppliedIndex {
		t.Fatalf("leader status: %v", ls)
	}
	if _, err := l.Node().RemoteStatus(ctx, "127.0.0.1:1"); err == nil {
		t.Fatal("status of a closed port answered")
	}
}

// RemoveServer validates the id and names the field; removing a server that
// is not a member changes nothing and succeeds (retries are safe).
func TestRemoveServerRequests(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := logClient(t, c.Members()[1].APIAddr)
	for _, id := range []string{"", strings.Repeat("x", 300), "bad\x00id"} {
		_, err := client.RemoveServer(ctx, &eventspb.RemoveServerRequest{Id: id})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "id:") {
			t.Fatalf("RemoveServer(%q): %v, want InvalidArgument naming id", id, err)
		}
	}
	if _, err := client.RemoveServer(ctx, &eventspb.RemoveServerRequest{Id: "nobody"}); err != nil {
		t.Fatalf("RemoveServer of a non-member: %v", err)
	}
	if got := servers(t, c.Members()[0].Node()); len(got) != 3 {
		t.Fatalf("configuration after removing a non-member: %v", got)
	}
	if err := c.Members()[0].Node().BootstrapCluster([]raft.Server{{ID: "n1", Address: "127.0.0.1:1"}}); !errors.Is(err, events.ErrHasState) {
		t.Fatalf("bootstrap of a node with state: %v, want ErrHasState", err)
	}
}

// A single voter cannot leave: it would leave no voter.
func TestRemoveSelfLastVoter(t *testing.T) {
	c := startSingle(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Members()[0].Node().RemoveSelf(ctx); !errors.Is(err, events.ErrLastVoter) {
		t.Fatalf("RemoveSelf of the only voter: %v, want ErrLastVoter", err)
	}
}

// removeSelfAndCheck has member m leave, checks that the others no longer
// list it and still accept appends.
func removeSelfAndCheck(t *testing.T, c *localcluster.Cluster, m *localcluster.Member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Node().RemoveSelf(ctx); err != nil {
		t.Fatalf("RemoveSelf of %s: %v", m.ID, err)
	}
	// It was removed as a follower: a leader removing itself would have shut
	// its Raft down (ShutdownOnRemove).
	if st := m.Node().Raft().State(); st == raft.Shutdown || st == raft.Leader {
		t.Fatalf("%s is %v after leaving (leadership must be handed over first)", m.ID, st)
	}
	if err := c.Stop(m.ID); err != nil {
		t.Fatal(err)
	}
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l == m {
		t.Fatalf("%s still leads", m.ID)
	}
	for _, o := range c.Members() {
		if o.Node() == nil {
			continue
		}
		eventually(t, 10*time.Second, o.ID+" still lists "+m.ID, func() bool {
			got := servers(t, o.Node())
			_, still := got[m.ID]
			return !still && len(got) == 2
		})
		if _, err := o.Node().Append(ctx, events.AppendArgs("after-leave", events.Any(), ev("t", o.ID))); err != nil {
			t.Fatalf("append on %s after %s left: %v", o.ID, m.ID, err)
		}
	}
}

// A follower leaves: the leader removes it; the two others go on.
func TestRemoveSelfFollower(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, fs := leaderAndFollowers(ctx, t, c)
	removeSelfAndCheck(t, c, fs[0])
}

// The leader leaves: it hands leadership over first, then the new leader
// removes it; the two others go on.
func TestRemoveSelfLeader(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Node().Append(ctx, events.AppendArgs("before-leave", events.Any(), ev("t", "x"))); err != nil {
		t.Fatal(err)
	}
	removeSelfAndCheck(t, c, l)
}
