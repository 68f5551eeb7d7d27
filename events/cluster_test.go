package events_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/chaos/linear"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

func startCluster(t *testing.T, n int) *localcluster.Cluster { return startTuned(t, n, nil) }

// startTuned starts an n-node local cluster, with configure adjusting each
// node's configuration, and waits for a leader.
func startTuned(t *testing.T, n int, configure func(*events.Config)) *localcluster.Cluster {
	t.Helper()
	c, err := localcluster.Start(t.TempDir(), n, localcluster.Options{Logger: quietLogger(), Configure: configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func ev(typ, data string) events.Event { return events.Event{Type: typ, Data: []byte(data)} }

// Every node accepts writes (followers forward to the leader) and every node
// then reads the same stream.
func TestClusterForwardingAndConsistentReads(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, m := range c.Members() {
		res, err := m.Node().Append(ctx, events.AppendArgs("s", events.Exact(uint64(i)), ev("t", m.ID)))
		if err != nil {
			t.Fatalf("append on %s: %v", m.ID, err)
		}
		if res.Version != uint64(i+1) {
			t.Fatalf("append on %s: version %d, want %d", m.ID, res.Version, i+1)
		}
	}
	for _, m := range c.Members() {
		got, err := m.Node().ReadStream(ctx, "s", 1, 100, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("%s reads %d events, want 3", m.ID, len(got))
		}
		for i, e := range got {
			if string(e.Data) != c.Members()[i].ID || e.Version != uint64(i+1) {
				t.Fatalf("%s event %d = %+v", m.ID, i, e)
			}
		}
	}
	// A conflict detected on the leader comes back typed through forwarding.
	_, err := c.Members()[0].Node().Append(ctx, events.AppendArgs("s", events.Exact(1), ev("t", "late")))
	var ce *events.ConflictError
	if !errors.As(err, &ce) || ce.Current != 3 {
		t.Fatalf("stale append: err %v, want conflict at version 3", err)
	}
}

// Fencing across nodes: a claim on one node fences the epoch held on another.
func TestClusterFencing(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := c.Members()[1].Node(), c.Members()[2].Node()
	e1, _, err := a.Claim(ctx, "grain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, events.Append{Stream: "grain", Expected: events.Any(), Epoch: e1, Events: []events.Event{ev("t", "1")}}); err != nil {
		t.Fatal(err)
	}
	e2, v, err := b.Claim(ctx, "grain")
	if err != nil || e2 <= e1 || v != 1 {
		t.Fatalf("second claim: epoch %d version %d err %v", e2, v, err)
	}
	_, err = a.Append(ctx, events.Append{Stream: "grain", Expected: events.Any(), Epoch: e1, Events: []events.Event{ev("t", "stale")}})
	if !errors.Is(err, events.ErrFenced) {
		t.Fatalf("stale activation append: %v, want fenced", err)
	}
	if _, err := b.Append(ctx, events.Append{Stream: "grain", Expected: events.Exact(1), Epoch: e2, Events: []events.Event{ev("t", "2")}}); err != nil {
		t.Fatal(err)
	}
}

// Bad input is rejected with a named error and writes nothing.
func TestClusterBadInputWritesNothing(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := c.Members()[0].Node()
	before := n.FSM().LastPosition()
	cases := []struct {
		name string
		a    events.Append
		want error
	}{
		{"empty stream", events.AppendArgs("", events.Any(), ev("t", "x")), events.ErrInvalid},
		{"long stream", events.AppendArgs(string(make([]byte, 300)), events.Any(), ev("t", "x")), events.ErrInvalid},
		{"unknown expected form", events.Append{Stream: "s", Expected: events.Expected{Kind: 9}, Events: []events.Event{ev("t", "x")}}, events.ErrInvalid},
		{"no events", events.Append{Stream: "s", Expected: events.Any()}, events.ErrInvalid},
		{"event too large", events.AppendArgs("s", events.Any(), events.Event{Type: "t", Data: make([]byte, 2<<20)}), events.ErrTooLarge},
	}
	for _, tc := range cases {
		_, err := n.Append(ctx, tc.a)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := n.FSM().LastPosition(); after != before {
		t.Fatalf("bad input wrote events: position %d -> %d", before, after)
	}
}

// The core durability and linearizability test: concurrent clients append
// (with exact expected versions) and read (consistently) on random nodes
// while the leader and a follower are stopped and restarted and a node is
// partitioned away and healed. Afterwards every acknowledged append is on
// every node, streams are dense without duplicates, and the history of each
// stream is linearizable.
func TestClusterFaultsLinearizable(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const streams = 4
	const clientsPerStream = 3
	h := linear.NewHistory()
	var acked sync.Map // payload -> (stream, version)
	type ackedAt struct {
		stream  string
		version uint64
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	for s := 0; s < streams; s++ {
		stream := fmt.Sprintf("stream-%d", s)
		for k := 0; k < clientsPerStream; k++ {
			client := s*clientsPerStream + k
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(client), 7))
				var known uint64 // last version this client saw
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					m := c.Members()[rng.IntN(len(c.Members()))]
					n := m.Node()
					if n == nil {
						continue
					}
					octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
					if rng.IntN(4) == 0 {
						call := h.Now()
						evs, err := n.ReadStream(octx, stream, 1, 100000, true)
						ret := h.Now()
						ocancel()
						if err != nil {
							continue // a failed read has no effect: not recorded
						}
						p := make([]string, len(evs))
						for j, e := range evs {
							p[j] = string(e.Data)
						}
						known = uint64(len(evs))
						h.Add(client, linear.Input{Stream: stream, Kind: linear.Read}, linear.Output{OK: true, Payloads: p}, call, ret)
						ops.Add(1)
						continue
					}
					payload := fmt.Sprintf("c%d-%d", client, i)
					in := linear.Input{Stream: stream, Kind: linear.Append, Expected: known, Payload: payload}
					call := h.Now()
					res, err := n.Append(octx, events.AppendArgs(stream, events.Exact(known), ev("t", payload)))
					ret := h.Now()
					ocancel()
					var ce *events.ConflictError
					switch {
					case err == nil:
						h.Add(client, in, linear.Output{OK: true, Version: res.Version}, call, ret)
						acked.Store(payload, ackedAt{stream, res.Version})
						known = res.Version
					case errors.As(err, &ce):
						h.Add(client, in, linear.Output{Version: ce.Current}, call, ret)
						known = ce.Current
					default:
						h.Add(client, in, linear.Output{Unknown: true}, call, 0)
					}
					ops.Add(1)
				}
			}()
		}
	}

	waitOps := func(n int64) {
		t.Helper()
		target := ops.Load() + n
		for ops.Load() < target {
			select {
			case <-ctx.Done():
				t.Fatalf("workload stalled at %d operations", ops.Load())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	leader := func() *localcluster.Member {
		t.Helper()
		lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
		defer lcancel()
		l, err := c.Leader(lctx)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	other := func(not string) *localcluster.Member {
		for _, m := range c.Members() {
			if m.ID != not {
				return m
			}
		}
		return nil
	}

	waitOps(100)
	// 1. Stop the leader, let the others go on, restart it from disk.
	l := leader()
	t.Logf("stopping leader %s", l.ID)
	if err := c.Stop(l.ID); err != nil {
		t.Fatal(err)
	}
	waitOps(100)
	if err := c.Restart(l.ID); err != nil {
		t.Fatal(err)
	}
	waitOps(100)
	// 2. Stop a follower and restart it.
	f := other(leader().ID)
	t.Logf("stopping follower %s", f.ID)
	if err := c.Stop(f.ID); err != nil {
		t.Fatal(err)
	}
	waitOps(100)
	if err := c.Restart(f.ID); err != nil {
		t.Fatal(err)
	}
	waitOps(100)
	// 3. Partition the leader away from the others, then heal.
	l = leader()
	t.Logf("isolating leader %s", l.ID)
	c.Net.Isolate(l.ID)
	waitOps(100)
	c.Net.Heal()
	waitOps(100)
	close(stop)
	wg.Wait()

	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	// Every acknowledged append is on every node at its version; streams are
	// dense and free of duplicates.
	for _, m := range c.Members() {
		n := m.Node()
		for s := 0; s < streams; s++ {
			stream := fmt.Sprintf("stream-%d", s)
			evs, err := n.ReadStream(ctx, stream, 1, 1000000, false)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for i, e := range evs {
				if e.Version != uint64(i+1) {
					t.Fatalf("%s %s: event %d has version %d (gap)", m.ID, stream, i, e.Version)
				}
				if seen[string(e.Data)] {
					t.Fatalf("%s %s: payload %s twice", m.ID, stream, e.Data)
				}
				seen[string(e.Data)] = true
			}
			acked.Range(func(k, v any) bool {
				a := v.(ackedAt)
				if a.stream != stream {
					return true
				}
				if a.version > uint64(len(evs)) || string(evs[a.version-1].Data) != k.(string) {
					t.Errorf("%s: acknowledged append %s at %s v%d is missing", m.ID, k, stream, a.version)
				}
				return true
			})
		}
	}
	t.Logf("%d operations recorded", h.Len())
	if err := linear.Check(h, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// Forward (node to node) proposes a batch on the leader: each command gets
// its own result, a bad one does not spoil the others, and a follower
// refuses to take it.
func TestForwardBatchResultsPerCommand(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := func(data string) *eventspb.Command {
		return &eventspb.Command{Command: &eventspb.Command_Append{Append: &eventspb.AppendRequest{
			Stream: "fw", ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY, AppendId: []byte(fmt.Sprintf("%016s", data)),
			Events: []*eventspb.Event{{Type: "t", Data: []byte(data)}}}}}
	}
	bad := &eventspb.Command{Command: &eventspb.Command_Append{Append: &eventspb.AppendRequest{
		Stream: "", ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY, Events: []*eventspb.Event{{Type: "t"}}}}}
	claim := &eventspb.Command{Command: &eventspb.Command_Claim{Claim: &eventspb.ClaimRequest{Stream: "fw-claimed", ClaimId: []byte("0123456789abcdef")}}}
	req := &eventspb.ForwardRequest{Commands: []*eventspb.Command{good("a"), bad, good("b"), claim, {}}}
	resp, err := l.Node().API().Forward(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	got := []eventspb.Code{}
	for _, r := range resp.Results {
		got = append(got, r.Code)
	}
	want := []eventspb.Code{eventspb.Code_CODE_OK, eventspb.Code_CODE_INVALID, eventspb.Code_CODE_OK, eventspb.Code_CODE_OK, eventspb.Code_CODE_INVALID}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
	if resp.Results[0].Version != 1 || resp.Results[2].Version != 2 || resp.Results[3].Epoch != 1 {
		t.Fatalf("results %v", resp.Results)
	}
	for _, m := range c.Members() {
		if m == l {
			continue
		}
		if _, err := m.Node().API().Forward(ctx, req); status.Code(err) != codes.Unavailable {
			t.Fatalf("follower %s answered Forward: %v", m.ID, err)
		}
	}
	evs, err := l.Node().ReadStream(ctx, "fw", 1, 10, true)
	if err != nil || len(evs) != 2 {
		t.Fatalf("stream fw: %d events, err %v", len(evs), err)
	}
}

// Without a quorum a write is retried until the caller's deadline and then
// reported unavailable (outcome unknown); once the quorum is back, a retry
// with the same append id is applied exactly once.
func TestNoQuorumUnavailableThenRetryOnce(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	survivor := c.Members()[0]
	for _, m := range c.Members()[1:] {
		if err := c.Stop(m.ID); err != nil {
			t.Fatal(err)
		}
	}
	a := events.AppendArgs("nq", events.Any(), ev("t", "once"))
	a.ID = events.AppendID{9, 9, 9}
	short, shortCancel := context.WithTimeout(ctx, 800*time.Millisecond)
	start := time.Now()
	_, err := survivor.Node().Append(short, a)
	shortCancel()
	if !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("append without quorum: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited < 800*time.Millisecond {
		t.Fatalf("gave up after %v, before the caller's deadline", waited)
	}
	for _, m := range c.Members()[1:] {
		if err := c.Restart(m.ID); err != nil {
			t.Fatal(err)
		}
	}
	res, err := survivor.Node().Append(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := survivor.Node().ReadStream(ctx, "nq", 1, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || res.Version != 1 {
		t.Fatalf("after retry: %d events, version %d; want exactly one", len(evs), res.Version)
	}
}

// A leader cut off from the others cannot confirm a read: its read index
// comes from a fence committed through the log, which needs a quorum. Reads
// sent to it fail (and are retried elsewhere) rather than answer without an
// append the new leader acknowledged. Concurrent reads all get an index.
func TestDeposedLeaderServesNoConsistentRead(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Node().Append(ctx, events.AppendArgs("s", events.Any(), ev("t", "1"))); err != nil {
		t.Fatal(err)
	}
	// Many reads at once (they share fences).
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Go(func() {
			if _, err := old.Node().ReadIndex(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	c.Net.Isolate(old.ID)
	defer c.Net.Heal()
	var leader *localcluster.Member
	for leader == nil || leader.ID == old.ID {
		if ctx.Err() != nil {
			t.Fatal("no new leader")
		}
		for _, m := range c.Members() {
			if m.ID != old.ID && m.Node().IsLeader() {
				leader = m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := leader.Node().Append(ctx, events.AppendArgs("s", events.Any(), ev("t", "2"))); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	evs, err := old.Node().ReadStream(rctx, "s", 1, 10, true)
	if err == nil {
		t.Fatalf("the cut-off old leader answered a consistent read with %d events", len(evs))
	}
}

// counter reads a counter registered on reg (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// A follower's append forwarded to a leader that then becomes unreachable
// (it still sends, but hears nothing: a one-way partition) is retried at the
// new leader as soon as leadership moves, instead of waiting out the forward
// call (here made to outlast the test), and applied once.
func TestForwardToDeposedLeaderRetriedAtNewLeader(t *testing.T) {
	regs := map[string]*prometheus.Registry{}
	var mu sync.Mutex
	c := startTuned(t, 3, func(cfg *events.Config) {
		cfg.ApplyTimeout = 10 * time.Minute
		reg := prometheus.NewRegistry()
		mu.Lock()
		regs[cfg.NodeID] = reg
		mu.Unlock()
		cfg.Registerer = reg
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old, fs := leaderAndFollowers(ctx, t, c)
	from, other := fs[0], fs[1]
	// An established forwarding connection (a new one would fail to dial
	// below, which is retried anyway).
	if _, err := from.Node().Append(ctx, events.AppendArgs("warm", events.Any(), ev("t", "0"))); err != nil {
		t.Fatal(err)
	}
	// Nothing from `from` reaches the leader: its forward hangs while the
	// leader, with `other`, keeps its quorum and its leadership.
	c.Net.Block(from.ID, old.ID)
	defer c.Net.Heal()
	mu.Lock()
	reg := regs[from.ID]
	mu.Unlock()
	a := events.AppendArgs("moved", events.Any(), ev("t", "once"))
	a.ID = events.AppendID{7, 7, 7}
	done := make(chan error, 1)
	go func() {
		_, err := from.Node().Append(ctx, a)
		done <- err
	}()
	for counter(t, reg, "switchboard_log_forwarded_total") < 2 {
		if ctx.Err() != nil {
			t.Fatal("the append was never forwarded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Now the leader hears no one: it steps down and the others elect a
	// new leader while the forward still hangs.
	c.Net.Block(other.ID, old.ID)
	if err := <-done; err != nil {
		t.Fatalf("append after the leader moved: %v", err)
	}
	if got := counter(t, reg, "switchboard_log_forwards_abandoned_total"); got < 1 {
		t.Fatalf("forwards_abandoned_total %v: the append did not go through the abandoned forward", got)
	}
	c.Net.Heal()
	for _, m := range c.Members() {
		var evs []events.RecordedEvent
		var err error
		for {
			evs, err = m.Node().ReadStream(ctx, "moved", 1, 10, true)
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: stream moved has %d events (err %v), want exactly one", m.ID, len(evs), err)
		}
	}
}
