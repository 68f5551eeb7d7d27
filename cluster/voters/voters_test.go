package voters_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/cluster/voters"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

// quietLogger logs nothing (everything with SWITCHBOARD_TEST_LOG=debug).
func quietLogger() *slog.Logger {
	lv := slog.LevelError + 4
	if os.Getenv("SWITCHBOARD_TEST_LOG") == "debug" {
		lv = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

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

// holds checks cond every 10 ms until the time until, failing at the first
// check where it does not hold.
func holds(t *testing.T, until time.Time, what string, cond func() bool) {
	t.Helper()
	for time.Now().Before(until) {
		if !cond() {
			t.Fatalf("%s: no longer holds", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeMember is the membership layer's view of one node, set by the test.
type fakeMember struct {
	visible bool
	alive   bool
	since   time.Time
	apiAddr string // "" = the node's own
}

// harness runs reconcilers over a local cluster and a fake member list.
type harness struct {
	t *testing.T
	c *localcluster.Cluster

	mu      sync.Mutex
	view    map[string]*fakeMember
	changed []chan struct{}
	stops   map[string]func()
	regs    map[string]*prometheus.Registry
}

func newHarness(t *testing.T, n int, bootstrap bool) *harness {
	t.Helper()
	c, err := localcluster.Start(t.TempDir(), n, localcluster.Options{Logger: quietLogger(), NoBootstrap: !bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &harness{t: t, c: c, view: map[string]*fakeMember{}, stops: map[string]func(){}, regs: map[string]*prometheus.Registry{}}
	for _, m := range c.Members() {
		h.view[m.ID] = &fakeMember{visible: true, alive: true, since: time.Now()}
	}
	return h
}

func testConfig() voters.Config {
	cfg := voters.DefaultConfig()
	cfg.Interval = 50 * time.Millisecond
	cfg.StabilizationTime = 300 * time.Millisecond
	cfg.StatusTimeout = time.Second
	cfg.Logger = quietLogger()
	return cfg
}

// members is the reconcilers' member list.
func (h *harness) members() []voters.Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []voters.Member
	for _, m := range h.c.Members() {
		v, ok := h.view[m.ID]
		if !ok || !v.visible {
			continue
		}
		api := m.APIAddr
		if v.apiAddr != "" {
			api = v.apiAddr
		}
		n := m.Node()
		out = append(out, voters.Member{
			ID: m.ID, RaftAddr: m.RaftAddr, APIAddr: api,
			Alive: v.alive, Since: v.since, HasRaftState: n != nil && n.HasState(),
		})
	}
	return out
}

// set changes the view of member id and signals every reconciler.
func (h *harness) set(id string, f func(*fakeMember)) {
	h.mu.Lock()
	v, ok := h.view[id]
	if !ok {
		v = &fakeMember{}
		h.view[id] = v
	}
	was := v.alive
	f(v)
	if v.alive != was {
		v.since = time.Now()
	}
	chans := append([]chan struct{}(nil), h.changed...)
	h.mu.Unlock()
	for _, ch := range chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (h *harness) setAlive(id string, alive bool) time.Time {
	var since time.Time
	h.set(id, func(v *fakeMember) { v.visible = true; v.alive = alive })
	h.mu.Lock()
	since = h.view[id].since
	h.mu.Unlock()
	return since
}

// run starts a reconciler for member id; it stops before the cluster
// closes.
func (h *harness) run(id string, cfg voters.Config) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	ch := make(chan struct{}, 1)
	r, err := voters.New(cfg, h.c.Member(id).Node(), h.members, ch)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.t.Errorf("reconciler of %s did not stop", id)
		}
	})
	h.mu.Lock()
	h.changed = append(h.changed, ch)
	h.stops[id] = stop
	h.regs[id] = reg
	h.mu.Unlock()
	h.t.Cleanup(stop)
}

func (h *harness) stop(id string) {
	h.mu.Lock()
	stop := h.stops[id]
	h.mu.Unlock()
	stop()
}

// counter returns a counter of member id's reconciler.
func (h *harness) counter(id, name string) float64 {
	h.t.Helper()
	h.mu.Lock()
	reg := h.regs[id]
	h.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	h.t.Fatalf("no metric %s", name)
	return 0
}

// config returns member id's view of the configuration (id -> suffrage).
func (h *harness) config(id string) map[string]raft.ServerSuffrage {
	h.t.Helper()
	cfg, err := h.c.Member(id).Node().Configuration()
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]raft.ServerSuffrage{}
	for _, s := range cfg.Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

func (h *harness) leader() *localcluster.Member {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := h.c.Leader(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

func (h *harness) followers() []*localcluster.Member {
	l := h.leader()
	var out []*localcluster.Member
	for _, m := range h.c.Members() {
		if m != l && m.Node() != nil {
			out = append(out, m)
		}
	}
	return out
}

// appendOn appends one event on every running member (followers forward).
func (h *harness) appendOn(stream string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range h.c.Members() {
		if n := m.Node(); n != nil {
			if _, err := n.Append(ctx, events.AppendArgs(stream, events.Any(), events.Event{Type: "t", Data: []byte(m.ID)})); err != nil {
				h.t.Fatalf("append on %s: %v", m.ID, err)
			}
		}
	}
}

func voterSet(cfg map[string]raft.ServerSuffrage) string {
	var v, nv []string
	for _, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
		switch s, ok := cfg[id]; {
		case ok && s == raft.Voter:
			v = append(v, id)
		case ok:
			nv = append(nv, id)
		}
	}
	return fmt.Sprintf("voters=%s nonvoters=%s", strings.Join(v, ","), strings.Join(nv, ","))
}

// bootstrap_expect: three nodes without a Bootstrap list form exactly one
// three-voter cluster once all three are seen (not before); a fourth node
// without state joining later is added as a non-voter, then promoted, and
// never bootstraps on its own.
func TestBootstrapExpectThenJoin(t *testing.T) {
	h := newHarness(t, 3, false)
	h.set("n3", func(v *fakeMember) { v.visible = false })
	cfg := testConfig()
	cfg.BootstrapExpect = 3
	for _, m := range h.c.Members() {
		h.run(m.ID, cfg)
	}
	holds(t, time.Now().Add(time.Second), "no node has raft state while 2 of 3 expected members are seen", func() bool {
		for _, m := range h.c.Members() {
			if m.Node().HasState() {
				return false
			}
		}
		return true
	})
	h.setAlive("n3", true)
	want := "voters=n1,n2,n3 nonvoters="
	eventually(t, 20*time.Second, "one three-voter cluster forms", func() bool {
		for _, m := range h.c.Members() {
			if voterSet(h.config(m.ID)) != want {
				return false
			}
		}
		return true
	})
	l := h.leader() // all three agree on one leader: one cluster
	h.appendOn("before-join")

	m4, err := h.c.Add()
	if err != nil {
		t.Fatal(err)
	}
	h.setAlive(m4.ID, true)
	h.run(m4.ID, cfg)
	var seen []string // n4's suffrage as the leader's configuration changes
	eventually(t, 20*time.Second, "n4 becomes a voter", func() bool {
		s, ok := h.config(l.ID)[m4.ID]
		if !ok {
			return false
		}
		if len(seen) == 0 || seen[len(seen)-1] != s.String() {
			seen = append(seen, s.String())
		}
		return s == raft.Voter
	})
	if strings.Join(seen, ",") != "Nonvoter,Voter" {
		t.Fatalf("n4 went through %v, want Nonvoter then Voter", seen)
	}
	eventually(t, 10*time.Second, "every node lists four voters", func() bool {
		for _, m := range h.c.Members() {
			if voterSet(h.config(m.ID)) != "voters=n1,n2,n3,n4 nonvoters=" {
				return false
			}
		}
		return true
	})
	h.appendOn("after-join")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evs, err := m4.Node().ReadStream(ctx, "before-join", 1, 100, true)
	if err != nil || len(evs) != 3 {
		t.Fatalf("n4 reads %d events of before-join (err %v), want 3", len(evs), err)
	}
	eventually(t, 5*time.Second, "one promotion counted", func() bool {
		var n float64
		for _, m := range h.c.Members() {
			n += h.counter(m.ID, "switchboard_voters_promotions_total")
		}
		return n == 1
	})
	if got := h.counter(m4.ID, "switchboard_voters_bootstraps_total"); got != 0 {
		t.Fatalf("n4 bootstrapped %v times, want 0", got)
	}
	var boots float64
	for _, id := range []string{"n1", "n2", "n3"} {
		boots += h.counter(id, "switchboard_voters_bootstraps_total")
	}
	if boots < 1 || boots > 3 {
		t.Fatalf("%v bootstraps among n1..n3", boots)
	}
}

// A voter whose member is not alive stays in the configuration during the
// grace and is removed after it; the others go on.
func TestDeadVoterRemovedAfterGrace(t *testing.T) {
	h := newHarness(t, 3, true)
	cfg := testConfig()
	cfg.DeadServerGrace = 2 * time.Second
	for _, m := range h.c.Members() {
		h.run(m.ID, cfg)
	}
	h.appendOn("before")
	victim := h.followers()[0].ID
	h.stop(victim)
	if err := h.c.Stop(victim); err != nil {
		t.Fatal(err)
	}
	dead := h.setAlive(victim, false)
	running := h.followers()
	running = append(running, h.leader())
	holds(t, dead.Add(cfg.DeadServerGrace-500*time.Millisecond), victim+" is still a voter during the grace", func() bool {
		for _, m := range running {
			if h.config(m.ID)[victim] != raft.Voter {
				return false
			}
		}
		return true
	})
	eventually(t, 15*time.Second, victim+" is removed after the grace", func() bool {
		for _, m := range running {
			if _, ok := h.config(m.ID)[victim]; ok {
				return false
			}
		}
		return true
	})
	if since := time.Since(dead); since < cfg.DeadServerGrace {
		t.Fatalf("removed %v after the member died, before the %v grace", since, cfg.DeadServerGrace)
	}
	// The counter moves once the change committed, just after the
	// configuration shows it.
	eventually(t, 5*time.Second, "one removal counted", func() bool {
		var n float64
		for _, m := range running {
			n += h.counter(m.ID, "switchboard_voters_removals_total")
		}
		return n == 1
	})
	h.appendOn("after")
}

// Dead voters are not removed while the alive voters are not a majority;
// once they are, the dead one goes.
func TestNoRemovalWithoutMajority(t *testing.T) {
	h := newHarness(t, 3, true)
	cfg := testConfig()
	cfg.DeadServerGrace = 200 * time.Millisecond
	for _, m := range h.c.Members() {
		h.run(m.ID, cfg)
	}
	l := h.leader()
	fs := h.followers()
	// Both followers look dead to the failure detector (they still run, so
	// a removal could commit: only the rule holds it back).
	h.setAlive(fs[0].ID, false)
	h.setAlive(fs[1].ID, false)
	holds(t, time.Now().Add(1500*time.Millisecond), "all three stay voters without an alive majority", func() bool {
		return voterSet(h.config(l.ID)) == "voters=n1,n2,n3 nonvoters="
	})
	h.setAlive(fs[1].ID, true)
	eventually(t, 10*time.Second, fs[0].ID+" is removed once two of three voters are alive", func() bool {
		c := h.config(l.ID)
		_, still := c[fs[0].ID]
		return !still && c[fs[1].ID] == raft.Voter && c[l.ID] == raft.Voter && len(c) == 2
	})
	h.stop(fs[0].ID)
	if err := h.c.Stop(fs[0].ID); err != nil {
		t.Fatal(err)
	}
	h.appendOn("after")
}

// lagProxy serves Status for a node, reporting applied index 0 while lag is
// set: the reconciler then sees the node as lagging.
type lagProxy struct {
	eventspb.UnimplementedLogServer
	node *events.Node
	lag  atomic.Bool
}

func (p *lagProxy) Status(context.Context, *eventspb.StatusRequest) (*eventspb.StatusResponse, error) {
	st := proto.Clone(p.node.Status()).(*eventspb.StatusResponse)
	if p.lag.Load() {
		st.AppliedIndex = 0
	}
	return st, nil
}

// A non-voter whose status shows it lagging stays a non-voter, however long;
// once it reports being caught up it is promoted.
func TestLaggingNonvoterNotPromoted(t *testing.T) {
	h := newHarness(t, 3, true)
	cfg := testConfig()
	cfg.MaxLag = 4
	for _, m := range h.c.Members() {
		h.run(m.ID, cfg)
	}
	l := h.leader()
	for i := 0; i < 4; i++ {
		h.appendOn(fmt.Sprintf("s%d", i))
	}
	m4, err := h.c.Add()
	if err != nil {
		t.Fatal(err)
	}
	p := &lagProxy{node: m4.Node()}
	p.lag.Store(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	eventspb.RegisterLogServer(gs, p)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	h.set(m4.ID, func(v *fakeMember) { v.visible, v.alive, v.apiAddr = true, true, lis.Addr().String() })
	h.run(m4.ID, cfg)

	eventually(t, 10*time.Second, "n4 is added as a non-voter", func() bool {
		s, ok := h.config(l.ID)[m4.ID]
		return ok && s == raft.Nonvoter
	})
	eventually(t, 10*time.Second, "n4 really catches up", func() bool {
		return m4.Node().FSM().AppliedIndex()+cfg.MaxLag >= l.Node().Raft().CommitIndex()
	})
	holds(t, time.Now().Add(5*cfg.StabilizationTime), "n4 stays a non-voter while its status lags", func() bool {
		return h.config(l.ID)[m4.ID] == raft.Nonvoter
	})
	p.lag.Store(false)
	eventually(t, 10*time.Second, "n4 is promoted once caught up", func() bool {
		return h.config(l.ID)[m4.ID] == raft.Voter
	})
	h.appendOn("after")
}

// Validate names every bad key at once; New refuses a missing node.
func TestConfigValidate(t *testing.T) {
	if err := voters.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := voters.Config{BootstrapExpect: -1, StabilizationTime: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("zero config accepted")
	}
	for _, key := range []string{"bootstrap_expect", "dead_server_grace", "stabilization_time", "interval", "status_timeout"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if _, err := voters.New(voters.DefaultConfig(), nil, nil, nil); err == nil || !strings.Contains(err.Error(), "node") || !strings.Contains(err.Error(), "members") {
		t.Fatalf("New without node and members: %v", err)
	}
}
