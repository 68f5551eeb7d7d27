package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// deadServerGrace is short so that the voter reconciler removes a departed
// node within the test; the kill -9 phase accepts either outcome for the
// killed node (still a voter, or removed and added again), since both are
// correct and which one happens depends on how long the restart takes.
const deadServerGrace = "3s"

// startClusterArgs is startCluster with extra arguments for every node.
func startClusterArgs(t *testing.T, bin string, n int, extra ...string) *bench.LogCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	args := append(slices.Clone(fastArgs), extra...)
	c, err := bench.StartLogClusterWith(ctx, bin, n, t.TempDir(), bench.ClusterOptions{Logger: quiet(), ExtraArgs: args})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("--- %s log tail:\n%s", nd.ID, nd.Proc.LogTail(3000))
			}
		}
		_ = c.Stop()
	})
	return c
}

// counterWriter adds 1 to a few counters, one goroutine per counter (so that a
// call stuck on a node that died, which waits for its whole deadline, does
// not hold up the others), round-robin over the nodes in its target set, and
// keeps a ledger per counter. A reply other than 200 or 503 (or a transport
// error, which is ambiguous) is a failure of the test.
type counterWriter struct {
	ids []string

	mu      sync.Mutex
	targets []string // HTTP addresses
	ledgers map[string]*ledger
	acked   int64
	bad     []error
	lastErr error

	stop chan struct{}
	done chan struct{}
}

func startCounterWriter(targets []string, ids ...string) *counterWriter {
	w := &counterWriter{ids: ids, targets: slices.Clone(targets), ledgers: map[string]*ledger{},
		stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	for k, id := range ids {
		w.ledgers[id] = &ledger{}
		wg.Go(func() { w.run(k, id) })
	}
	go func() { wg.Wait(); close(w.done) }()
	return w
}

func (w *counterWriter) run(k int, id string) {
	for i := k; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		target := w.targets[i%len(w.targets)]
		w.mu.Unlock()
		_, amb, err := counterCall(target, id, 1)
		w.mu.Lock()
		l := w.ledgers[id]
		switch {
		case err == nil:
			l.acked++
			w.acked++
		case amb:
			l.ambiguous++
			w.lastErr = err
		default:
			w.bad = append(w.bad, fmt.Errorf("add %s via %s: %w", id, target, err))
		}
		w.mu.Unlock()
		if err != nil {
			// Back off a little so that a node without a leader is not
			// hammered; not a synchronisation.
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// setTargets replaces the nodes the writer talks to.
func (w *counterWriter) setTargets(targets []string) {
	w.mu.Lock()
	w.targets = slices.Clone(targets)
	w.mu.Unlock()
}

func (w *counterWriter) ackedSoFar() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// waitAcks waits until n more adds than now have been acknowledged.
func (w *counterWriter) waitAcks(t *testing.T, n int64, what string) {
	t.Helper()
	base := w.ackedSoFar()
	eventually(t, 30*time.Second, what, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.bad) > 0 {
			return nil // reported by finish
		}
		if got := w.acked - base; got < n {
			return fmt.Errorf("%d of %d adds acknowledged (last error: %v)", got, n, w.lastErr)
		}
		return nil
	})
}

// finish stops the writer and checks that every counter holds every
// acknowledged add and no more than the ambiguous ones besides, reading each
// through a write (a query could be answered by a stale activation).
func (w *counterWriter) finish(t *testing.T, via []string) {
	t.Helper()
	close(w.stop)
	<-w.done
	if len(w.bad) > 0 {
		t.Fatalf("writes failed with a definite error: %v", errors.Join(w.bad...))
	}
	for i, id := range w.ids {
		l := w.ledgers[id]
		var v value
		eventually(t, 20*time.Second, "final add to "+id, func() error {
			var err error
			v, err = l.add(t, via[i%len(via)], id)
			return err
		})
		l.check(t, v)
		t.Logf("counter %s = %d: acked %d, ambiguous %d", id, v.Value, l.acked, l.ambiguous)
	}
}

func httpAddrsExcept(c *bench.LogCluster, skip ...string) []string {
	var out []string
	for _, nd := range c.Nodes {
		if !slices.Contains(skip, nd.ID) && nd.Proc.Expected() {
			out = append(out, nd.HTTPAddr)
		}
	}
	return out
}

// leaderID asks node i whom it knows as the Raft leader.
func leaderID(c *bench.LogCluster, i int) (string, error) {
	st, err := raftStatus(c, i)
	if err != nil {
		return "", err
	}
	if st.GetLeaderId() == "" {
		return "", fmt.Errorf("%s knows no leader", c.Nodes[i].ID)
	}
	return st.GetLeaderId(), nil
}

// agreedLeader waits until every running node names the same leader, one
// of the running nodes, and returns its index.
func agreedLeader(t *testing.T, c *bench.LogCluster) int {
	t.Helper()
	var leader string
	eventually(t, 20*time.Second, "one leader that every node knows", func() error {
		leader = ""
		for i, nd := range c.Nodes {
			if !nd.Proc.Expected() {
				continue
			}
			id, err := leaderID(c, i)
			if err != nil {
				return err
			}
			if leader != "" && id != leader {
				return fmt.Errorf("%s says the leader is %s, another node says %s", nd.ID, id, leader)
			}
			leader = id
		}
		if i := nodeIndex(c, leader); i < 0 || !c.Nodes[i].Proc.Expected() {
			return fmt.Errorf("leader %s is not a running node", leader)
		}
		return nil
	})
	return nodeIndex(c, leader)
}

// configuration waits until node i's Raft configuration is exactly the
// running nodes, all voters, each at its own Raft address.
func waitConfiguration(t *testing.T, c *bench.LogCluster, i int, want []string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("raft configuration %v seen by %s", want, c.Nodes[i].ID), func() error {
		st, err := raftStatus(c, i)
		if err != nil {
			return err
		}
		var got []string
		for _, s := range st.GetServers() {
			if s.GetSuffrage() != eventspb.Suffrage_SUFFRAGE_VOTER {
				return fmt.Errorf("%s is %v", s.GetId(), s.GetSuffrage())
			}
			j := nodeIndex(c, s.GetId())
			if j < 0 || s.GetAddress() != c.Nodes[j].RaftAddr {
				return fmt.Errorf("server %s at %s is not a node of this test", s.GetId(), s.GetAddress())
			}
			got = append(got, s.GetId())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("servers %v", got)
		}
		return nil
	})
}

func nodeIDs(c *bench.LogCluster, skip ...string) []string {
	var out []string
	for _, nd := range c.Nodes {
		if !slices.Contains(skip, nd.ID) {
			out = append(out, nd.ID)
		}
	}
	slices.Sort(out)
	return out
}

// Five node processes form a cluster (all voters, one leader, all ready);
// the leader is killed with SIGKILL and the others go on acknowledging
// writes; it restarts from its data and rejoins as the same Raft server; a
// sixth node joins and becomes a voter; then a node leaves for good with
// SIGTERM and the leader's voter reconciler removes it from the Raft
// configuration after cluster.dead_server_grace. Writes run throughout and
// every acknowledged one is in the counters at the end.
func TestProcessFiveNodesKillRestartAddRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test: builds the binary with -tags testkinds and runs six node processes (not in -short)")
	}
	start := time.Now()
	bin := buildTestBinary(t)
	c := startClusterArgs(t, bin, 5, "--cluster-dead-server-grace", deadServerGrace)
	for i := range c.Nodes {
		waitVoters(t, c, i, 5)
	}
	leader := agreedLeader(t, c)
	t.Logf("5 nodes ready, 5 voters, leader %s (%v)", c.Nodes[leader].ID, time.Since(start).Round(time.Millisecond))

	w := startCounterWriter(c.HTTPAddrs(), "a", "b", "c", "d")
	defer func() {
		select {
		case <-w.done:
		default:
			close(w.stop)
			<-w.done
		}
	}()
	w.waitAcks(t, 20, "writes on the healthy cluster")

	// kill -9 the leader: the other four elect a new one and keep going.
	victim := c.Nodes[leader]
	w.setTargets(httpAddrsExcept(c, victim.ID))
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	w.waitAcks(t, 30, "writes after kill -9 of the leader")
	newLeader := agreedLeader(t, c)
	if newLeader == leader {
		t.Fatalf("killed node %s still named leader", victim.ID)
	}
	t.Logf("leader %s killed; %s leads, writes acknowledged again after %v", victim.ID, c.Nodes[newLeader].ID, time.Since(killed).Round(time.Millisecond))

	// Restart from its data: the same Raft server (id and address) again.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := raftStatus(c, leader)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNodeId() != victim.ID || !st.GetHasState() {
		t.Fatalf("restarted node reports id %q has_state %v, want %q with state", st.GetNodeId(), st.GetHasState(), victim.ID)
	}
	all5 := nodeIDs(c)
	for i := range c.Nodes {
		waitConfiguration(t, c, i, all5)
	}
	w.setTargets(c.HTTPAddrs())
	w.waitAcks(t, 20, "writes after the restarted node rejoined")
	t.Logf("%s rejoined as itself (%v)", victim.ID, time.Since(start).Round(time.Millisecond))

	// A sixth node joins while writes continue and becomes a voter.
	sixth, err := c.AddNode(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	all6 := nodeIDs(c)
	for i := range c.Nodes {
		waitConfiguration(t, c, i, all6)
	}
	w.setTargets(c.HTTPAddrs())
	w.waitAcks(t, 20, "writes after the sixth node joined")
	t.Logf("%s joined as a voter (%v)", sixth.ID, time.Since(start).Round(time.Millisecond))

	// The current leader leaves for good (SIGTERM, not restarted): it hands
	// leadership over, and after the grace the new leader removes it.
	leaving := agreedLeader(t, c)
	gone := c.Nodes[leaving]
	w.setTargets(httpAddrsExcept(c, gone.ID))
	sigterm := time.Now()
	if err := gone.Proc.Stop(15 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if err := gone.Proc.ExitErr(); err != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want status 0", gone.ID, err)
	}
	t.Logf("%s stopped %v after SIGTERM", gone.ID, time.Since(sigterm).Round(time.Millisecond))
	rest := nodeIDs(c, gone.ID)
	for i, nd := range c.Nodes {
		if nd != gone {
			waitConfiguration(t, c, i, rest)
		}
	}
	// It left the gossip membership after the SIGTERM, and the grace runs
	// from then: it cannot have been removed sooner.
	took := time.Since(sigterm)
	if grace, _ := time.ParseDuration(deadServerGrace); took < grace {
		t.Fatalf("%s removed %v after its SIGTERM, before the grace of %v", gone.ID, took, grace)
	}
	t.Logf("%s removed from the raft configuration %v after its SIGTERM (grace %s)", gone.ID, took.Round(time.Millisecond), deadServerGrace)
	removedLine := regexp.MustCompile(`msg="removed dead server" .*\bserver=` + regexp.QuoteMeta(gone.ID) + ` `)
	eventually(t, 10*time.Second, "a node logs the removal", func() error {
		for _, nd := range c.Nodes {
			b, err := os.ReadFile(nd.Proc.LogPath)
			if err != nil {
				return err
			}
			if removedLine.Match(b) {
				return nil
			}
		}
		return fmt.Errorf("no log says %q", removedLine)
	})
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	w.waitAcks(t, 20, "writes after the removal")
	w.finish(t, httpAddrsExcept(c, gone.ID))
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
