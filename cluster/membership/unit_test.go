package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	in := Meta{
		NodeID: "n1", ActorSystemID: "as-123", ActorHost: "10.0.0.1", ActorPort: 8090,
		Kinds: []string{"session", "device"}, RaftAddr: "10.0.0.1:7000", APIAddr: "10.0.0.1:7001",
		HTTPAddr: "10.0.0.1:8080", Version: "v1.2.3", HasRaftState: true,
	}
	b, err := EncodeMeta(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Equal(in) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	t.Logf("full meta encodes to %d bytes: %s", len(b), b)

	// Empty fields are omitted; an empty Meta decodes back equal.
	b, _ = EncodeMeta(Meta{NodeID: "x"})
	if string(b) != `{"id":"x"}` {
		t.Errorf("minimal meta encodes to %s", b)
	}
	// Unknown keys (a newer peer) are ignored.
	out, err = DecodeMeta([]byte(`{"id":"y","new_field":[1,2],"v":"v9"}`))
	if err != nil || out.NodeID != "y" || out.Version != "v9" {
		t.Errorf("forward compatibility: %+v, %v", out, err)
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := Meta{NodeID: "n1"}
	for i := range 60 {
		m.Kinds = append(m.Kinds, "kind-with-a-long-name-"+string(rune('a'+i%26)))
	}
	_, err := EncodeMeta(m)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("got %v, want ErrMetaTooLarge", err)
	}
	if !strings.Contains(err.Error(), "60 grain kinds") || !strings.Contains(err.Error(), `"n1"`) {
		t.Errorf("error does not explain itself: %v", err)
	}
	// The largest accepted meta still fits memberlist's limit with the leave flag.
	m.Kinds = []string{strings.Repeat("k", MaxMetaSize-len(`{"id":"n1","k":[""]}`))}
	b, err := EncodeMeta(m)
	if err != nil || len(b) != MaxMetaSize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if l := withLeaving(b); len(l) != memberlist.MetaMaxSize {
		t.Fatalf("with leave flag: %d bytes", len(l))
	} else if got, leaving, err := decodeMeta(l); err != nil || !leaving || got.NodeID != "n1" {
		t.Fatalf("decode with leave flag: %+v %v %v", got, leaving, err)
	}
	m.Kinds[0] += "k"
	if _, err := EncodeMeta(m); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("one byte over: %v", err)
	}
	// Start refuses it too, before binding anything.
	cfg := testConfig("n1")
	if _, err := Start(cfg, m); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("Start: %v", err)
	}
}

func TestDecodeGarbageNeverPanics(t *testing.T) {
	inputs := [][]byte{nil, {}, []byte("null"), []byte("{"), []byte(`{"id":5}`), []byte(`{"k":"notalist"}`),
		[]byte(`[1,2,3]`), bytes.Repeat([]byte{0xff}, 600), []byte(`{"ap":1e400}`)}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(64))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		if _, err := DecodeMeta(in); err == nil && len(in) > 0 && in[0] != '{' && string(in) != "null" {
			t.Errorf("DecodeMeta(%q) accepted garbage", in)
		}
	}
	// A peer with garbage meta is kept, with only its name.
	m, logs := bareMembership(t, "self")
	m.upsert(&memberlist.Node{Name: "peer", Addr: []byte{127, 0, 0, 1}, Port: 9, Meta: []byte("\x00garbage")}, true)
	got := m.Members()
	if len(got) != 1 || got[0].NodeID != "peer" || got[0].State != Alive || got[0].ActorSystemID != "" {
		t.Fatalf("members after garbage meta: %+v", got)
	}
	if !strings.Contains(logs.String(), "undecodable meta") {
		t.Errorf("garbage meta not logged:\n%s", logs)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	if err := testConfig("ok").Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	d := DefaultConfig()
	d.NodeID = "n1"
	if err := d.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	bad := Config{
		BindAddr:       "localhost:99999",
		AdvertiseAddr:  "example.com",
		Join:           []string{"ok:1", "no-port"},
		SecretKey:      []byte("short"),
		ProbeInterval:  100 * time.Millisecond,
		ProbeTimeout:   200 * time.Millisecond,
		SuspicionMult:  0,
		RetransmitMult: 0,
		IndirectChecks: -1,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"node_id", "gossip.bind_addr", "gossip.advertise_addr", "gossip.join[1]",
		"gossip.secret_key", "gossip.probe_timeout", "gossip.gossip_interval", "gossip.tcp_timeout",
		"gossip.suspicion_mult", "gossip.retransmit_mult", "gossip.indirect_checks",
		"gossip.join_retry_interval", "gossip.dead_reap", "gossip.rejoin_grace"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "gossip.join[0]") {
		t.Errorf("valid seed reported:\n%v", err)
	}
	t.Logf("%v", err)
}

func TestParseSecretKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		k := strings.Repeat("k", n)
		got, err := ParseSecretKey(" " + b64(k) + "\n")
		if err != nil || string(got) != k {
			t.Errorf("%d bytes: %q, %v", n, got, err)
		}
	}
	for in, want := range map[string]string{
		"":                       "empty",
		"not base64!!":           "not standard base64",
		b64("12345"):             "decodes to 5 bytes",
		b64("17 bytes!!!!!!!!!"): "decodes to 17 bytes",
	} {
		if _, err := ParseSecretKey(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSecretKey(%q) = %v, want error containing %q", in, err, want)
		}
	}
	k1, k2 := GenerateSecretKey(), GenerateSecretKey()
	if k1 == k2 {
		t.Error("two generated keys are equal")
	}
	if b, err := ParseSecretKey(k1); err != nil || len(b) != 32 {
		t.Errorf("generated key: %d bytes, %v", len(b), err)
	}
}

func TestLogWriterLevelsAndRefuteDetection(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var accusers []string
	var suspects []string
	std := newStdLogger(l, logHooks{
		refuteDead: func(from string) { accusers = append(accusers, from) },
		suspect:    func(member string) { suspects = append(suspects, member) },
	})
	std.Printf("[DEBUG] memberlist: Stream connection from=%s", "1.2.3.4:5")
	std.Printf("[INFO] memberlist: Marking n2 as failed, suspect timeout reached (0 peer confirmations)")
	std.Printf("[WARN] memberlist: Refuting a dead message (from: %s)", "n3")
	std.Printf("[ERR] memberlist: Push/Pull with n2 failed: EOF")
	std.Printf("no prefix at all")
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="Stream connection from=1.2.3.4:5" source=memberlist`,
		`level=INFO msg="Marking n2 as failed`,
		`level=WARN msg="Refuting a dead message (from: n3)"`,
		`level=ERROR msg="Push/Pull with n2 failed: EOF"`,
		`level=INFO msg="no prefix at all"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	std.Printf("[INFO] memberlist: Suspect %s has failed, no acks received", "n4")
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: %s)", "n5")
	if len(accusers) != 1 || accusers[0] != "n3" {
		t.Errorf("refute detection: %v", accusers)
	}
	if len(suspects) != 1 || suspects[0] != "n4" {
		t.Errorf("suspect detection: %v", suspects)
	}
}

func TestPauseDetector(t *testing.T) {
	p := pauseDetector{threshold: 600 * time.Millisecond}
	t0 := time.Now()
	if _, paused := p.observe(t0); paused {
		t.Fatal("first observation reported a pause")
	}
	now := t0
	for range 20 { // regular ticks
		now = now.Add(watchdogTick)
		if gap, paused := p.observe(now); paused || gap != watchdogTick {
			t.Fatalf("regular tick: gap %v paused %v", gap, paused)
		}
	}
	now = now.Add(600 * time.Millisecond) // exactly the threshold: not a pause
	if _, paused := p.observe(now); paused {
		t.Error("gap equal to the threshold reported")
	}
	now = now.Add(2 * time.Second) // SIGSTOP for 2 s
	if gap, paused := p.observe(now); !paused || gap != 2*time.Second {
		t.Errorf("2 s gap: gap %v paused %v", gap, paused)
	}
	now = now.Add(watchdogTick)
	if _, paused := p.observe(now); paused {
		t.Error("tick after the pause reported again")
	}

	// The threshold is derived from the timings.
	c := DefaultConfig()
	if got := c.PauseThreshold(); got != 600*time.Millisecond {
		t.Errorf("default PauseThreshold %v", got)
	}
}

func TestWatchdogFiresDeclaredDead(t *testing.T) {
	m, _ := bareMembership(t, "self")
	stop := make(chan struct{})
	done := make(chan struct{})
	// A threshold below one tick makes every tick a "pause".
	go func() { defer close(done); runWatchdog(time.Nanosecond, stop, m.onPause) }()
	select {
	case <-m.DeclaredDead():
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog did not fire")
	}
	close(stop)
	<-done
	if n := m.DeclaredDeadCount(); n != 1 {
		t.Errorf("fired %d times in one life", n)
	}
}

// TestDeclaredDeadDecisions drives the accusation and backstop logic directly.
func TestDeclaredDeadDecisions(t *testing.T) {
	const asid = "life-1"
	node := func(name string, st memberlist.NodeStateType, asid string) *memberlist.Node {
		b, _ := EncodeMeta(Meta{NodeID: name, ActorSystemID: asid})
		return &memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 1, State: st, Meta: b}
	}
	// setup: self "p" (joined, life-1) plus the given alive peers.
	setup := func(t *testing.T, peers ...string) *Membership {
		m, _ := bareMembership(t, "p")
		m.local.ActorSystemID = asid
		m.joined = true
		m.upsert(node("p", memberlist.StateAlive, asid), true)
		for _, n := range peers {
			m.upsert(node(n, memberlist.StateAlive, "as-"+n), true)
		}
		return m
	}
	fired := func(m *Membership) bool {
		select {
		case <-m.DeclaredDead():
			return true
		default:
			return false
		}
	}
	noticeFrom := func(from, asid string) []byte {
		b, _ := json.Marshal(wireNotice{From: from, ASID: asid})
		return append([]byte{noticeMagic}, b...)
	}

	t.Run("accused by the only peer", func(t *testing.T) {
		m := setup(t, "a")
		m.onRefuteDead("a")
		if !fired(m) {
			t.Fatal("not fired")
		}
	})
	t.Run("accused by a strict majority of four peers", func(t *testing.T) {
		m := setup(t, "a", "b", "c", "d")
		m.onRefuteDead("a")
		m.onNotifyMsg(noticeFrom("b", asid))
		m.onNotifyMsg(noticeFrom("b", asid)) // counted once
		if fired(m) {
			t.Fatal("fired with 2 of 4")
		}
		m.onNotifyMsg(noticeFrom("c", asid))
		if !fired(m) {
			t.Fatal("not fired with 3 of 4")
		}
	})
	t.Run("isolated node: a peer it declared dead still counts", func(t *testing.T) {
		m := setup(t, "a", "b")
		m.down(node("a", memberlist.StateDead, "as-a"), false) // we declared a dead meanwhile
		m.onNotifyMsg(noticeFrom("a", asid))
		if fired(m) { // 1 of {a, b}
			t.Fatal("fired with 1 of 2")
		}
		m.onNotifyMsg(noticeFrom("b", asid))
		if !fired(m) {
			t.Fatal("not fired with 2 of 2")
		}
	})
	t.Run("refute before the first join is about a previous run", func(t *testing.T) {
		m := setup(t, "a")
		m.joined = false
		m.onRefuteDead("a")
		if fired(m) || len(m.accusers) != 0 {
			t.Fatal("counted")
		}
	})
	t.Run("notice about a previous life is ignored", func(t *testing.T) {
		m := setup(t, "a")
		m.onNotifyMsg(noticeFrom("a", "life-0"))
		if fired(m) {
			t.Fatal("fired")
		}
	})
	t.Run("garbage user messages are ignored", func(t *testing.T) {
		m := setup(t, "a")
		for _, b := range [][]byte{nil, {noticeMagic}, {noticeMagic, '{'}, []byte("hello"), {noticeMagic, 0xff, 0}} {
			m.onNotifyMsg(b)
		}
		if fired(m) {
			t.Fatal("fired")
		}
	})
	t.Run("majority node: accused by the isolated one only", func(t *testing.T) {
		m := setup(t, "a", "b")
		m.down(node("b", memberlist.StateDead, "as-b"), false) // b was cut off; we declared it dead
		m.onRefuteDead("b")                                    // its dead message about us arrives
		m.upsert(node("b", memberlist.StateAlive, "as-b"), true)
		if fired(m) {
			t.Fatal("fired on the majority side")
		}
		// We told b (it came back under the life we declared dead).
		select {
		case n := <-m.notices:
			if n.to != "b" || n.asid != "as-b" {
				t.Errorf("notice %+v", n)
			}
		default:
			t.Error("no notice queued for b")
		}
		// b rejoins under a new actor-system id: its grudge and ours are gone.
		m.upsert(node("b", memberlist.StateAlive, "as-b2"), false)
		m.mu.Lock()
		m.checkBlockedPeersLocked(time.Now().Add(time.Hour))
		m.mu.Unlock()
		if fired(m) || len(m.accusers) != 0 {
			t.Fatal("fired or still accused after b rejoined")
		}
	})
	t.Run("backstop: a peer we declared dead does not rejoin", func(t *testing.T) {
		m := setup(t, "a", "b")
		m.down(node("b", memberlist.StateDead, "as-b"), false)
		m.upsert(node("b", memberlist.StateAlive, "as-b"), true)
		check := func(after time.Duration) {
			m.mu.Lock()
			m.checkBlockedPeersLocked(time.Now().Add(after))
			m.mu.Unlock()
		}
		check(m.cfg.RejoinGrace / 2)
		if fired(m) {
			t.Fatal("fired within the grace period")
		}
		check(m.cfg.RejoinGrace + time.Second)
		if !fired(m) {
			t.Fatal("backstop did not fire")
		}
	})
	t.Run("fires once per life; a new actor-system id re-arms", func(t *testing.T) {
		m := setup(t, "a")
		m.onRefuteDead("a")
		first := m.DeclaredDead()
		m.mu.Lock()
		m.declareDeadLocked("watchdog")
		m.mu.Unlock()
		if m.DeclaredDeadCount() != 1 || m.DeclaredDead() != first {
			t.Fatal("fired twice in one life")
		}
		// What UpdateMeta does on a new actor-system id (without memberlist).
		m.mu.Lock()
		m.newLifeLocked()
		m.local.ActorSystemID = "life-2"
		m.mu.Unlock()
		if fired(m) {
			t.Fatal("new life starts fired")
		}
		m.onNotifyMsg(noticeFrom("a", asid)) // stale: about life-1
		if fired(m) {
			t.Fatal("fired for the previous life")
		}
		m.onNotifyMsg(noticeFrom("a", "life-2"))
		if !fired(m) || m.DeclaredDeadCount() != 2 {
			t.Fatal("second life not signalled")
		}
	})
}

// bareMembership is a Membership without memberlist, for driving the
// delegates directly. Its logs go to the returned buffer.
func bareMembership(t *testing.T, name string) (*Membership, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	m := &Membership{
		cfg:      testConfig(name),
		log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		members:  map[string]*entry{},
		watchers: map[uint64]chan struct{}{},
		local:    Meta{NodeID: name},
		life:     life{ch: make(chan struct{})},
		accusers: map[string]string{},
		notices:  make(chan notice, 64),
	}
	m.met = newMetrics(nil, m)
	return m, logs
}
