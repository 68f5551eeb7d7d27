//go:build !race

// Tests with several actor systems in one process. The pinned protoactor-go
// races with itself there (grpclog.SetLoggerV2 in every remote start, member
// sets, block list; see docs/architecture.md), so, as nats-server does with
// its norace files, they run in `make test` without -race (TestNoRace*).

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
	"github.com/switchboard-io/switchboard/cluster/membership"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

// fakeNet is an in-memory membership shared by in-process nodes: each node
// has its own view (the set of node ids it believes alive), so tests can
// simulate divergent views without a failure detector.
type fakeNet struct {
	mu       sync.Mutex
	meta     map[string]membership.Meta
	views    map[string]map[string]bool // node -> alive set it sees
	watchers map[string][]chan struct{}
}

func newFakeNet() *fakeNet {
	return &fakeNet{meta: map[string]membership.Meta{}, views: map[string]map[string]bool{}, watchers: map[string][]chan struct{}{}}
}

type fakeMember struct {
	n  *fakeNet
	id string
}

func (f *fakeNet) join(id string) *fakeMember {
	f.mu.Lock()
	f.meta[id] = membership.Meta{NodeID: id}
	for _, v := range f.views {
		v[id] = true
	}
	v := map[string]bool{}
	for other := range f.meta {
		v[other] = true
	}
	f.views[id] = v
	f.mu.Unlock()
	f.notifyAll()
	return &fakeMember{n: f, id: id}
}

// setView replaces what node id believes alive.
func (f *fakeNet) setView(id string, alive ...string) {
	f.mu.Lock()
	v := map[string]bool{}
	for _, a := range alive {
		v[a] = true
	}
	f.views[id] = v
	f.mu.Unlock()
	f.notifyAll()
}

// kill removes id from every view.
func (f *fakeNet) kill(id string) {
	f.mu.Lock()
	for _, v := range f.views {
		delete(v, id)
	}
	f.mu.Unlock()
	f.notifyAll()
}

func (f *fakeNet) notifyAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ws := range f.watchers {
		for _, w := range ws {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	}
}

func (m *fakeMember) Routable() []membership.Member {
	m.n.mu.Lock()
	defer m.n.mu.Unlock()
	var out []membership.Member
	for id := range m.n.views[m.id] {
		out = append(out, membership.Member{Meta: m.n.meta[id], State: membership.Alive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

func (m *fakeMember) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.n.mu.Lock()
	m.n.watchers[m.id] = append(m.n.watchers[m.id], ch)
	m.n.mu.Unlock()
	return ch, func() {}
}

func (m *fakeMember) LocalMember() membership.Member {
	m.n.mu.Lock()
	defer m.n.mu.Unlock()
	return membership.Member{Meta: m.n.meta[m.id], State: membership.Alive}
}

func (m *fakeMember) UpdateMeta(meta membership.Meta) error {
	m.n.mu.Lock()
	m.n.meta[m.id] = meta
	m.n.mu.Unlock()
	m.n.notifyAll()
	return nil
}

type testNode struct {
	id     string
	log    *events.Node
	actors *Actors
	mem    *fakeMember
}

func testLogger() *slog.Logger {
	lv := slog.LevelWarn
	if os.Getenv("SWITCHBOARD_TEST_DEBUG") != "" {
		lv = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

func startNodes(t *testing.T, n int) (*localcluster.Cluster, *fakeNet, []*testNode) {
	t.Helper()
	lc, err := localcluster.Start(t.TempDir(), n, localcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := lc.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	net := newFakeNet()
	var nodes []*testNode
	for _, m := range lc.Members() {
		tn := &testNode{id: m.ID, log: m.Node(), mem: net.join(m.ID)}
		tn.actors = startActors(t, tn)
		nodes = append(nodes, tn)
	}
	return lc, net, nodes
}

func startActors(t *testing.T, tn *testNode) *Actors {
	t.Helper()
	o := entity.DefaultOptions()
	o.Log = tn.log
	o.Logger = testLogger()
	o.AppendTimeout = 3 * time.Second
	kind, err := entity.NewKind(counter.Spec(tn.id), o)
	if err != nil {
		t.Fatal(err)
	}
	a, err := StartActors(ActorsConfig{
		Bind: "127.0.0.1:0", Kinds: []*pcluster.Kind{kind}, LookupTimeout: 500 * time.Millisecond,
		Logger: testLogger(), ActorLogLevel: slog.LevelError,
	}, tn.mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(ctx, false)
	})
	return a
}

func add(t *testing.T, a *Actors, id string, delta int64) (*counter.Value, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := entity.Call(ctx, a.Cluster, counter.Kind, id, &counter.Add{Delta: delta})
	if err != nil {
		return nil, err
	}
	v, ok := res.(*counter.Value)
	if !ok {
		return nil, fmt.Errorf("reply %T", res)
	}
	return v, nil
}

func get(t *testing.T, a *Actors, id string) *counter.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := entity.Call(ctx, a.Cluster, counter.Kind, id, &counter.Get{}, entity.Idempotent(2*time.Second))
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return res.(*counter.Value)
}

// waitTopology waits until every node's protoactor topology has want members.
func waitTopology(t *testing.T, nodes []*testNode, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.actors.TopologySize() != want {
			if time.Now().After(deadline) {
				t.Fatalf("node %s: topology has %d members, want %d", n.id, n.actors.TopologySize(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestNoRaceGrainsAcrossNodes(t *testing.T) {
	_, _, nodes := startNodes(t, 3)
	waitTopology(t, nodes, 3)
	// Commands for many counters from every node: each counter is hosted on
	// one owner and keeps one consistent value.
	// 12 counters: placement hashes the ids over the members' actor-system
	// ids (new on every start), so all 12 land on one of 3 nodes with a
	// chance of 3^-11; with 6 it was 1 in 243, and the check below failed
	// in CI now and then.
	want := map[string]int64{}
	for i := 0; i < 36; i++ {
		id := fmt.Sprintf("c%d", i%12)
		v, err := add(t, nodes[i%3].actors, id, int64(i+1))
		if err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
		want[id] += int64(i + 1)
		if v.Value != want[id] {
			t.Fatalf("add %s: value %d, want %d", id, v.Value, want[id])
		}
	}
	hosts := map[string]bool{}
	for id, w := range want {
		for _, n := range nodes {
			v := get(t, n.actors, id)
			if v.Value != w {
				t.Fatalf("get %s via %s: %d, want %d", id, n.id, v.Value, w)
			}
			hosts[v.Node] = true
		}
	}
	if len(hosts) < 2 {
		t.Fatalf("%d counters all hosted on %v: placement is not spreading", len(want), hosts)
	}
	// A rejected command writes nothing.
	if _, err := add(t, nodes[0].actors, "c0", 0); !errors.Is(err, entity.ErrRejected) {
		t.Fatalf("add 0: %v, want ErrRejected", err)
	}
	if v := get(t, nodes[1].actors, "c0"); v.Value != want["c0"] {
		t.Fatalf("after rejected add: %d, want %d", v.Value, want["c0"])
	}
}

func TestNoRaceGrainReactivatedElsewhereWithState(t *testing.T) {
	lc, fnet, nodes := startNodes(t, 3)
	waitTopology(t, nodes, 3)
	var total int64
	var host string
	for i := 1; i <= 20; i++ {
		v, err := add(t, nodes[0].actors, "survivor", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(i)
		host = v.Node
	}
	first := get(t, nodes[0].actors, "survivor")
	// The host node dies: its actors and its log node stop, and the others
	// stop seeing it.
	var dead *testNode
	var alive []*testNode
	for _, n := range nodes {
		if n.id == host {
			dead = n
		} else {
			alive = append(alive, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dead.actors.Stop(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := lc.Stop(dead.id); err != nil {
		t.Fatal(err)
	}
	fnet.kill(dead.id)
	waitTopology(t, alive, 2)
	v := get(t, alive[0].actors, "survivor")
	if v.Value != total {
		t.Fatalf("re-activated counter: %d, want %d", v.Value, total)
	}
	if v.Node == host {
		t.Fatalf("still hosted on dead node %s", host)
	}
	if v.Epoch <= first.Epoch {
		t.Fatalf("re-activation epoch %d not above %d", v.Epoch, first.Epoch)
	}
	if v2, err := add(t, alive[1].actors, "survivor", 1); err != nil || v2.Value != total+1 {
		t.Fatalf("add after failover: %v %v", v2, err)
	}
}

// Two nodes whose views of the cluster differ both believe they own a grain
// and activate it; the log's epochs let only the newest activation write.
func TestNoRaceDivergentViewsFenceStaleActivation(t *testing.T) {
	_, fnet, nodes := startNodes(t, 3)
	waitTopology(t, nodes, 3)
	a, b := nodes[0], nodes[1]
	fnet.setView(a.id, a.id)
	fnet.setView(b.id, b.id)
	waitTopology(t, []*testNode{a, b}, 1)

	var acked int64
	epochs := map[uint64]string{}
	for i := 0; i < 20; i++ {
		n := a
		if i%2 == 1 {
			n = b
		}
		v, err := add(t, n.actors, "contested", 1)
		if err != nil {
			// A fenced activation is retried by Call at a new activation;
			// any other error leaves the outcome unknown, which this test
			// does not expect on a healthy log.
			t.Fatalf("add via %s: %v", n.id, err)
		}
		acked++
		if v.Value != acked {
			t.Fatalf("add %d via %s: value %d, want %d (a stale activation wrote)", i, n.id, v.Value, acked)
		}
		if prev, ok := epochs[v.Epoch]; ok && prev != v.Node {
			t.Fatalf("epoch %d used by two nodes (%s, %s)", v.Epoch, prev, v.Node)
		}
		epochs[v.Epoch] = v.Node
	}
	if len(epochs) < 10 {
		t.Fatalf("alternating owners should have re-claimed the stream on every switch; epochs: %v", epochs)
	}
	// Node 3 kept the full view (protoactor blocks members that left a
	// view for good, so a and b cannot simply heal; the real node rejoins
	// under a new actor-system id instead). A write through it lands on top
	// of every acknowledged write. (A query may be answered by a stale
	// activation that has not written since it was fenced: see
	// docs/architecture.md, "Grains".)
	v, err := add(t, nodes[2].actors, "contested", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Value != acked+1 {
		t.Fatalf("value after a final add: %d, want %d", v.Value, acked+1)
	}
}

// TestNoRaceConcurrentCommandsOneGrain: many callers on every node send
// commands to one grain at once. The shell decides them while appends are in
// flight and writes them in batches; every command is answered once, in a
// committed state: the versions in the replies are exactly 1..N, each
// reply's value is the sum of the deltas up to its version, and the final
// value is the sum of all deltas.
func TestNoRaceConcurrentCommandsOneGrain(t *testing.T) {
	_, _, nodes := startNodes(t, 3)
	waitTopology(t, nodes, 3)
	const callers, each = 30, 10
	type result struct {
		version uint64
		value   int64
	}
	results := make(chan result, callers*each)
	errs := make(chan error, callers*each)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v, err := add(t, nodes[c%len(nodes)].actors, "hot", 1)
				if err != nil {
					errs <- err
					return
				}
				results <- result{v.Version, v.Value}
				// A refused command decided between others of a batch is
				// refused, not answered as if it had succeeded.
				if v, err := add(t, nodes[(c+1)%len(nodes)].actors, "hot", 0); !errors.Is(err, entity.ErrRejected) {
					errs <- fmt.Errorf("add 0: got %v, %v; want a rejection", v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for r := range results {
		if seen[r.version] {
			t.Fatalf("version %d answered twice", r.version)
		}
		seen[r.version] = true
		if r.value != int64(r.version) {
			t.Fatalf("reply at version %d says value %d (not a committed state)", r.version, r.value)
		}
	}
	for v := uint64(1); v <= callers*each; v++ {
		if !seen[v] {
			t.Fatalf("no reply at version %d", v)
		}
	}
	if got := get(t, nodes[0].actors, "hot"); got.Value != callers*each {
		t.Fatalf("final value %d, want %d", got.Value, callers*each)
	}
}

// switchingSource hands out a stopped cluster first (a node's actor system
// being replaced in a rejoin), then the running one.
type switchingSource struct {
	calls      atomic.Int32
	stale, cur *pcluster.Cluster
}

func (s *switchingSource) Cluster() *pcluster.Cluster {
	if s.calls.Add(1) == 1 {
		return s.stale
	}
	return s.cur
}

// A call that began on an actor system the node has since stopped goes on
// through the node's current one (CallOn); Call, bound to the stopped one,
// fails at once as unavailable instead of asking through it until its
// deadline.
func TestNoRaceCallOnFollowsTheNodesCurrentCluster(t *testing.T) {
	_, _, nodes := startNodes(t, 1)
	waitTopology(t, nodes, 1)
	stopped := actor.NewActorSystem()
	stopped.Shutdown()
	stale := &pcluster.Cluster{ActorSystem: stopped}
	src := &switchingSource{stale: stale, cur: nodes[0].actors.Cluster}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := entity.CallOn(ctx, src, counter.Kind, "follow", &counter.Add{Delta: 3})
	if err != nil {
		t.Fatalf("CallOn: %v", err)
	}
	if v := res.(*counter.Value); v.Value != 3 || src.calls.Load() < 2 {
		t.Fatalf("CallOn: value %d after %d looks at the source, want 3 after at least 2", v.Value, src.calls.Load())
	}
	start := time.Now()
	_, err = entity.Call(ctx, stale, counter.Kind, "follow", &counter.Get{}, entity.Idempotent(time.Second))
	if !errors.Is(err, entity.ErrUnavailable) || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Call on a stopped actor system: %v, want unavailable (not running)", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Call on a stopped actor system waited %v, until the deadline", time.Since(start))
	}
}
