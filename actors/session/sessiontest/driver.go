// Package sessiontest drives the session core in memory the way the entity
// shell does (Decide with the version before the command, append, Evolve,
// then Effects and Reply with the version after it; OnActivate after a
// replay), and checks the core's promises as it goes. Tests of the core and of
// the session edge use it instead of a cluster.
package sessiontest

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

// Driver is one session grain in memory. Every Do and Reactivate checks, and
// reports through TB (when set) as test failures, that:
//
//   - Decide, Reply and Effects left the state they were given unchanged;
//   - the state's Version equals the stream version the driver counts;
//   - every event survives encoding as the log stores it;
//   - a replay of the stream (Reactivate) rebuilds exactly the same state.
type Driver struct {
	TB    testing.TB // nil: no checks reported
	Spec  entity.Spec[session.State]
	ID    string
	Epoch uint64
	Now   time.Time
	State session.State
	// Log holds the stream: Log[i] has version i+1.
	Log []proto.Message
	// Delivered collects, per receiving participant, every Deliver pushed
	// to it (by Do or Reactivate), in order.
	Delivered map[string][]*sessionpb.Deliver
}

// New returns a driver for session code with an empty stream, at now.
func New(tb testing.TB, code string, now time.Time) *Driver {
	s := session.Spec()
	return &Driver{TB: tb, Spec: s, ID: code, Epoch: 1, Now: now, State: s.Initial(code), Delivered: map[string][]*sessionpb.Deliver{}}
}

// Version is the stream's version.
func (d *Driver) Version() uint64 { return uint64(len(d.Log)) }

// Advance moves the clock.
func (d *Driver) Advance(dt time.Duration) { d.Now = d.Now.Add(dt) }

func (d *Driver) errorf(format string, args ...any) {
	if d.TB != nil {
		d.TB.Helper()
		d.TB.Errorf(format, args...)
	}
}

// Do handles one command as the shell does. On a rejection nothing is
// written and err is what Decide returned.
func (d *Driver) Do(cmd proto.Message) (reply proto.Message, effects []entity.Effect, err error) {
	if d.TB != nil {
		d.TB.Helper()
	}
	env := entity.Env{ID: d.ID, Version: d.Version(), Epoch: d.Epoch, Now: d.Now}
	prior := d.State
	before := Snapshot(d.State)
	evs, err := d.Spec.Decide(d.State, cmd, env)
	if !Equal(before, d.State) {
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
		snap := Snapshot(old)
		d.State = d.Spec.Evolve(old, ev)
		if !Equal(snap, old) {
			d.errorf("Evolve(%T) modified its input state", ev)
		}
		d.Log = append(d.Log, ev)
	}
	if d.State.Version != d.Version() {
		d.errorf("state.Version %d, stream version %d", d.State.Version, d.Version())
	}
	env.Version, env.Appended = d.Version(), len(evs)
	after := Snapshot(d.State)
	effects = d.Spec.Effects(prior, d.State, cmd, evs, env)
	reply = d.Spec.Reply(d.State, cmd, env)
	if !Equal(after, d.State) {
		d.errorf("Effects or Reply for %T modified the state", cmd)
	}
	d.collect(effects)
	return reply, effects, nil
}

// Reactivate replays the stream (decoding every event as the log would) into
// a fresh state, as a new activation does, checks that it equals the live
// state, and returns OnActivate's effects.
func (d *Driver) Reactivate() []entity.Effect {
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
	if !Equal(s, d.State) {
		d.errorf("replayed state differs from the live state:\nreplayed %+v\nlive     %+v", s, d.State)
	}
	d.State = s
	d.Epoch++
	effs := d.Spec.OnActivate(d.State, entity.Env{ID: d.ID, Version: d.Version(), Epoch: d.Epoch, Now: d.Now})
	d.collect(effs)
	return effs
}

func (d *Driver) collect(effs []entity.Effect) {
	for _, e := range effs {
		switch m := e.Msg.(type) {
		case *sessionpb.Deliver:
			d.Delivered[m.GetTo()] = append(d.Delivered[m.GetTo()], m)
		case *sessionpb.Delivers:
			for _, it := range m.GetItems() {
				d.Delivered[it.GetTo()] = append(d.Delivered[it.GetTo()], it)
			}
		}
	}
}

// MeantFor computes from the stream alone, independently of the state's
// heads, the seqs of the events meant for each participant of the current
// instance, starting with its own Joined.
func (d *Driver) MeantFor() map[string][]uint64 {
	out := map[string][]uint64{}
	left := map[string]bool{}
	for i, ev := range d.Log {
		v := uint64(i + 1)
		if _, ok := ev.(*sessionpb.Opened); ok {
			out, left = map[string][]uint64{}, map[string]bool{}
			continue
		}
		for r := range out {
			if !left[r] && session.MeantFor(ev, r) {
				out[r] = append(out[r], v)
			}
		}
		switch e := ev.(type) {
		case *sessionpb.Joined:
			out[e.GetParticipant()] = []uint64{v}
		case *sessionpb.Left:
			left[e.GetParticipant()] = true
		}
	}
	return out
}

// CheckHeads compares every participant's Head and PrevHead with MeantFor
// and returns the first difference.
func (d *Driver) CheckHeads() error {
	want := d.MeantFor()
	if len(want) != len(d.State.Participants) {
		return fmt.Errorf("%d participants in the stream, %d in the state", len(want), len(d.State.Participants))
	}
	for _, p := range d.State.Participants {
		seqs := want[p.ID]
		if len(seqs) == 0 || seqs[0] != p.JoinedSeq {
			return fmt.Errorf("participant %s: joined at %d, stream says %v", p.ID, p.JoinedSeq, seqs)
		}
		head, prev := seqs[len(seqs)-1], uint64(0)
		if len(seqs) > 1 {
			prev = seqs[len(seqs)-2]
		}
		if p.Head != head || p.PrevHead != prev {
			return fmt.Errorf("participant %s: head %d prev %d, stream says %d prev %d (%v)", p.ID, p.Head, p.PrevHead, head, prev, seqs)
		}
	}
	return nil
}

// Snapshot returns a deep copy of s.
func Snapshot(s session.State) session.State {
	c := s
	if s.Limits != nil {
		c.Limits = proto.Clone(s.Limits).(*sessionpb.Limits)
	}
	c.JoinSecretHash = bytes.Clone(s.JoinSecretHash)
	c.Participants = slices.Clone(s.Participants)
	for i := range c.Participants {
		c.Participants[i].ResumeTokenHash = bytes.Clone(c.Participants[i].ResumeTokenHash)
	}
	return c
}

// Equal reports whether two states are equal in every field.
func Equal(a, b session.State) bool {
	if !proto.Equal(a.Limits, b.Limits) {
		return false
	}
	a.Limits, b.Limits = nil, nil
	if len(a.Participants) == 0 && len(b.Participants) == 0 {
		a.Participants, b.Participants = nil, nil
	}
	return reflect.DeepEqual(a, b)
}
