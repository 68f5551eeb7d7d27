package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/linear"
)

// The harness must be able to fail: each test below injects one bug a
// broken cluster could produce into otherwise correct data and checks that
// the checker names it — and passes the correct data.

func stream(payloads ...string) []Event {
	out := make([]Event, len(payloads))
	for i, p := range payloads {
		out[i] = Event{Version: uint64(i + 1), Payload: p}
	}
	return out
}

func TestAppendsCatchesLostDuplicatedAndGaps(t *testing.T) {
	acked := []Ack{{"s1", 1, "a"}, {"s1", 2, "b"}, {"s1", 3, "c"}, {"s2", 1, "x"}}
	good := func() map[string][]Event {
		return map[string][]Event{"s1": stream("a", "b", "c", "d"), "s2": stream("x")}
	}
	final := map[string]map[string][]Event{"n1": good(), "n2": good(), "n3": good()}
	if v := Appends(acked, final); len(v) != 0 {
		t.Fatalf("correct state reported: %v", v)
	}

	// A node lost the newest acknowledged append (acked before commit).
	lost := good()
	lost["s1"] = stream("a", "b")
	final["n2"] = lost
	v := Appends(acked, final)
	if len(v) != 1 || !strings.Contains(v[0].What, "n2: acknowledged append c (s1 v3) is missing") {
		t.Fatalf("lost append: %v", v)
	}

	// Another one holds something else at the acknowledged version, and a
	// payload twice (a retried append written again).
	final["n2"] = good()
	dup := good()
	dup["s1"] = stream("a", "b", "b", "c")
	final["n3"] = dup
	v = Appends(acked, final)
	want := []string{"n3: s1 holds payload b twice", "n3: acknowledged append c (s1 v3) is missing: v3 holds b"}
	if len(v) != len(want) {
		t.Fatalf("duplicate: got %v, want %v", v, want)
	}
	for i, w := range want {
		if !strings.Contains(v[i].What, w) {
			t.Errorf("violation %d: %q, want it to contain %q", i, v[i].What, w)
		}
		if v[i].Check != AppendsName {
			t.Errorf("violation %d: check %q", i, v[i].Check)
		}
	}

	// A version gap.
	gap := good()
	gap["s2"] = []Event{{Version: 1, Payload: "x"}, {Version: 3, Payload: "y"}}
	final["n3"] = gap
	v = Appends(acked, final)
	if len(v) != 1 || !strings.Contains(v[0].What, "n3: s2 holds version 3 at position 2") {
		t.Fatalf("gap: %v", v)
	}
}

func TestFramesCatchesLossDuplicatesAndReordering(t *testing.T) {
	ok := Direction{Name: "host→guest", Sent: 5, Received: []uint64{1, 2, 3, 4, 5}}
	if v := Frames([]Direction{ok}); len(v) != 0 {
		t.Fatalf("correct delivery reported: %v", v)
	}
	cases := []struct {
		name string
		recv []uint64
		sent uint64
		want []string
	}{
		{"dropped", []uint64{1, 2, 4, 5}, 5, []string{"frame 4 delivered after frame 2", "1 of 5 frames never delivered, first 3"}},
		{"dropped at the end", []uint64{1, 2, 3, 4}, 5, []string{"1 of 5 frames never delivered, first 5"}},
		{"duplicated", []uint64{1, 2, 2, 3, 4, 5}, 5, []string{"frame 2 delivered twice"}},
		{"reordered", []uint64{1, 3, 2, 4, 5}, 5, []string{"frame 3 delivered after frame 1", "frame 2 delivered after frame 3"}},
		{"invented", []uint64{1, 2, 3, 4, 5, 6}, 5, []string{"frame 6 delivered but never sent"}},
	}
	for _, c := range cases {
		v := Frames([]Direction{{Name: "d", Sent: c.sent, Received: c.recv}})
		var got []string
		for _, x := range v {
			got = append(got, x.What)
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range c.want {
			if !strings.Contains(got[i], c.want[i]) {
				t.Errorf("%s: violation %q, want it to contain %q", c.name, got[i], c.want[i])
			}
		}
	}
}

// A history in which a read, started after an append was acknowledged,
// does not see it: the stale read a leader without a lease check, or an
// append acknowledged before commit, would produce.
func TestLinearizableCatchesStaleRead(t *testing.T) {
	build := func(readSeesAck bool) *linear.History {
		h := linear.NewHistory()
		var ts int64
		next := func() int64 { ts++; return ts }
		for i := range 20 {
			p := fmt.Sprintf("p%d", i)
			c, r := next(), next()
			h.Add(0, linear.Input{Stream: "s", Kind: linear.Append, Expected: uint64(i), Payload: p}, linear.Output{OK: true, Version: uint64(i + 1)}, c, r)
		}
		var all []string
		for i := range 20 {
			all = append(all, fmt.Sprintf("p%d", i))
		}
		if !readSeesAck {
			all = all[:19]
		}
		c, r := next(), next()
		h.Add(1, linear.Input{Stream: "s", Kind: linear.Read, Node: "n2"}, linear.Output{OK: true, Payloads: all}, c, r)
		return h
	}
	dir := t.TempDir()
	if v := Linearizable(build(true), 10*time.Second, dir); len(v) != 0 {
		t.Fatalf("linearizable history reported: %v", v)
	}
	v := Linearizable(build(false), 10*time.Second, dir)
	if len(v) != 1 || v[0].Check != LinearName || !strings.Contains(v[0].What, "stream s: its 21 operations are not linearizable (see linear-s.html)") {
		t.Fatalf("stale read: %v", v)
	}
	ctx := strings.Join(v[0].Context, "\n")
	if !strings.Contains(ctx, "stale read: client 1: read(s) on n2 -> 19 events") || !strings.Contains(ctx, "missed v20") {
		t.Errorf("the context does not spell out the stale read:\n%s", ctx)
	}
	if !strings.Contains(ctx, "client 1: read(s) on n2 -> 19 events") {
		t.Errorf("the context does not name the stale read:\n%s", ctx)
	}
	if v[0].File != "linear-s.html" {
		t.Errorf("violation file %q", v[0].File)
	}
	if _, err := os.Stat(filepath.Join(dir, "linear-s.html")); err != nil {
		t.Errorf("no visualization: %v", err)
	}
}

func TestProjectionsCatchesADivergentFold(t *testing.T) {
	good := func() []Digest {
		return []Digest{{Name: "sessions", Position: 90, Rows: 4, SHA256: "aa"}, {Name: "accounts", Position: 90, Rows: 1, SHA256: "bb"}}
	}
	byNode := map[string][]Digest{"n1": good(), "n2": good(), "n3": good()}
	if v := Projections(byNode); len(v) != 0 {
		t.Fatalf("equal projections reported: %v", v)
	}
	bad := good()
	bad[0].SHA256 = "ab" // n3 folded an event differently
	byNode["n3"] = bad
	v := Projections(byNode)
	if len(v) != 1 || v[0].Check != ProjectionsName || !strings.Contains(v[0].What, "projection sessions at position 90 differs between n1 and n3") {
		t.Fatalf("divergent fold: %v", v)
	}
	byNode["n3"] = good()[:1]
	byNode["n2"] = []Digest{{Name: "sessions", Position: 80, Rows: 3, SHA256: "cc"}, {Name: "accounts", Position: 80, Rows: 1, SHA256: "bb"}}
	var got []string
	for _, x := range Projections(byNode) {
		got = append(got, x.What)
	}
	want := []string{"n3 does not report projection accounts", "the nodes' projections did not reach the same log position"}
	if len(got) != 2 || !strings.Contains(got[0], want[0]) || !strings.Contains(got[1], want[1]) {
		t.Errorf("got %q, want %q", got, want)
	}
}
