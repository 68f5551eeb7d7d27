package membership

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

func TestThreeNodesFormCluster(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	reg := prometheus.NewRegistry()
	n1 := h.start("n1", nil, func(c *Config, _ *Meta) { c.Registerer = reg })
	n2 := h.start("n2", []string{n1.Addr()})
	// n3 lists every node, itself included, as a shared seed list would.
	n3 := h.start("n3", []string{n1.Addr(), n2.Addr()}, func(_ *Config, m *Meta) {
		m.Kinds = []string{"session", "device"}
		m.RaftAddr, m.APIAddr, m.HTTPAddr, m.HasRaftState = "r3:1", "a3:2", "h3:3", true
	})
	nodes := []*Membership{n1, n2, n3}
	eventually(t, 5*time.Second, func() string { return allAlive(nodes, "n1", "n2", "n3") })

	for _, m := range nodes {
		for _, want := range nodes {
			got, _ := view(m, want.cfg.NodeID)
			local := want.LocalMember()
			if !got.Meta.Equal(local.Meta) || got.Addr != local.Addr {
				t.Errorf("%s sees %+v, want %+v", m.cfg.NodeID, got, local)
			}
			if got.Since.IsZero() {
				t.Errorf("%s: Since not set for %s", m.cfg.NodeID, got.NodeID)
			}
		}
		if len(m.Alive()) != 3 {
			t.Errorf("%s: Alive() = %d members", m.cfg.NodeID, len(m.Alive()))
		}
	}
	if got, _ := view(n1, "n3"); !got.HasRaftState || got.RaftAddr != "r3:1" || len(got.Kinds) != 2 {
		t.Errorf("n1 sees n3 meta %+v", got.Meta)
	}
	if l := n1.LocalMember(); l.NodeID != "n1" || l.State != Alive || l.ActorSystemID != "n1-1" {
		t.Errorf("LocalMember %+v", l)
	}
	ms := n2.Members()
	for i := 1; i < len(ms); i++ {
		if ms[i-1].NodeID >= ms[i].NodeID {
			t.Errorf("Members not sorted: %v then %v", ms[i-1].NodeID, ms[i].NodeID)
		}
	}
	// Members returns copies.
	ms[0].Kinds[0] = "changed"
	if got, _ := view(n2, ms[0].NodeID); got.Kinds[0] == "changed" {
		t.Error("Members shares Kinds with the internal map")
	}

	if v := gauge(t, reg, "switchboard_membership_members", "alive"); v != 3 {
		t.Errorf("members{state=alive} = %v", v)
	}
	if v := gauge(t, reg, "switchboard_membership_joins_total", ""); v != 2 {
		t.Errorf("joins_total = %v", v)
	}
	gauge(t, reg, "switchboard_membership_health_score", "") // present
}

// gauge returns the value of the metric with the given state label (or the
// only one) from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name, state string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := state == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "state" && lp.GetValue() == state {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("metric %s{state=%q} not found", name, state)
	return 0
}

func TestUpdateMetaPropagatesAndWatchFires(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil)
	n2 := h.start("n2", []string{n1.Addr()})
	n3 := h.start("n3", []string{n1.Addr()})
	nodes := []*Membership{n1, n2, n3}
	eventually(t, 5*time.Second, func() string { return allAlive(nodes, "n1", "n2", "n3") })

	w2, cancel2 := n2.Watch()
	defer cancel2()
	w3, cancel3 := n3.Watch()
	// Drain what formation left pending.
	drain := func(c <-chan struct{}) {
		select {
		case <-c:
		default:
		}
	}
	drain(w2)
	drain(w3)

	meta := n1.LocalMember().Meta
	meta.ActorSystemID = "n1-2"
	meta.HasRaftState = true
	meta.Kinds = []string{"session", "proxy"}
	if err := n1.UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	if l := n1.LocalMember(); !l.Meta.Equal(meta) {
		t.Errorf("LocalMember after UpdateMeta: %+v", l.Meta)
	}
	for _, m := range []*Membership{n2, n3} {
		eventually(t, 3*time.Second, func() string {
			return sees(m, "n1", Alive, func(mem Member) bool { return mem.Meta.Equal(meta) })
		})
	}
	for i, w := range []<-chan struct{}{w2, w3} {
		select {
		case <-w:
		case <-time.After(time.Second):
			t.Errorf("watch %d did not fire", i)
		}
	}
	// cancel closes the channel; a second cancel is harmless.
	cancel3()
	cancel3()
	if _, ok := <-w3; ok {
		t.Error("watch channel still open after cancel")
	}
	// A wrong NodeID and an oversize meta are refused.
	if err := n1.UpdateMeta(Meta{NodeID: "other"}); err == nil {
		t.Error("UpdateMeta accepted another node id")
	}
	big := meta
	big.Kinds = []string{strings.Repeat("k", 600)}
	if err := n1.UpdateMeta(big); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("oversize UpdateMeta: %v", err)
	}
}

func TestShutdownIsDeadLeaveIsLeft(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil)
	n2 := h.start("n2", []string{n1.Addr()})
	n3 := h.start("n3", []string{n1.Addr()})
	n4 := h.start("n4", []string{n1.Addr()})
	all := []*Membership{n1, n2, n3, n4}
	eventually(t, 5*time.Second, func() string { return allAlive(all, "n1", "n2", "n3", "n4") })

	start := time.Now()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n3.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	eventually(t, 3*time.Second, func() string {
		for _, m := range []*Membership{n1, n2, n4} {
			if msg := sees(m, "n3", Dead, nil); msg != "" {
				return msg
			}
		}
		return ""
	})
	t.Logf("killed node seen dead by all three others after %v (tuned timings, 4 nodes, -race)", time.Since(start).Round(time.Millisecond))
	if got := len(n1.Alive()); got != 3 {
		t.Errorf("n1 Alive() = %d after n3 died", got)
	}

	if err := n4.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n4.Leave(time.Second); err != nil { // a second call does nothing
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() string {
		for _, m := range []*Membership{n1, n2} {
			if msg := sees(m, "n4", Left, nil); msg != "" {
				return msg
			}
		}
		return ""
	})
	if l := n4.LocalMember(); l.State != Left {
		t.Errorf("n4 sees itself %v after Leave", l.State)
	}
	if err := n4.UpdateMeta(n4.LocalMember().Meta); !errors.Is(err, ErrLeft) {
		t.Errorf("UpdateMeta after Leave: %v", err)
	}
	// Still Dead (not Left) for n3, and both remain listed within DeadReap.
	if msg := sees(n1, "n3", Dead, nil); msg != "" {
		t.Error(msg)
	}
	w, _ := n4.Watch()
	if err := n4.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w; ok {
		t.Error("watch channel open after Shutdown")
	}
	if err := n4.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: %v", err)
	}
}

func TestDeadMembersAreReaped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil, func(c *Config, _ *Meta) { c.DeadReap = 300 * time.Millisecond })
	n2 := h.start("n2", []string{n1.Addr()})
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2}, "n1", "n2") })
	_ = n2.Shutdown()
	eventually(t, 3*time.Second, func() string { return sees(n1, "n2", Dead, nil) })
	eventually(t, 3*time.Second, func() string {
		if _, ok := view(n1, "n2"); ok {
			return "n2 still listed"
		}
		return ""
	})
}

func TestRestartSameNodeIDNewPort(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil)
	n2 := h.start("n2", []string{n1.Addr()})
	n3 := h.start("n3", []string{n1.Addr()})
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3}, "n1", "n2", "n3") })
	oldAddr := n3.Addr()

	// Crash and restart at once, on a new port with a new actor system.
	_ = n3.Shutdown()
	start := time.Now()
	n3b := h.start("n3", []string{n1.Addr()}, func(_ *Config, m *Meta) { m.ActorSystemID = "n3-2" })
	if n3b.Addr() == oldAddr {
		t.Fatalf("restarted on the same address %s", oldAddr)
	}
	for _, m := range []*Membership{n1, n2} {
		eventually(t, 5*time.Second, func() string {
			return sees(m, "n3", Alive, func(mem Member) bool { return mem.ActorSystemID == "n3-2" && mem.Addr == n3b.Addr() })
		})
	}
	t.Logf("node restarted on a new port alive again with its new meta after %v", time.Since(start).Round(time.Millisecond))
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3b}, "n1", "n2", "n3") })

	// And again on the same address (the usual case in production).
	addr := n3b.Addr()
	_ = n3b.Shutdown()
	start = time.Now()
	n3c := h.start("n3", []string{n1.Addr()}, func(c *Config, m *Meta) { c.BindAddr, m.ActorSystemID = addr, "n3-3" })
	for _, m := range []*Membership{n1, n2} {
		eventually(t, 5*time.Second, func() string {
			return sees(m, "n3", Alive, func(mem Member) bool { return mem.ActorSystemID == "n3-3" && mem.Addr == addr })
		})
	}
	t.Logf("node restarted on the same address alive with its new meta after %v", time.Since(start).Round(time.Millisecond))
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3c}, "n1", "n2", "n3") })
}

func TestEncryption(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key, _ := ParseSecretKey(GenerateSecretKey())
	other, _ := ParseSecretKey(GenerateSecretKey())
	withKey := func(k []byte) func(*Config, *Meta) { return func(c *Config, _ *Meta) { c.SecretKey = k } }
	n1 := h.start("n1", nil, withKey(key))
	n2 := h.start("n2", []string{n1.Addr()}, withKey(key))
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2}, "n1", "n2") })

	// Wrong key: Start succeeds (the seed may just be down) and keeps retrying.
	bad := h.start("bad", []string{n1.Addr()}, withKey(other))
	plain := h.start("plain", []string{n1.Addr()})
	time.Sleep(1500 * time.Millisecond) // several join retries and gossip rounds
	for _, m := range []*Membership{bad, plain} {
		if ms := m.Members(); len(ms) != 1 {
			t.Errorf("%s joined an encrypted cluster with the wrong key: %+v", m.cfg.NodeID, ms)
		}
	}
	for _, name := range []string{"bad", "plain"} {
		if _, ok := view(n1, name); ok {
			t.Errorf("n1 accepted %s", name)
		}
	}
	// Each refused node logged why, in words an operator can act on.
	for node, want := range map[string][]string{
		"bad":   {"no seed answered", "no installed keys could decrypt the message", "same gossip.secret_key"},
		"plain": {"no seed answered", "remote state is encrypted and encryption is not configured"},
	} {
		if line := logLine(h.logs.String(), append([]string{"node=" + node}, want...)...); line == "" {
			t.Errorf("no log line of %s with %q", node, want)
		}
	}
	if logLine(h.logs.String(), "node=plain", "gossip is not encrypted") == "" {
		t.Error("no warning for the unencrypted node")
	}
}

func TestStartInAnyOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Reserve a port for n1, which starts after n2 (seeded with it).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	n2 := h.start("n2", []string{addr})
	if len(n2.Members()) != 1 {
		t.Fatal("n2 joined nothing?")
	}
	time.Sleep(300 * time.Millisecond) // at least one failed retry
	n1 := h.start("n1", nil, func(c *Config, _ *Meta) { c.BindAddr = addr })
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2}, "n1", "n2") })

	// A second node on the same fixed address fails, naming it.
	cfg := testConfig("n3")
	cfg.BindAddr = addr
	cfg.Logger = h.logger()
	if _, err := Start(cfg, Meta{}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("bind conflict error: %v", err)
	}
}

// TestDeclaredDeadAfterPause cuts one node off the network long enough for
// the others to declare it dead, reconnects it, and checks that it learns it
// was declared dead (and the others do not think they were), that it is alive
// again in their view, and that a rejoin under a new actor-system id works.
func TestDeclaredDeadAfterPause(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil)
	n2 := h.start("n2", []string{n1.Addr()})
	var pt *PausableTransport
	n3 := h.start("n3", []string{n1.Addr()}, func(c *Config, _ *Meta) {
		inner, err := ListenGossip(c.BindAddr, c.Logger)
		if err != nil {
			t.Fatal(err)
		}
		pt = NewPausableTransport(inner)
		c.Transport = pt
	})
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3}, "n1", "n2", "n3") })
	dd1, dd2, dd3 := n1.DeclaredDead(), n2.DeclaredDead(), n3.DeclaredDead()
	select {
	case <-dd3:
		t.Fatal("DeclaredDead fired before the pause")
	default:
	}

	pt.Pause()
	start := time.Now()
	eventually(t, 5*time.Second, func() string {
		for _, m := range []*Membership{n1, n2} {
			if msg := sees(m, "n3", Dead, nil); msg != "" {
				return msg
			}
		}
		return ""
	})
	t.Logf("paused node declared dead after %v", time.Since(start).Round(time.Millisecond))
	// Stay cut off a while longer, as a real pause would: the paused node's
	// own death notices about the others (its failure detector kept running)
	// exhaust their retransmissions into the void. Resumed within ~300 ms of
	// declaring them, it would spread them and the others would really
	// declare each other dead (memberlist accepts a dead message from anyone).
	time.Sleep(time.Second)
	pt.Resume()
	start = time.Now()

	select {
	case <-dd3:
		t.Logf("paused node learned it was declared dead %v after resuming: %s", time.Since(start).Round(time.Millisecond),
			logLine(h.logs.String(), "node=n3", "declared dead: this node must"))
	case <-time.After(5 * time.Second):
		t.Fatal("DeclaredDead did not fire on the paused node")
	}
	for _, m := range []*Membership{n1, n2} {
		eventually(t, 5*time.Second, func() string { return sees(m, "n3", Alive, nil) })
	}
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3}, "n1", "n2", "n3") })

	// The consumer's reaction: a new actor system, announced with UpdateMeta.
	meta := n3.LocalMember().Meta
	meta.ActorSystemID = "n3-2"
	if err := n3.UpdateMeta(meta); err != nil && !errors.Is(err, ErrNotBroadcast) {
		t.Fatal(err)
	}
	select {
	case <-n3.DeclaredDead():
		t.Error("new life starts with DeclaredDead fired")
	default:
	}
	for _, m := range []*Membership{n1, n2} {
		eventually(t, 5*time.Second, func() string {
			return sees(m, "n3", Alive, func(mem Member) bool { return mem.ActorSystemID == "n3-2" })
		})
	}
	// The majority side was told nothing of the kind.
	for i, dd := range []<-chan struct{}{dd1, dd2} {
		select {
		case <-dd:
			t.Errorf("n%d (majority side) fired DeclaredDead", i+1)
		default:
		}
	}
	if n := n3.DeclaredDeadCount(); n != 1 {
		t.Errorf("DeclaredDeadCount = %d", n)
	}
}

// A peer whose metadata is garbage (another memberlist speaking our label,
// or a corrupt node) is listed with empty meta and does not break anything.
func TestPeerWithGarbageMeta(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n1 := h.start("n1", nil)
	mc := memberlist.DefaultLANConfig()
	mc.Name = "weird"
	mc.BindAddr, mc.BindPort = "127.0.0.1", 0
	mc.Label = gossipLabel
	mc.Delegate = garbageMeta{}
	mc.Logger = newStdLogger(h.logger(), logHooks{})
	mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ml.Shutdown() }()
	if _, err := ml.Join([]string{n1.Addr()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() string {
		return sees(n1, "weird", Alive, func(m Member) bool { return m.ActorSystemID == "" })
	})
	if !strings.Contains(h.logs.String(), "undecodable meta") {
		t.Error("garbage meta not logged")
	}
}

// logLine returns the first line of logs containing every string in want.
func logLine(logs string, want ...string) string {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, w := range want {
			all = all && strings.Contains(line, w)
		}
		if all {
			return line
		}
	}
	return ""
}

type garbageMeta struct{}

func (garbageMeta) NodeMeta(int) []byte             { return []byte{0xde, 0xad, 0xbe, 0xef} }
func (garbageMeta) NotifyMsg([]byte)                {}
func (garbageMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (garbageMeta) LocalState(bool) []byte          { return nil }
func (garbageMeta) MergeRemoteState([]byte, bool)   {}

// A member whose process is gone (its gossip port refuses connections) stops
// being routable as soon as it is suspect, well before the failure detector
// declares it dead; a member that is merely slow stays routable.
func TestKilledMemberIsUnroutableWhileStillSuspect(t *testing.T) {
	h := newHarness(t)
	slowSuspicion := func(c *Config, _ *Meta) { c.SuspicionMult = 8 } // ≈1.6 s from suspect to dead
	n1 := h.start("n1", nil, slowSuspicion)
	n2 := h.start("n2", []string{n1.Addr()}, slowSuspicion)
	n3 := h.start("n3", []string{n1.Addr()}, slowSuspicion)
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3}, "n1", "n2", "n3") })
	if got := len(n1.Routable()); got != 3 {
		t.Fatalf("n1 routes to %d members, want 3", got)
	}
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	routable := func(m *Membership, id string) bool {
		return slices.ContainsFunc(m.Routable(), func(x Member) bool { return x.NodeID == id })
	}
	sawUnroutableSuspect := false
	eventually(t, 5*time.Second, func() string {
		i := slices.IndexFunc(n1.Members(), func(x Member) bool { return x.NodeID == "n3" })
		ok := i >= 0
		var mem Member
		if ok {
			mem = n1.Members()[i]
		}
		if ok && mem.State == Suspect && !routable(n1, "n3") {
			sawUnroutableSuspect = true
		}
		if ok && mem.State == Dead {
			return ""
		}
		return "n3 not dead yet"
	})
	if !sawUnroutableSuspect {
		t.Fatal("n3 stayed routable for as long as it was suspect")
	}
	if routable(n1, "n3") || !routable(n1, "n2") {
		t.Fatalf("routable after n3 died: %+v", n1.Routable())
	}
}

// A broken connection to a member's actor system (CheckActorAddress) makes a
// member whose process is gone unroutable at once, long before the failure
// detector would even suspect it; a live member stays routable.
func TestCheckActorAddressExcludesAGoneMemberAtOnce(t *testing.T) {
	h := newHarness(t)
	slowProbes := func(c *Config, _ *Meta) { c.ProbeInterval, c.ProbeTimeout = 10*time.Second, 5*time.Second }
	withActor := func(port int) func(*Config, *Meta) {
		return func(c *Config, m *Meta) { slowProbes(c, m); m.ActorHost, m.ActorPort = "127.0.0.1", port }
	}
	n1 := h.start("n1", nil, slowProbes)
	n2 := h.start("n2", []string{n1.Addr()}, withActor(23001))
	n3 := h.start("n3", []string{n1.Addr()}, withActor(23002))
	eventually(t, 5*time.Second, func() string { return allAlive([]*Membership{n1, n2, n3}, "n1", "n2", "n3") })
	routable := func(id string) bool {
		return slices.ContainsFunc(n1.Routable(), func(x Member) bool { return x.NodeID == id })
	}
	n1.CheckActorAddress("127.0.0.1:23001") // n2 is alive: its gossip port accepts
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n1.CheckActorAddress("127.0.0.1:23002")
	eventually(t, 2*time.Second, func() string {
		if routable("n3") {
			return "n3 still routable"
		}
		return ""
	})
	if took := time.Since(start); took > time.Second {
		t.Fatalf("n3 left the grain topology after %v", took)
	}
	if !routable("n2") {
		t.Fatal("a live member was excluded")
	}
}
