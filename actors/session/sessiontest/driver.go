// Package sessiontest drives the session core in memory the way the entity
// shell does (see actors/entity/entitytest, which also checks the core's
// promises as it goes) and collects what it pushes to participants. Tests of
// the core use it instead of a cluster.
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
	"github.com/switchboard-io/switchboard/actors/entity/entitytest"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

// Driver is one session grain in memory: an entitytest.Driver (which checks
// purity, versions, encoding and replay on every Do and Reactivate) that also
// collects the pushes.
type Driver struct {
	*entitytest.Driver[session.State]
	// Delivered collects, per receiving participant, every Deliver pushed
	// to it (by Do or Reactivate), in order.
	Delivered map[string][]*sessionpb.Deliver
}

// New returns a driver for session code with an empty stream, at now.
func New(tb testing.TB, code string, now time.Time) *Driver {
	d := &Driver{Driver: entitytest.New(tb, session.Spec(), code, now), Delivered: map[string][]*sessionpb.Deliver{}}
	d.Clone, d.Equal = Snapshot, Equal
	d.StateVersion = func(s session.State) uint64 { return s.Version }
	d.Collect = d.collect
	return d
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
