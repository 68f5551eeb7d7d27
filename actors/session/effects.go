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

// Effects returns the pushes for an accepted command: before and after are
// the states before and after evs, and event i of evs has seq
// env.Version-len(evs)+1+i. Pushes go only to participants attached (and
// not departed) after the command:
//
//   - a Joined, Left or FrameSent: Deliver to every other participant (the
//     several messages of one command for one receiver go as one Delivers);
//   - Ended: Deliver to every participant (the one who ended it included);
//   - Attached with resumed: Gap (from the resumed participant) to the others;
//   - StreamFrame (no event): StreamDeliver to the others.
//
// Each Deliver's prev_seq is the seq of the previous message meant for its
// receiver: its head before the command for the first, then the previous
// event of the command meant for it (a command may write several frames).
func Effects(before, s State, cmd proto.Message, evs []proto.Message, env entity.Env) []entity.Effect {
	var out []entity.Effect
	if c, ok := cmd.(*sessionpb.StreamFrame); ok && s.Status == Live {
		for i := range s.Participants {
			p := &s.Participants[i]
			if p.Attached && !p.Left && p.ID != c.GetParticipant() {
				out = append(out, effect(p, &sessionpb.StreamDeliver{Session: s.Code, To: p.ID, From: c.GetParticipant(), Payload: c.GetPayload()}))
			}
		}
	}
	if len(evs) == 0 {
		return out
	}
	first := env.Version - uint64(len(evs)) + 1
	for i := range s.Participants {
		p := &s.Participants[i]
		if !p.Attached || p.Left {
			continue
		}
		var prev uint64
		if b, ok := before.Participant(p.ID); ok && before.Status == Live {
			prev = b.Head
		}
		var ds []*sessionpb.Deliver
		for k, ev := range evs {
			seq := first + uint64(k)
			if _, ok := ev.(*sessionpb.Opened); ok {
				prev = 0 // a new instance: nothing before it is meant for anyone
				continue
			}
			if a, ok := ev.(*sessionpb.Attached); ok {
				if a.GetResumed() && a.GetParticipant() != p.ID {
					out = append(out, effect(p, &sessionpb.Gap{Session: s.Code, To: p.ID, From: a.GetParticipant()}))
				}
				continue
			}
			if j, ok := ev.(*sessionpb.Joined); ok && j.GetParticipant() == p.ID {
				prev = seq // its own joining: what follows is meant for it
				continue
			}
			d, ok := DeliverFor(s.Code, p.ID, seq, prev, ev)
			if !ok {
				continue
			}
			if d.Notice != nil && d.Notice.Event == "left" {
				if lp, ok := s.Participant(d.Notice.Participant); ok {
					d.Notice.Name, d.Notice.Role = lp.Name, lp.Role
				}
			}
			ds = append(ds, d)
			prev = seq
		}
		switch len(ds) {
		case 0:
		case 1:
			out = append(out, effect(p, ds[0]))
		default:
			out = append(out, effect(p, &sessionpb.Delivers{Items: ds}))
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
