// Package nemesis plans the faults of a chaos run: a scenario names which
// faults may happen (kill -9, pause, graceful restart, network isolation,
// delay, loss, a one-way partition or a full disk, of a random node,
// the Raft leader or a session client's node; partitions of the cluster into
// halves or a majorities ring) and how often, and Plan turns it and a seed into a
// schedule. The schedule is a pure function of (scenario, seed, duration), so
// a failing run can be replayed with the same faults at the same offsets;
// only the resolution of "leader" and "session" targets depends on the run.
//
// Faults never overlap: one node at most is down at a time, so a cluster of
// three keeps its Raft majority and every fault tests recovery rather than
// unavailability. The partitions between nodes (halves, ring) are one fault
// over a set of nodes: a majority of the cluster can still elect a leader.
package nemesis

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind is what a fault does to its node.
type Kind string

const (
	// Kill sends SIGKILL to the node's process; it is restarted, with its
	// data, when the fault ends.
	Kill Kind = "kill"
	// Pause stops the node's process (SIGSTOP) and resumes it (SIGCONT)
	// when the fault ends: long enough and the others declare it dead while
	// it still holds its state.
	Pause Kind = "pause"
	// Restart stops the node gracefully (SIGTERM: it hands its clients
	// over, leaves the membership and transfers leadership) and starts it
	// again when the fault ends: one step of a rolling restart.
	Restart Kind = "restart"
	// Isolate cuts the node off the network (a partition of one node from
	// all others, both ways) and reconnects it when the fault ends; only
	// drivers that can partition support it (docker).
	Isolate Kind = "isolate"
	// Delay adds 150 ms ± 50 ms to every packet the node sends, in order
	// (a netfilter queue the harness serves: chaos/pktdelay).
	Delay Kind = "delay"
	// Loss drops 30% of the packets the node sends.
	Loss Kind = "loss"
	// OneWay drops every packet the node receives from the other nodes
	// while its own still reach them: an asymmetric partition.
	OneWay Kind = "oneway"
	// Halves splits the cluster into two sides that cannot talk to each
	// other ({n1,n2} | {n3,n4,n5}); clients still reach every node. With
	// target leader, the fault's Pick puts the leader on the smaller or the
	// larger side (SplitHalves). Drivers that can cut links between nodes
	// (docker as root, netns).
	Halves Kind = "halves"
	// Ring is Jepsen's majorities ring: every node talks only to its
	// nearest neighbours, enough to see a majority, so no two nodes see the
	// same majority; with three nodes a bridge (n1 and n3 cannot talk, both
	// talk to n2). Clients still reach every node. Drivers as Halves.
	Ring Kind = "ring"
	// DiskFull fills the file system of the node's data directory (a small
	// tmpfs the driver mounts for every node) and frees it when the fault
	// ends, restarting the node if it died meanwhile.
	DiskFull Kind = "diskfull"
	// Member changes the membership under load: a new node joins (the
	// leader adds it as a non-voter and promotes it once caught up), then
	// the target node is stopped gracefully and retired for good (the
	// leader removes it from the Raft configuration after the dead-server
	// grace); the fault ends when the configuration holds as many voters
	// as before, the new one among them, and no non-voter. Drivers that can
	// add nodes (process, netns).
	Member Kind = "member"
)

// kinds are the valid fault kinds.
var kinds = []Kind{Kill, Pause, Restart, Isolate, Delay, Loss, OneWay, Halves, Ring, DiskFull, Member}

// Partitions reports whether k cuts links between nodes (rather than acting
// on one node): the fault hits a set of nodes, drawn by PartitionFor.
func (k Kind) Partitions() bool { return k == Halves || k == Ring }

// Target says which node a fault hits; resolved when the fault starts.
type Target string

const (
	Random  Target = "random"  // any running node (chosen by the fault's Pick)
	Leader  Target = "leader"  // the Raft leader
	Session Target = "session" // the node a session client is connected to
	Next    Target = "next"    // n1, n2, n3, n1, …: with restart, a rolling restart
)

// Choice is one kind of fault a scenario may draw, with its relative weight.
type Choice struct {
	Kind   Kind    `json:"kind"`
	Target Target  `json:"target"`
	Weight float64 `json:"weight"`
}

// Scenario describes the faults of a run. Gaps between faults are drawn
// uniformly from [MinGap, MaxGap], fault durations from [MinDown, MaxDown].
type Scenario struct {
	Name    string   `json:"name"`
	Faults  []Choice `json:"faults"`
	MinGap  Duration `json:"min_gap"`
	MaxGap  Duration `json:"max_gap"`
	MinDown Duration `json:"min_down"`
	MaxDown Duration `json:"max_down"`
	// Settle is the quiet time at the start (the workload warms up) and at
	// the end (after the last fault healed) of a run.
	Settle Duration `json:"settle"`
}

// Duration is a time.Duration written as "1.5s" in scenario files.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string ("2s", "500ms").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("nemesis: duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("nemesis: duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

func sec(s float64) Duration { return Duration(s * float64(time.Second)) }

// builtins are the scenarios known by name.
var builtins = map[string]Scenario{
	// kill: kill -9 of random nodes, the leader and session nodes.
	"kill": {Name: "kill", Faults: []Choice{{Kill, Random, 1}, {Kill, Leader, 1}, {Kill, Session, 1}},
		MinGap: sec(2), MaxGap: sec(5), MinDown: sec(1), MaxDown: sec(4), Settle: sec(3)},
	// pause: SIGSTOP/SIGCONT of random nodes and the leader, some short
	// (refuted suspicion), some long enough to be declared dead.
	"pause": {Name: "pause", Faults: []Choice{{Pause, Random, 1}, {Pause, Leader, 1}, {Pause, Session, 1}},
		MinGap: sec(2), MaxGap: sec(5), MinDown: sec(0.5), MaxDown: sec(5), Settle: sec(3)},
	// smoke: everything, for make chaos-smoke.
	"smoke": {Name: "smoke", Faults: []Choice{{Kill, Random, 1}, {Kill, Leader, 1}, {Kill, Session, 1},
		{Pause, Random, 1}, {Pause, Leader, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(1), MaxDown: sec(4), Settle: sec(3)},
	// restart: graceful restarts of random nodes and the leader, as a
	// rolling upgrade does them.
	"restart": {Name: "restart", Faults: []Choice{{Restart, Random, 1}, {Restart, Leader, 1}, {Restart, Session, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(1), MaxDown: sec(3), Settle: sec(3)},
	// rolling: restart every node in turn, each after the cluster is
	// ready again, as a rolling upgrade does.
	"rolling": {Name: "rolling", Faults: []Choice{{Restart, Next, 1}},
		MinGap: sec(1), MaxGap: sec(2), MinDown: sec(0.5), MaxDown: sec(1.5), Settle: sec(3)},
	// partition: isolate random nodes, the leader and session nodes
	// (drivers that can partition).
	"partition": {Name: "partition", Faults: []Choice{{Isolate, Random, 1}, {Isolate, Leader, 1}, {Isolate, Session, 1}},
		MinGap: sec(2), MaxGap: sec(5), MinDown: sec(1), MaxDown: sec(5), Settle: sec(3)},
	// all: kill, pause, isolate, halves, ring and disk full (drivers that
	// can partition; the runner drops the kinds a driver cannot inject,
	// see Without).
	"all": {Name: "all", Faults: []Choice{{Kill, Random, 1}, {Kill, Leader, 1}, {Kill, Session, 1},
		{Pause, Random, 1}, {Pause, Leader, 1}, {Isolate, Random, 1}, {Isolate, Leader, 1}, {Restart, Leader, 1},
		{Halves, Random, 1}, {Halves, Leader, 1}, {Ring, Random, 1}, {DiskFull, Random, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(1), MaxDown: sec(4), Settle: sec(3)},
	// network: packet loss and one-way partitions of random nodes and the
	// leader (drivers that can shape a node's network).
	"network": {Name: "network", Faults: []Choice{{Loss, Random, 1}, {Loss, Leader, 1}, {OneWay, Random, 1}, {OneWay, Leader, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(2), MaxDown: sec(6), Settle: sec(3)},
	// delay: packet delay of random nodes and the leader (drivers that can
	// shape a node's network).
	"delay": {Name: "delay", Faults: []Choice{{Delay, Random, 1}, {Delay, Leader, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(2), MaxDown: sec(6), Settle: sec(3)},
	// partitions: two halves, a majorities ring (a bridge with three
	// nodes) and the isolation of one node, of random nodes and around the
	// leader (drivers that can cut links between nodes).
	"partitions": {Name: "partitions", Faults: []Choice{{Halves, Random, 1}, {Halves, Leader, 1}, {Ring, Random, 1}, {Ring, Leader, 1},
		{Isolate, Random, 1}, {Isolate, Leader, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(2), MaxDown: sec(6), Settle: sec(3)},
	// diskfull: the data directory's file system of a random node, the
	// leader or a session client's node is filled up, then freed (drivers
	// that mount a small tmpfs per node: root).
	"diskfull": {Name: "diskfull", Faults: []Choice{{DiskFull, Random, 1}, {DiskFull, Leader, 1}, {DiskFull, Session, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(2), MaxDown: sec(6), Settle: sec(3)},
	// membership: replace a random node, the leader or a session client's
	// node by a new one, under load (drivers that can add nodes).
	"membership": {Name: "membership", Faults: []Choice{{Member, Random, 1}, {Member, Leader, 1}, {Member, Session, 1}},
		MinGap: sec(2), MaxGap: sec(4), MinDown: sec(0.5), MaxDown: sec(1), Settle: sec(3)},
	// none: no faults (a baseline; the checkers must pass).
	"none": {Name: "none", MinGap: sec(1), MaxGap: sec(1), MinDown: sec(1), MaxDown: sec(1), Settle: sec(1)},
}

// Builtins lists the names of the built-in scenarios.
func Builtins() []string {
	var out []string
	for n := range builtins {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Load returns the built-in scenario called nameOrFile or, if there is none
// of that name, reads a JSON scenario file.
func Load(nameOrFile string) (Scenario, error) {
	if sc, ok := builtins[nameOrFile]; ok {
		return sc, nil
	}
	b, err := os.ReadFile(nameOrFile)
	if err != nil {
		return Scenario{}, fmt.Errorf("nemesis: scenario %q is neither built in (%s) nor a readable file: %w",
			nameOrFile, strings.Join(Builtins(), ", "), err)
	}
	var sc Scenario
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return Scenario{}, fmt.Errorf("nemesis: scenario file %s: %w", nameOrFile, err)
	}
	if sc.Name == "" {
		sc.Name = nameOrFile
	}
	if err := sc.Validate(); err != nil {
		return Scenario{}, fmt.Errorf("scenario file %s: %w", nameOrFile, err)
	}
	return sc, nil
}

// Validate reports every problem of the scenario at once.
func (sc Scenario) Validate() error {
	var errs []error
	for i, c := range sc.Faults {
		if !slices.Contains(kinds, c.Kind) {
			errs = append(errs, fmt.Errorf("faults[%d].kind %q: want one of %v", i, c.Kind, kinds))
		}
		if c.Kind.Partitions() && c.Target != Random && c.Target != Leader {
			errs = append(errs, fmt.Errorf("faults[%d].target %q: a %s partition wants random or leader", i, c.Target, c.Kind))
		} else if c.Target != Random && c.Target != Leader && c.Target != Session && c.Target != Next {
			errs = append(errs, fmt.Errorf("faults[%d].target %q: want random, leader, session or next", i, c.Target))
		}
		if c.Weight <= 0 {
			errs = append(errs, fmt.Errorf("faults[%d].weight %v: must be positive", i, c.Weight))
		}
	}
	if sc.MinGap <= 0 || sc.MaxGap < sc.MinGap {
		errs = append(errs, fmt.Errorf("min_gap %v, max_gap %v: need 0 < min_gap <= max_gap", time.Duration(sc.MinGap), time.Duration(sc.MaxGap)))
	}
	if sc.MinDown <= 0 || sc.MaxDown < sc.MinDown {
		errs = append(errs, fmt.Errorf("min_down %v, max_down %v: need 0 < min_down <= max_down", time.Duration(sc.MinDown), time.Duration(sc.MaxDown)))
	}
	if sc.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle %v: must not be negative", time.Duration(sc.Settle)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("nemesis: %w", errors.Join(errs...))
	}
	return nil
}

// Fault is one planned fault.
type Fault struct {
	At     time.Duration `json:"at"`  // offset from the start of the run
	For    time.Duration `json:"for"` // how long the node stays down or paused
	Kind   Kind          `json:"kind"`
	Target Target        `json:"target"`
	// Pick chooses among the candidate nodes when the fault starts (index
	// Pick mod the number of candidates), so random targets replay too.
	Pick uint32 `json:"pick"`
}

func (f Fault) String() string {
	return fmt.Sprintf("%s %s at %v for %v", f.Kind, f.Target, f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
}

// Plan returns the faults of a run of the given duration: the first after
// Settle, each next one a gap after the previous one healed, none healing
// later than duration - Settle. The same arguments always give the same plan.
func Plan(sc Scenario, seed uint64, duration time.Duration) []Fault {
	if len(sc.Faults) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973)) // "nemesis"
	var total float64
	for _, c := range sc.Faults {
		total += c.Weight
	}
	between := func(lo, hi Duration) time.Duration {
		if hi <= lo {
			return time.Duration(lo)
		}
		return time.Duration(lo) + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	var out []Fault
	at := time.Duration(sc.Settle)
	end := duration - time.Duration(sc.Settle)
	for {
		x := rng.Float64() * total
		c := sc.Faults[len(sc.Faults)-1]
		for _, ch := range sc.Faults {
			if x < ch.Weight {
				c = ch
				break
			}
			x -= ch.Weight
		}
		f := Fault{At: at, For: between(sc.MinDown, sc.MaxDown), Kind: c.Kind, Target: c.Target, Pick: rng.Uint32()}
		if f.At+f.For > end {
			return out
		}
		out = append(out, f)
		at = f.At + f.For + between(sc.MinGap, sc.MaxGap)
	}
}

// Without returns the scenario without the choices of the given kinds (a
// built-in scenario on a driver that cannot inject all of them). The name
// stays: the replay names the driver, and the plan of the same scenario,
// driver, seed and duration is the same.
func (sc Scenario) Without(ks ...Kind) Scenario {
	out := sc
	out.Faults = nil
	for _, c := range sc.Faults {
		if !slices.Contains(ks, c.Kind) {
			out.Faults = append(out.Faults, c)
		}
	}
	return out
}

// Uses reports whether the scenario may draw faults of kind k.
func (sc Scenario) Uses(k Kind) bool {
	for _, c := range sc.Faults {
		if c.Kind == k {
			return true
		}
	}
	return false
}
