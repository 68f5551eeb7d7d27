// Package entitytest drives a job's pure core (an entity.Spec) in memory the
// way the entity shell does — Decide with the stream version before the
// command, append, Evolve, then Effects and Reply with the version after it;
// OnActivate after a replay — and checks the core's promises as it goes.
// Job-specific drivers (actors/session/sessiontest) build on it; tests of a
// core use it instead of a cluster.
package entitytest

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
)

// Driver is one grain in memory. Every Do and Reactivate checks, and reports
// through TB (when set) as test failures, that:
//
//   - Decide, Evolve, Reply and Effects left the state they were given
//     unchanged (compared with Clone's deep copy taken before the call);
//   - the state's version (when StateVersion is set) equals the stream version
//     the driver counts;
//   - every event survives encoding as the log stores it;
//   - a replay of the stream (Reactivate) rebuilds exactly the same state.
type Driver[S any] struct {
	TB    testing.TB // nil: no checks reported
	Spec  entity.Spec[S]
	ID    string
	Epoch uint64
	Now   time.Time
	State S
	// Log holds the stream: Log[i] has version i+1.
	Log []proto.Message

	// Clone returns a deep copy of a state (default: the value itself, which
	// is deep only for states without pointers, slices or maps).
	Clone func(S) S
	// Equal compares two states (default: reflect.DeepEqual).
	Equal func(a, b S) bool
	// StateVersion (optional) returns the version a state says it is at.
	StateVersion func(S) uint64
	// Collect (optional) sees the effects of every Do and Reactivate.
	Collect func([]entity.Effect)
}

// New returns a driver for entity id with an empty stream, at now, epoch 1.
func New[S any](tb testing.TB, spec entity.Spec[S], id string, now time.Time) *Driver[S] {
	return &Driver[S]{TB: tb, Spec: spec, ID: id, Epoch: 1, Now: now, State: spec.Initial(id)}
}

// Version is the stream's version.
func (d *Driver[S]) Version() uint64 { return uint64(len(d.Log)) }

// Advance moves the clock.
func (d *Driver[S]) Advance(dt time.Duration) { d.Now = d.Now.Add(dt) }

func (d *Driver[S]) errorf(format string, args ...any) {
	if d.TB != nil {
		d.TB.Helper()
		d.TB.Errorf(format, args...)
	}
}

func (d *Driver[S]) clone(s S) S {
	if d.Clone == nil {
		return s
	}
	return d.Clone(s)
}

func (d *Driver[S]) equal(a, b S) bool {
	if d.Equal == nil {
		return reflect.DeepEqual(a, b)
	}
	return d.Equal(a, b)
}

// Do handles one command as the shell does. On a rejection nothing is
// written and err is what Decide returned.
func (d *Driver[S]) Do(cmd proto.Message) (reply proto.Message, effects []entity.Effect, err error) {
	if d.TB != nil {
		d.TB.Helper()
	}
	env := entity.Env{ID: d.ID, Version: d.Version(), Epoch: d.Epoch, Now: d.Now}
	prior := d.State
	before := d.clone(d.State)
	evs, err := d.Spec.Decide(d.State, cmd, env)
	if !d.equal(before, d.State) {
		d.errorf("Decide(%T) modified the state it was given", cmd)
	}
	if err != nil {
		return nil, nil, err
	}
	for _, ev := range evs {
		if _, err := entity.EncodeEvent(ev); err != nil {
			d.errorf("event %T cannot be stored: %v", ev, err)
		}
		old := d.State
		snap := d.clone(old)
		d.State = d.Spec.Evolve(old, ev)
		if !d.equal(snap, old) {
			d.errorf("Evolve(%T) modified its input state", ev)
		}
		d.Log = append(d.Log, ev)
	}
	if d.StateVersion != nil && d.StateVersion(d.State) != d.Version() {
		d.errorf("state version %d, stream version %d", d.StateVersion(d.State), d.Version())
	}
	env.Version, env.Appended = d.Version(), len(evs)
	after := d.clone(d.State)
	if d.Spec.Effects != nil {
		effects = d.Spec.Effects(prior, d.State, cmd, evs, env)
	}
	reply = d.Spec.Reply(d.State, cmd, env)
	if !d.equal(after, d.State) {
		d.errorf("Effects or Reply for %T modified the state", cmd)
	}
	d.collect(effects)
	return reply, effects, nil
}

// Reactivate replays the stream (decoding every event as the log would) into
// a fresh state, as a new activation does, checks that it equals the live
// state, and returns OnActivate's effects (none when the spec has no
// OnActivate).
func (d *Driver[S]) Reactivate() []entity.Effect {
	if d.TB != nil {
		d.TB.Helper()
	}
	s := d.Spec.Initial(d.ID)
	for i, ev := range d.Log {
		e, err := entity.EncodeEvent(ev)
		if err != nil {
			d.errorf("encode event %d: %v", i+1, err)
			continue
		}
		dec, err := entity.DecodeEvent(e.Type, e.Data)
		if err != nil {
			d.errorf("decode event %d: %v", i+1, err)
			continue
		}
		s = d.Spec.Evolve(s, dec)
	}
	if !d.equal(s, d.State) {
		d.errorf("replayed state differs from the live state:\nreplayed %+v\nlive     %+v", s, d.State)
	}
	d.State = s
	d.Epoch++
	if d.Spec.OnActivate == nil {
		return nil
	}
	effs := d.Spec.OnActivate(d.State, entity.Env{ID: d.ID, Version: d.Version(), Epoch: d.Epoch, Now: d.Now})
	d.collect(effs)
	return effs
}

func (d *Driver[S]) collect(effs []entity.Effect) {
	if d.Collect != nil {
		d.Collect(effs)
	}
}
