// Package linear checks that a concurrent history of appends and reads on
// event streams is linearizable, with github.com/anishathalye/porcupine. It is
// shared by the event log's cluster tests and the chaos harness.
//
// The model: each stream is a sequence of payloads. An append carries an
// expected version (exact) and a unique payload; it succeeds iff the stream's
// length equals the expected version, and otherwise fails with a conflict
// naming the current length. A read returns the whole sequence. An operation
// whose outcome is unknown (timeout, node died) is recorded with Unknown set
// and an open end: it may have taken effect at any point after its call, or
// never, which the model decides by the state (the precondition).
package linear

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind of operation.
type Kind uint8

const (
	Append Kind = iota + 1
	Read
)

// Input of an operation.
type Input struct {
	Stream   string
	Kind     Kind
	Expected uint64 // Append: expected version (stream length)
	Payload  string // Append: unique payload
	// Node, if set, names the node that answered (for descriptions only;
	// the model ignores it).
	Node string
}

// Output of an operation.
type Output struct {
	Unknown  bool     // the outcome is not known (Append only)
	OK       bool     // Append: applied; Read: always true
	Version  uint64   // Append ok: new version; conflict: current version
	Payloads []string // Read: the stream's payloads in order
}

// History records operations from many goroutines.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns a timestamp for Call/Return.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records one completed (or unknown) operation. For Unknown outputs the
// return time is set to "never", as porcupine requires for operations whose
// effect may happen at any later time.
func (h *History) Add(client int, in Input, out Output, call, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
	h.mu.Unlock()
}

// Len returns the number of recorded operations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Operations returns a copy of the recorded operations.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Model is the porcupine model of a set of streams, partitioned by stream.
var Model = porcupine.Model{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range ops {
			s := op.Input.(Input).Stream
			if _, ok := by[s]; !ok {
				order = append(order, s)
			}
			by[s] = append(by[s], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, s := range order {
			out = append(out, by[s])
		}
		return out
	},
	// State: the stream's payloads joined by "\x00" (a string, so == works).
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st := state.(string)
		in, out := input.(Input), output.(Output)
		n := count(st)
		switch in.Kind {
		case Append:
			if out.Unknown {
				if n == in.Expected {
					return true, join(st, in.Payload)
				}
				return true, st
			}
			if out.OK {
				if n == in.Expected && out.Version == n+1 {
					return true, join(st, in.Payload)
				}
				return false, st
			}
			return n != in.Expected && out.Version == n, st
		case Read:
			return st == strings.Join(out.Payloads, "\x00"), st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		on := ""
		if in.Node != "" {
			on = " on " + in.Node
		}
		if in.Kind == Read {
			return fmt.Sprintf("read(%s)%s -> %d events", in.Stream, on, len(out.Payloads))
		}
		switch {
		case out.Unknown:
			return fmt.Sprintf("append(%s, v%d, %s)%s -> ?", in.Stream, in.Expected, in.Payload, on)
		case out.OK:
			return fmt.Sprintf("append(%s, v%d, %s)%s -> ok v%d", in.Stream, in.Expected, in.Payload, on, out.Version)
		}
		return fmt.Sprintf("append(%s, v%d, %s)%s -> conflict v%d", in.Stream, in.Expected, in.Payload, on, out.Version)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%d events", count(state.(string))) },
}

func count(st string) uint64 {
	if st == "" {
		return 0
	}
	return uint64(strings.Count(st, "\x00") + 1)
}

func join(st, p string) string {
	if st == "" {
		return p
	}
	return st + "\x00" + p
}

// Check reports whether the history is linearizable within timeout. It
// returns nil when it is, an error naming the result otherwise (a timeout
// counts as failure to prove, reported as such).
func Check(h *History, timeout time.Duration) error {
	res, _ := porcupine.CheckOperationsVerbose(Model, h.Operations(), timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Illegal:
		return fmt.Errorf("linear: history of %d operations is not linearizable", h.Len())
	}
	return fmt.Errorf("linear: could not decide linearizability of %d operations within %v", h.Len(), timeout)
}
