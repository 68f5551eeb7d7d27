package session

import (
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

// DeliverFor builds the Deliver of event ev (at seq) for participant to,
// whose previous head is prev, from the event alone; ok is false when ev is
// not a deliverable event or not meant for to (see MeantFor). The edge can use
// it to rebuild, from the stream, the messages a participant missed; Effects
// uses it for live pushes. A "left" notice built here names only the
// participant; Effects adds its name and role from the state.
func DeliverFor(code, to string, seq, prev uint64, ev proto.Message) (d *sessionpb.Deliver, ok bool) {
	if !MeantFor(ev, to) {
		return nil, false
	}
	d = &sessionpb.Deliver{Session: code, To: to, Seq: seq, PrevSeq: prev}
	switch e := ev.(type) {
	case *sessionpb.FrameSent:
		d.From, d.Payload = e.GetFrom(), e.GetPayload()
	case *sessionpb.Joined:
		d.Notice = &sessionpb.Notice{Event: "joined", Participant: e.GetParticipant(), Name: e.GetName(), Role: e.GetRole()}
	case *sessionpb.Left:
		d.Notice = &sessionpb.Notice{Event: "left", Participant: e.GetParticipant()}
	case *sessionpb.Ended:
		d.Notice = &sessionpb.Notice{Event: "ended", Participant: e.GetBy(), Reason: e.GetReason()}
	}
	return d, true
}

func effect(p *Participant, m proto.Message) entity.Effect {
	return entity.Effect{Address: p.Conn.Address, ID: p.Conn.ID, Msg: m}
}

// Effects returns the pushes for an accepted command: state s is the state
// after evs, and event i of evs has seq env.Version-len(evs)+1+i. Pushes go
// only to attached participants that have not left:
//
//   - a Joined, Left or FrameSent: Deliver to every other participant;
//   - Ended: Deliver to every participant (the one who ended it included);
//   - Attached with resumed: Gap (from the resumed participant) to the others;
//   - StreamFrame (no event): StreamDeliver to the others.
//
// No command writes more than one event meant for the same participant, so
// each Deliver's prev_seq is the receiver's PrevHead.
func Effects(s State, cmd proto.Message, evs []proto.Message, env entity.Env) []entity.Effect {
	var out []entity.Effect
	if c, ok := cmd.(*sessionpb.StreamFrame); ok && s.Status == Live {
		for i := range s.Participants {
			p := &s.Participants[i]
			if p.Attached && !p.Left && p.ID != c.GetParticipant() {
				out = append(out, effect(p, &sessionpb.StreamDeliver{Session: s.Code, To: p.ID, From: c.GetParticipant(), Payload: c.GetPayload()}))
			}
		}
	}
	first := env.Version - uint64(len(evs)) + 1
	for k, ev := range evs {
		seq := first + uint64(k)
		if a, ok := ev.(*sessionpb.Attached); ok && a.GetResumed() {
			for i := range s.Participants {
				p := &s.Participants[i]
				if p.Attached && !p.Left && p.ID != a.GetParticipant() {
					out = append(out, effect(p, &sessionpb.Gap{Session: s.Code, To: p.ID, From: a.GetParticipant()}))
				}
			}
			continue
		}
		var name, role string
		if l, ok := ev.(*sessionpb.Left); ok {
			if p, ok := s.Participant(l.GetParticipant()); ok {
				name, role = p.Name, p.Role
			}
		}
		for i := range s.Participants {
			p := &s.Participants[i]
			if !p.Attached || p.Left || p.Head != seq {
				continue
			}
			d, ok := DeliverFor(s.Code, p.ID, seq, p.PrevHead, ev)
			if !ok {
				continue
			}
			if d.Notice != nil && d.Notice.Event == "left" {
				d.Notice.Name, d.Notice.Role = name, role
			}
			out = append(out, effect(p, d))
		}
	}
	return out
}

// OnActivate tells every attached participant that has not left that the
// grain (re)activated: Sync with its head and gap set, since stream frames
// may have been lost and pushes may have been missed. This includes an ended
// session's participants, who may have missed the "ended" notice.
func OnActivate(s State, env entity.Env) []entity.Effect {
	var out []entity.Effect
	for i := range s.Participants {
		p := &s.Participants[i]
		if p.Attached && !p.Left {
			out = append(out, effect(p, &sessionpb.Sync{Session: s.Code, To: p.ID, Head: p.Head, Gap: true}))
		}
	}
	return out
}
