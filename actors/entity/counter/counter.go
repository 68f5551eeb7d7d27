// Package counter is a tiny entity kind used only by tests of the entity
// shell and of the cluster (it is linked into the switchboard binary only when
// built with the `testkinds` tag). It is also the smallest example of a job's
// pure core: Decide, Evolve and Reply over a state value.
package counter

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
)

// Kind is the entity kind name.
const Kind = "test.counter"

// State is a counter's state.
type State struct {
	Value int64
}

// Spec returns the counter's core; node names the node in replies.
func Spec(node string) entity.Spec[State] {
	return entity.Spec[State]{
		Kind:    Kind,
		Initial: func(string) State { return State{} },
		Decide:  Decide,
		Evolve:  Evolve,
		Reply: func(s State, _ proto.Message, env entity.Env) proto.Message {
			return &Value{Value: s.Value, Version: env.Version, Epoch: env.Epoch, Node: node}
		},
	}
}

// Decide: Add{delta≠0} records Added; Get records nothing.
func Decide(_ State, cmd proto.Message, _ entity.Env) ([]proto.Message, error) {
	switch c := cmd.(type) {
	case *Add:
		if c.GetDelta() == 0 {
			return nil, errors.New("delta must not be 0")
		}
		return []proto.Message{&Added{Delta: c.GetDelta()}}, nil
	case *Get:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown command %T", cmd)
}

// Evolve applies Added.
func Evolve(s State, ev proto.Message) State {
	if a, ok := ev.(*Added); ok {
		s.Value += a.GetDelta()
	}
	return s
}
