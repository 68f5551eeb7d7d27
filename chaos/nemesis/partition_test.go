package nemesis

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// sees returns the nodes node a can talk to, itself included.
func sees(p Partition, n, a int) []int {
	var out []int
	for b := range n {
		if p.Connected(a, b) {
			out = append(out, b)
		}
	}
	return out
}

// Halves: two sides of n/2 and n-n/2 nodes, every pair across cut, no pair
// within a side cut; the leader lands on the side the pick's parity says;
// the same arguments give the same partition.
func TestSplitHalves(t *testing.T) {
	for n := 3; n <= 9; n++ {
		for pick := uint32(0); pick < 40; pick++ {
			for _, leader := range []int{-1, 0, n - 1} {
				p := SplitHalves(n, pick, leader)
				if !reflect.DeepEqual(p, SplitHalves(n, pick, leader)) {
					t.Fatalf("n=%d pick=%d: not a pure function", n, pick)
				}
				if len(p.Sides) != 2 || len(p.Sides[0]) != n/2 || len(p.Sides[1]) != n-n/2 {
					t.Fatalf("n=%d pick=%d: sides %v", n, pick, p.Sides)
				}
				if len(p.Cut) != len(p.Sides[0])*len(p.Sides[1]) {
					t.Fatalf("n=%d pick=%d: %d pairs cut, want %d", n, pick, len(p.Cut), len(p.Sides[0])*len(p.Sides[1]))
				}
				for _, a := range p.Sides[0] {
					for _, b := range p.Sides[1] {
						if p.Connected(a, b) {
							t.Fatalf("n=%d pick=%d: %d and %d on different sides are connected", n, pick, a, b)
						}
					}
				}
				for _, side := range p.Sides {
					for _, a := range side {
						for _, b := range side {
							if !p.Connected(a, b) {
								t.Fatalf("n=%d pick=%d: %d and %d on one side are cut", n, pick, a, b)
							}
						}
					}
				}
				if leader >= 0 {
					want := 0
					if pick%2 == 1 {
						want = 1
					}
					if !slices.Contains(p.Sides[want], leader) {
						t.Fatalf("n=%d pick=%d: leader %d not on side %d: %v", n, pick, leader, want, p.Sides)
					}
				}
			}
		}
	}
	if got := SplitHalves(5, 4, 2).Describe([]string{"n1", "n2", "n3", "n4", "n5"}); len(got) != len("n1,n2 | n3,n4,n5") {
		t.Errorf("describe: %q", got)
	}
}

// The majorities ring: every node sees a majority (itself included), some
// pair is cut, and no two nodes see the same majority; with five nodes each
// sees exactly its two ring neighbours, with three it is a bridge.
func TestMajoritiesRing(t *testing.T) {
	for n := 3; n <= 9; n++ {
		for pick := uint32(0); pick < 40; pick++ {
			for _, leader := range []int{-1, 1} {
				p := MajoritiesRing(n, pick, leader)
				if !reflect.DeepEqual(p, MajoritiesRing(n, pick, leader)) {
					t.Fatalf("n=%d pick=%d: not a pure function", n, pick)
				}
				if len(p.Cut) == 0 {
					t.Fatalf("n=%d pick=%d: nothing cut", n, pick)
				}
				seen := map[string]int{}
				for a := range n {
					s := sees(p, n, a)
					if len(s) < n/2+1 {
						t.Fatalf("n=%d pick=%d: node %d sees %v, not a majority", n, pick, a, s)
					}
					seen[fmtInts(s)]++
				}
				for k, c := range seen {
					if c > 1 && n >= 4 {
						t.Fatalf("n=%d pick=%d: %d nodes see the same majority %s", n, pick, c, k)
					}
				}
				if leader >= 0 && p.Order[int(pick/2)%n] != leader {
					t.Fatalf("n=%d pick=%d: leader not at position %d of %v", n, pick, int(pick/2)%n, p.Order)
				}
			}
		}
	}
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	p := MajoritiesRing(5, 9, -1)
	for i, a := range p.Order {
		want := []int{a, p.Order[(i+1)%5], p.Order[(i+4)%5]}
		slices.Sort(want)
		if got := sees(p, 5, a); !reflect.DeepEqual(got, want) {
			t.Errorf("ring %s: %s sees %v, want its neighbours %v", p.Describe(names), names[a], got, want)
		}
	}
	b := MajoritiesRing(3, 3, -1)
	if len(b.Cut) != 1 || b.Connected(b.Order[1], b.Order[2]) || !b.Connected(b.Order[0], b.Order[1]) || !b.Connected(b.Order[0], b.Order[2]) {
		t.Errorf("bridge of three: order %v, cut %v", b.Order, b.Cut)
	}
	if got, want := b.Describe(names), "bridge "+names[b.Order[1]]+"-"+names[b.Order[0]]+"-"+names[b.Order[2]]; got != want {
		t.Errorf("describe: %q, want %q", got, want)
	}
}

func fmtInts(is []int) string {
	out := ""
	for _, i := range is {
		out += string(rune('0' + i))
	}
	return out
}

// Partition faults are planned like the others (a pure function of the
// scenario, seed and duration), and a scenario file may use them but only
// with random or leader targets.
func TestPartitionsScenario(t *testing.T) {
	sc, err := Load("partitions")
	if err != nil {
		t.Fatal(err)
	}
	p := Plan(sc, 5, 90*time.Second)
	if !reflect.DeepEqual(p, Plan(sc, 5, 90*time.Second)) || len(p) < 5 {
		t.Fatalf("plan %v", p)
	}
	kinds := map[Kind]bool{}
	for _, f := range p {
		kinds[f.Kind] = true
	}
	if !kinds[Halves] && !kinds[Ring] {
		t.Errorf("90 s of partitions drew no halves and no ring: %v", p)
	}
	bad := Scenario{Faults: []Choice{{Ring, Session, 1}}, MinGap: sec(1), MaxGap: sec(1), MinDown: sec(1), MaxDown: sec(1)}
	if err := bad.Validate(); err == nil {
		t.Error("a ring with target session passed validation")
	}
	all := builtins["all"]
	if w := all.Without(Halves, Ring, DiskFull); w.Uses(Halves) || w.Uses(Ring) || w.Uses(DiskFull) || !w.Uses(Kill) || !all.Uses(Ring) {
		t.Errorf("Without: %+v", w.Faults)
	}
}
