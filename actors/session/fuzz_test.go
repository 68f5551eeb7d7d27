package session_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

var reasons = map[string]bool{
	session.ReasonUnknownSession: true, session.ReasonEnded: true, session.ReasonCodeInUse: true,
	session.ReasonBadSecret: true, session.ReasonFull: true, session.ReasonUnknownParticipant: true,
	session.ReasonBadResumeToken: true, session.ReasonResumeFromFuture: true, session.ReasonFrameTooLarge: true,
	session.ReasonBadSequence: true, session.ReasonNotHost: true, session.ReasonBadRequest: true,
}

// fuzzCmd builds one command from the bytes at b (reading as many as it
// needs; missing bytes are zero).
type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) next() byte {
	if r.i >= len(r.b) {
		r.i++
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *byteReader) done() bool { return r.i >= len(r.b) }

func (r *byteReader) participant() string { return fmt.Sprintf("p%d", 1+r.next()%7) }

func (r *byteReader) conn() *sessionpb.Conn { return conn(fmt.Sprint(r.next() % 3)) }

func (r *byteReader) payload() []byte { return make([]byte, r.next()%10) }

func (r *byteReader) command(cseq map[string]uint64, head func(string) uint64) proto.Message {
	switch r.next() % 13 {
	case 0:
		o := openCmd()
		o.Limits = &sessionpb.Limits{MaxParticipants: 2 + uint32(r.next()%4), MaxFrameBytes: 8, IdleTimeoutS: 60}
		if r.next()%8 == 0 {
			o.HostName = ""
		}
		return o
	case 1, 2:
		p := fmt.Sprintf("p%d", 2+r.next()%6)
		j := joinCmd("guest", p)
		if r.next()%8 == 0 {
			j.JoinSecret = []byte("nope")
		}
		return j
	case 3:
		p := r.participant()
		a := &sessionpb.Attach{Participant: p, ResumeToken: token(p), Conn: r.conn(), Resumed: r.next()%2 == 0}
		a.LastSeq = head(p)
		switch r.next() % 4 {
		case 0:
			a.LastSeq++
		case 1:
			a.ResumeToken = []byte("bad")
		}
		return a
	case 4:
		return &sessionpb.Detach{Participant: r.participant(), Conn: r.conn()}
	case 5:
		return &sessionpb.Leave{Participant: r.participant()}
	case 6, 7, 8:
		p := r.participant()
		c := cseq[p] + 1
		switch r.next() % 6 {
		case 0:
			c = 0
		case 1:
			c = cseq[p]
		case 2:
			c = cseq[p] + 2
		}
		return &sessionpb.SendFrame{Participant: p, Cseq: c, Payload: r.payload()}
	case 9:
		return &sessionpb.StreamFrame{Participant: r.participant(), Payload: r.payload()}
	case 10:
		p := r.participant()
		return &sessionpb.Ack{Participant: p, Seq: head(p) - uint64(r.next()%3)}
	case 11:
		if r.next()%2 == 0 {
			return &sessionpb.End{By: r.participant()}
		}
		return &sessionpb.End{By: "admin:ops", Reason: "maintenance"}
	default:
		if r.next()%2 == 0 {
			return &sessionpb.Get{}
		}
		return &sessionpb.Expire{}
	}
}

// FuzzDecide feeds command sequences built from the fuzz bytes through the
// core as the shell would, reactivating now and then, and checks that
// nothing panics, every rejection has a documented reason, versions match the
// stream, no more than max_participants are present, heads only move forward
// and agree with the stream, and every participant's pushes form an unbroken
// prev_seq chain over the events meant for it.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 3, 1, 2, 0, 6, 1, 1, 4, 6, 2, 1, 3, 10, 1, 1})
	f.Add([]byte{0, 0, 1, 1, 0, 1, 1, 2, 0, 1, 3, 0, 5, 1, 6, 0, 2, 3, 11, 1, 0, 0, 0, 0, 12, 0})
	f.Add([]byte{0, 2, 1, 3, 1, 2, 5, 1, 2, 4, 1, 0, 3, 1, 1, 0, 0, 9, 0, 5, 6, 1, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDriver(t)
		r := &byteReader{b: data}
		cseq := map[string]uint64{}
		type mark struct{ joined, head uint64 }
		seen := map[string]mark{}
		head := func(p string) uint64 {
			if q, ok := d.State.Participant(p); ok {
				return q.Head
			}
			return 0
		}
		for steps := 0; !r.done() && steps < 300; steps++ {
			if b := r.next(); b%16 == 0 {
				d.Reactivate()
			} else if b%16 == 1 {
				d.Advance(time.Duration(b) * time.Second)
			}
			cmd := r.command(cseq, head)
			_, effs, err := d.Do(cmd)
			if err != nil {
				if !reasons[reasonOf(err)] {
					t.Fatalf("%T rejected without a documented reason: %v", cmd, err)
				}
				continue
			}
			if _, ok := cmd.(*sessionpb.Open); ok {
				cseq = map[string]uint64{}
			}
			for _, p := range d.State.Participants {
				cseq[p.ID] = p.LastCseq
			}
			for _, e := range effs {
				if e.Address == "" || e.ID == "" || e.Msg == nil {
					t.Fatalf("effect without an address: %+v", e)
				}
			}
			s := d.State
			if s.Status == session.Live && s.Present() > int(s.Limits.GetMaxParticipants()) {
				t.Fatalf("%d present, max %d", s.Present(), s.Limits.GetMaxParticipants())
			}
			for _, p := range s.Participants {
				if p.Head > s.Version || p.PrevHead >= p.Head && p.PrevHead != 0 || p.Head < p.JoinedSeq {
					t.Fatalf("participant %+v at version %d", p, s.Version)
				}
				if m, ok := seen[p.ID]; ok && m.joined == p.JoinedSeq && p.Head < m.head {
					t.Fatalf("head of %s went back from %d to %d", p.ID, m.head, p.Head)
				}
				seen[p.ID] = mark{p.JoinedSeq, p.Head}
			}
			if err := d.CheckHeads(); err != nil {
				t.Fatal(err)
			}
		}
		d.Reactivate()
		// Pushes: each one is an event meant for its receiver, with the
		// previous such event as prev_seq.
		meant := map[string]map[uint64]uint64{} // participant → seq → prev
		for p, seqs := range d.MeantFor() {
			meant[p] = map[uint64]uint64{}
			for i := 1; i < len(seqs); i++ {
				meant[p][seqs[i]] = seqs[i-1]
			}
		}
		opened := d.State.OpenedSeq
		for p, ds := range d.Delivered {
			for _, m := range ds {
				if m.GetSeq() <= opened {
					continue // an earlier instance
				}
				prev, ok := meant[p][m.GetSeq()]
				if !ok || prev != m.GetPrevSeq() {
					t.Fatalf("push to %s seq %d prev %d; the stream says meant=%v prev %d", p, m.GetSeq(), m.GetPrevSeq(), ok, prev)
				}
			}
		}
	})
}
