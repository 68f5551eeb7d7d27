// Package check holds the checkers of a chaos run. They are pure functions of
// what the workloads recorded and what the nodes hold after healing, so that
// a test can feed them a history with a deliberate bug and see it caught.
//
//   - Appends: every acknowledged append is on every node, at the version it
//     was acknowledged with; streams are dense and hold no payload twice.
//   - Linearizable: each stream's history of appends and reads is
//     linearizable (chaos/linear, porcupine).
//   - Frames: every durable frame a session client sent arrived exactly once
//     and in order at the other participant.
package check

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/switchboard-io/switchboard/chaos/linear"
)

// Names of the checkers, as they appear in reports.
const (
	AppendsName = "acknowledged-appends"
	LinearName  = "linearizable-streams"
	FramesName  = "durable-frames"
)

// Violation is one broken promise, with the operations around it.
type Violation struct {
	Check   string   `json:"check"`
	What    string   `json:"what"`
	Context []string `json:"context,omitempty"`
	// File, if set, names a file next to the report that shows the
	// violation (porcupine's visualization of a stream).
	File string `json:"file,omitempty"`
}

func (v Violation) String() string { return v.Check + ": " + v.What }

// Ack is an append a client saw acknowledged: Payload is at Version of Stream.
type Ack struct {
	Stream  string `json:"stream"`
	Version uint64 `json:"version"`
	Payload string `json:"payload"`
}

// Event is one event of a stream as a node returned it.
type Event struct {
	Version uint64
	Payload string
}

// Appends checks the streams each node holds after healing (node → stream →
// events in order) against the acknowledged appends.
func Appends(acked []Ack, final map[string]map[string][]Event) []Violation {
	var out []Violation
	add := func(what string, ctx ...string) {
		out = append(out, Violation{Check: AppendsName, What: what, Context: ctx})
	}
	nodes := sortedKeys(final)
	for _, node := range nodes {
		streams := final[node]
		for _, stream := range sortedKeys(streams) {
			seen := map[string]uint64{}
			for i, e := range streams[stream] {
				if e.Version != uint64(i+1) {
					add(fmt.Sprintf("%s: %s holds version %d at position %d (gap or reorder)", node, stream, e.Version, i+1))
					break
				}
				if v, dup := seen[e.Payload]; dup {
					add(fmt.Sprintf("%s: %s holds payload %s twice (v%d and v%d)", node, stream, e.Payload, v, e.Version))
				}
				seen[e.Payload] = e.Version
			}
		}
		for _, a := range acked {
			evs := streams[a.Stream]
			switch {
			case a.Version == 0 || a.Version > uint64(len(evs)):
				add(fmt.Sprintf("%s: acknowledged append %s (%s v%d) is missing: the stream has %d events", node, a.Payload, a.Stream, a.Version, len(evs)),
					around(evs, a.Version)...)
			case evs[a.Version-1].Payload != a.Payload:
				add(fmt.Sprintf("%s: acknowledged append %s (%s v%d) is missing: v%d holds %s", node, a.Payload, a.Stream, a.Version, a.Version, evs[a.Version-1].Payload),
					around(evs, a.Version)...)
			}
		}
	}
	return out
}

// around describes the events next to version v.
func around(evs []Event, v uint64) []string {
	var out []string
	lo, hi := int(v)-3, int(v)+2
	for i := max(lo, 0); i < min(hi, len(evs)); i++ {
		out = append(out, fmt.Sprintf("v%d %s", evs[i].Version, evs[i].Payload))
	}
	return out
}

// Linearizable checks the history of each stream with porcupine, all
// within timeout; not deciding in time is reported as a violation too
// (linearizability not shown). A violation names the stream and, as its
// context, the operations porcupine could not linearize (the earliest
// first, with their call and return times since the history began); when
// dir is not empty, porcupine's interactive visualization of the stream is
// written there as linear-STREAM.html.
func Linearizable(h *linear.History, timeout time.Duration, dir string) []Violation {
	by := map[string][]porcupine.Operation{}
	for _, op := range h.Operations() {
		s := op.Input.(linear.Input).Stream
		by[s] = append(by[s], op)
	}
	deadline := time.Now().Add(timeout)
	var out []Violation
	for _, stream := range sortedKeys(by) {
		ops := by[stream]
		left := time.Until(deadline)
		if left <= 0 {
			out = append(out, Violation{Check: LinearName, What: fmt.Sprintf("not checked within %v: stream %s and later ones", timeout, stream)})
			break
		}
		res, info := porcupine.CheckOperationsVerbose(linear.Model, ops, left)
		switch res {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			out = append(out, Violation{Check: LinearName, What: fmt.Sprintf("stream %s: could not decide whether its %d operations are linearizable within %v", stream, len(ops), timeout)})
			continue
		}
		v := Violation{Check: LinearName, What: fmt.Sprintf("stream %s: its %d operations are not linearizable", stream, len(ops)),
			Context: append(staleReads(ops), unlinearized(ops, info)...)}
		if dir != "" {
			name := "linear-" + strings.NewReplacer("/", "_", " ", "_").Replace(stream) + ".html"
			if err := porcupine.VisualizePath(linear.Model, info, filepath.Join(dir, name)); err == nil {
				v.What += " (see " + name + ")"
				v.File = name
			}
		}
		out = append(out, v)
	}
	return out
}

// staleReads names the reads that missed an append acknowledged before
// they were called: the plainest kind of violation, spelled out.
func staleReads(ops []porcupine.Operation) []string {
	type ack struct {
		ret     int64
		version uint64
		op      porcupine.Operation
	}
	var acks []ack
	for _, op := range ops {
		if in, out := op.Input.(linear.Input), op.Output.(linear.Output); in.Kind == linear.Append && out.OK {
			acks = append(acks, ack{op.Return, out.Version, op})
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].ret < acks[j].ret })
	var out []string
	for _, op := range ops {
		in, res := op.Input.(linear.Input), op.Output.(linear.Output)
		if in.Kind != linear.Read {
			continue
		}
		// The newest acknowledged version before the read was called.
		var newest *ack
		for k := range acks {
			if acks[k].ret > op.Call {
				break
			}
			if newest == nil || acks[k].version > newest.version {
				newest = &acks[k]
			}
		}
		if newest != nil && uint64(len(res.Payloads)) < newest.version {
			if len(out) == 5 {
				out = append(out, "… more stale reads")
				break
			}
			out = append(out, fmt.Sprintf("stale read: %s; it missed v%d, acknowledged before it was called: %s",
				describe(op), newest.version, describe(newest.op)))
		}
	}
	return out
}

// unlinearized describes the operations outside porcupine's longest partial
// linearization of a failed history, earliest call first: the first of them
// is where every order of the operations breaks.
func unlinearized(ops []porcupine.Operation, info porcupine.LinearizationInfo) []string {
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	in := map[int]bool{}
	for _, i := range longest {
		in[i] = true
	}
	var rest []int
	for i := range ops {
		if !in[i] {
			rest = append(rest, i)
		}
	}
	sort.Slice(rest, func(a, b int) bool { return ops[rest[a]].Call < ops[rest[b]].Call })
	out := []string{fmt.Sprintf("%d of %d operations linearized; the first of the others:", len(longest), len(ops))}
	if len(longest) > 0 {
		last := ops[longest[len(longest)-1]]
		out = append(out, "last linearized: "+describe(last))
	}
	for k, i := range rest {
		if k == 8 {
			out = append(out, fmt.Sprintf("… %d more", len(rest)-8))
			break
		}
		out = append(out, describe(ops[i]))
	}
	return out
}

func describe(op porcupine.Operation) string {
	ret := "never (outcome unknown)"
	if op.Return != math.MaxInt64 {
		ret = fmt.Sprintf("%.3fs", time.Duration(op.Return).Seconds())
	}
	return fmt.Sprintf("client %d: %s, called %.3fs, returned %s", op.ClientId,
		linear.Model.DescribeOperation(op.Input, op.Output), time.Duration(op.Call).Seconds(), ret)
}

// Direction is what one participant sent to another: frames numbered
// 1..Sent, and the numbers the receiver got, in the order it got them.
type Direction struct {
	Name     string   `json:"name"` // e.g. "s1 host→guest"
	Sent     uint64   `json:"sent"`
	Received []uint64 `json:"-"`
}

// Frames checks that every direction delivered 1..Sent exactly once, in
// order.
func Frames(dirs []Direction) []Violation {
	var out []Violation
	for _, d := range dirs {
		add := func(what string, ctx ...string) {
			out = append(out, Violation{Check: FramesName, What: d.Name + ": " + what, Context: ctx})
		}
		count := map[uint64]int{}
		var last uint64
		for i, n := range d.Received {
			count[n]++
			switch {
			case count[n] > 1:
				add(fmt.Sprintf("frame %d delivered twice", n), window(d.Received, i)...)
			case n != last+1:
				add(fmt.Sprintf("frame %d delivered after frame %d (lost or reordered)", n, last), window(d.Received, i)...)
			}
			last = max(last, n)
		}
		var missing []uint64
		for n := uint64(1); n <= d.Sent; n++ {
			if count[n] == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			add(fmt.Sprintf("%d of %d frames never delivered, first %d", len(missing), d.Sent, missing[0]), window(d.Received, len(d.Received)-1)...)
		}
		for n := range count {
			if n == 0 || n > d.Sent {
				add(fmt.Sprintf("frame %d delivered but never sent (%d sent)", n, d.Sent))
			}
		}
	}
	return out
}

// window describes the deliveries around index i.
func window(recv []uint64, i int) []string {
	var out []string
	for j := max(i-3, 0); j < min(i+3, len(recv)); j++ {
		out = append(out, fmt.Sprintf("delivery %d: frame %d", j+1, recv[j]))
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ProjectionsName names the projection checker in reports.
const ProjectionsName = "equal-projections"

// Digest is a node's digest of one projection (its rows' SHA-256) at the
// log position it covers.
type Digest struct {
	Name     string `json:"name"`
	Position uint64 `json:"position"`
	Rows     uint64 `json:"rows"`
	SHA256   string `json:"sha256"`
}

// SamePositions reports whether every node reports every projection at the
// same log position.
func SamePositions(byNode map[string][]Digest) bool {
	pos := map[string]uint64{}
	for _, ds := range byNode {
		for _, d := range ds {
			if p, ok := pos[d.Name]; ok && p != d.Position {
				return false
			}
			pos[d.Name] = d.Position
		}
	}
	return true
}

// Projections checks, after convergence, that every node holds every
// projection and that nodes at the same log position hold the same rows:
// each node folds the same log, so any difference is a bug in a fold.
func Projections(byNode map[string][]Digest) []Violation {
	var out []Violation
	nodes := sortedKeys(byNode)
	type at struct {
		name string
		pos  uint64
	}
	type seen struct {
		node string
		d    Digest
	}
	first := map[at]seen{}
	names := map[string]bool{}
	for _, n := range nodes {
		for _, d := range byNode[n] {
			names[d.Name] = true
		}
	}
	for _, n := range nodes {
		have := map[string]bool{}
		for _, d := range byNode[n] {
			have[d.Name] = true
			k := at{d.Name, d.Position}
			f, ok := first[k]
			if !ok {
				first[k] = seen{n, d}
				continue
			}
			if f.d.Rows != d.Rows || f.d.SHA256 != d.SHA256 {
				out = append(out, Violation{Check: ProjectionsName,
					What: fmt.Sprintf("projection %s at position %d differs between %s and %s", d.Name, d.Position, f.node, n),
					Context: []string{fmt.Sprintf("%s: %d rows, sha256 %s", f.node, f.d.Rows, f.d.SHA256),
						fmt.Sprintf("%s: %d rows, sha256 %s", n, d.Rows, d.SHA256)}})
			}
		}
		for _, name := range sortedKeys(names) {
			if !have[name] {
				out = append(out, Violation{Check: ProjectionsName, What: fmt.Sprintf("%s does not report projection %s", n, name)})
			}
		}
	}
	if !SamePositions(byNode) {
		var ctx []string
		for _, n := range nodes {
			for _, d := range byNode[n] {
				ctx = append(ctx, fmt.Sprintf("%s: %s at %d", n, d.Name, d.Position))
			}
		}
		out = append(out, Violation{Check: ProjectionsName, What: "the nodes' projections did not reach the same log position after convergence", Context: ctx})
	}
	return out
}
