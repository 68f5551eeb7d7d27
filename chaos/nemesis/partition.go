package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// Partition is a network partition between the nodes of a cluster: the pairs
// of nodes (by index) that cannot talk to each other, both ways. Every other
// pair, and every client, still gets through. Sides (halves) or Order (ring)
// say how it was drawn, for the report.
type Partition struct {
	Cut   [][2]int // pairs {a, b} with a < b, sorted
	Sides [][]int  // halves: the two sides
	Order []int    // ring: the nodes around the ring
}

// Map returns the partition with every node k renamed to to[k] (PartitionFor
// numbers the nodes it is given 0..n-1; to maps them back to the cluster's
// indexes when some nodes are not part of it).
func (p Partition) Map(to []int) Partition {
	var out Partition
	for _, c := range p.Cut {
		a, b := to[c[0]], to[c[1]]
		out.Cut = append(out.Cut, [2]int{min(a, b), max(a, b)})
	}
	slices.SortFunc(out.Cut, func(x, y [2]int) int {
		if x[0] != y[0] {
			return x[0] - y[0]
		}
		return x[1] - y[1]
	})
	for _, side := range p.Sides {
		var ms []int
		for _, k := range side {
			ms = append(ms, to[k])
		}
		out.Sides = append(out.Sides, ms)
	}
	for _, k := range p.Order {
		out.Order = append(out.Order, to[k])
	}
	return out
}

// Nodes returns every node the partition separates from some other node.
func (p Partition) Nodes() []int {
	var out []int
	for _, c := range p.Cut {
		for _, i := range c {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Describe writes the partition with the nodes' names: "n1,n2 | n3,n4,n5"
// for halves, "ring n1-n2-n3-n4-n5-n1" for a ring, "bridge n1-n2-n3" for a
// three-node ring (only the middle node talks to both others).
func (p Partition) Describe(names []string) string {
	name := func(is []int) []string {
		var out []string
		for _, i := range is {
			out = append(out, names[i])
		}
		return out
	}
	switch {
	case len(p.Sides) > 0:
		var sides []string
		for _, s := range p.Sides {
			sides = append(sides, strings.Join(name(s), ","))
		}
		return strings.Join(sides, " | ")
	case len(p.Order) == 3:
		// Order[0] is the bridge: the pair cut is Order[1], Order[2].
		return "bridge " + strings.Join(name([]int{p.Order[1], p.Order[0], p.Order[2]}), "-")
	case len(p.Order) > 0:
		return "ring " + strings.Join(name(append(slices.Clone(p.Order), p.Order[0])), "-")
	}
	return "no partition"
}

// Connected reports whether a and b can talk.
func (p Partition) Connected(a, b int) bool {
	return a == b || !slices.Contains(p.Cut, pair(a, b))
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// shuffle returns 0..n-1 in an order drawn from pick alone; with leader >= 0
// the leader is then moved to position at.
func shuffle(n int, pick uint32, leader, at int) []int {
	order := rand.New(rand.NewPCG(uint64(pick), 0x7061727469)).Perm(n) // "parti"
	if leader >= 0 && leader < n {
		j := slices.Index(order, leader)
		order[j], order[at] = order[at], order[j]
	}
	return order
}

// SplitHalves splits n nodes into two sides of n/2 and n-n/2 nodes ({n1,n2} |
// {n3,n4,n5}; with three nodes one | two) that cannot talk to each other.
// pick shuffles the nodes; with leader >= 0 (the Raft leader's index) the
// leader is on the smaller side when pick is even, on the larger one when it
// is odd, so a leader target tests both a deposed and a kept leader. A pure
// function of its arguments.
func SplitHalves(n int, pick uint32, leader int) Partition {
	at := 0 // the smaller side is order[:n/2]
	if pick%2 == 1 {
		at = n - 1
	}
	order := shuffle(n, pick, leader, at)
	small, large := slices.Clone(order[:n/2]), slices.Clone(order[n/2:])
	slices.Sort(small)
	slices.Sort(large)
	p := Partition{Sides: [][]int{small, large}}
	for _, a := range small {
		for _, b := range large {
			p.Cut = append(p.Cut, pair(a, b))
		}
	}
	sortPairs(p.Cut)
	return p
}

// MajoritiesRing is Jepsen's "majorities ring": the n nodes stand in a ring (in an
// order drawn from pick) and each talks only to its nearest neighbours,
// just enough of them that it sees a majority of the cluster including
// itself; so every node sees a majority, but no two nodes see the same one.
// With five nodes each sees its two neighbours; with three it is a bridge:
// Order[0] talks to both others, which cannot talk to each other. With
// leader >= 0 the leader stands at position pick/2 mod n of the ring (with
// three nodes: the bridge or one of its ends). A pure function of its
// arguments.
func MajoritiesRing(n int, pick uint32, leader int) Partition {
	order := shuffle(n, pick, leader, int(pick/2)%max(n, 1))
	need := n / 2 // neighbours each node must see: a majority is n/2+1 with itself
	link := map[[2]int]bool{}
	deg := make([]int, n) // by position in order
	connect := func(a, b int) {
		if a != b && !link[pair(a, b)] {
			link[pair(a, b)] = true
			deg[a]++
			deg[b]++
		}
	}
	// Neighbours at distance 1..need/2 on both sides.
	for d := 1; d <= need/2; d++ {
		for a := range n {
			connect(a, (a+d)%n)
		}
	}
	// An odd need leaves each node one short: link it to a node across the
	// ring (the farthest first), preferring one that is short too, then the
	// least linked.
	for d := n / 2; d > need/2; d-- {
		for a := range n {
			if deg[a] < need && deg[(a+d)%n] < need {
				connect(a, (a+d)%n)
			}
		}
	}
	for a := range n {
		for deg[a] < need {
			best := -1
			for b := range n {
				if b != a && !link[pair(a, b)] && (best < 0 || deg[b] < deg[best]) {
					best = b
				}
			}
			if best < 0 {
				break
			}
			connect(a, best)
		}
	}
	p := Partition{Order: order}
	for a := range n {
		for b := a + 1; b < n; b++ {
			if !link[[2]int{a, b}] {
				p.Cut = append(p.Cut, pair(order[a], order[b]))
			}
		}
	}
	sortPairs(p.Cut)
	return p
}

func sortPairs(ps [][2]int) {
	slices.SortFunc(ps, func(x, y [2]int) int {
		if x[0] != y[0] {
			return x[0] - y[0]
		}
		return x[1] - y[1]
	})
}

// PartitionFor returns the partition a fault of kind Halves or Ring makes in
// a cluster of n nodes (leader: the leader's index when the fault targets
// the leader, else -1).
func PartitionFor(k Kind, n int, pick uint32, leader int) (Partition, error) {
	switch k {
	case Halves:
		return SplitHalves(n, pick, leader), nil
	case Ring:
		return MajoritiesRing(n, pick, leader), nil
	}
	return Partition{}, fmt.Errorf("nemesis: %s is not a partition between nodes", k)
}
