package session

import (
	"bytes"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

// Status is the life-cycle stage of the session instance a State describes.
type Status int

const (
	// NeverOpened: the stream holds no Opened event yet.
	NeverOpened Status = iota
	// Live: opened and not ended.
	Live
	// Ended: the latest instance has ended; the code may be opened again.
	Ended
)

// String returns "never_opened", "live" or "ended".
func (s Status) String() string {
	switch s {
	case NeverOpened:
		return "never_opened"
	case Live:
		return "live"
	case Ended:
		return "ended"
	}
	return "unknown"
}

// Conn is the value form of sessionpb.Conn kept in the state.
type Conn struct {
	Address, ID, Node string
}

func connOf(c *sessionpb.Conn) Conn {
	return Conn{Address: c.GetAddress(), ID: c.GetId(), Node: c.GetNode()}
}

// Participant is one participant of the current instance. It holds only
// values and byte slices that are never modified after they are stored, so
// copying a Participant copies it completely.
type Participant struct {
	ID   string // "p1" (the host), "p2", ...
	Role string // "host" or "guest"
	Name string
	Addr string // client address at join or at the latest attach
	User string // the host's authenticated user; empty for guests
	// ResumeTokenHash is SHA-256 of the participant's resume token.
	ResumeTokenHash []byte
	Conn            Conn // the current (or latest) connection
	Attached        bool // Conn is live as far as the session knows
	Left            bool
	JoinedSeq       uint64 // seq (stream version) of its Joined event
	// Head is the seq of the newest event meant for this participant (its
	// own Joined event until something else is meant for it); PrevHead is
	// the head before that (0 = none). A Deliver for the event at Head
	// carries PrevHead as prev_seq.
	Head, PrevHead uint64
	Acked          uint64 // the newest seq it acknowledged
	LastCseq       uint64 // the newest durable frame cseq accepted from it
	LastFrameSeq   uint64 // the seq of that frame
}

func (p *Participant) proto() *sessionpb.Participant {
	return &sessionpb.Participant{Id: p.ID, Role: p.Role, Name: p.Name, Attached: p.Attached, Left: p.Left}
}

// State is the state of one session stream. It is a value: Evolve returns a
// new State and never modifies the one it is given (the participant slice is
// copied on write; byte slices and Limits are never modified once stored), so
// a State handed to Decide, Reply or Effects cannot change under them, and
// none of them modifies it.
type State struct {
	Code string // the entity id (the 9-digit code)
	// Version is the number of events ever applied: the stream's version.
	// It survives a reopen (a reopened code continues the same stream).
	Version uint64
	Status  Status

	// The current (or latest) instance; reset by Opened.
	HostUser       string
	Tenant         string            // the host's tenant ("" = none)
	Limits         *sessionpb.Limits // with defaults filled in; never modified
	JoinSecretHash []byte
	OpenedAt       int64 // Unix ms
	OpenedSeq      uint64
	EndedAt        int64 // Unix ms; 0 while live
	EndedBy        string
	EndReason      string
	EndedSeq       uint64
	Frames         uint64 // durable frames sent
	Bytes          uint64 // their payload bytes
	LastActivity   int64  // Unix ms of the latest Opened/Joined/Attached/FrameSent/Left/Active
	Joins          int    // Joined events of this instance
	Participants   []Participant
}

// Initial is the state of a session whose stream is empty.
func Initial(code string) State { return State{Code: code} }

// participant returns the index of participant id, or -1.
func (s *State) participant(id string) int {
	for i := range s.Participants {
		if s.Participants[i].ID == id {
			return i
		}
	}
	return -1
}

// Participant returns participant id and whether it exists (left or not).
func (s State) Participant(id string) (Participant, bool) {
	if i := s.participant(id); i >= 0 {
		return s.Participants[i], true
	}
	return Participant{}, false
}

// Present counts the participants that have not left.
func (s State) Present() int {
	n := 0
	for i := range s.Participants {
		if !s.Participants[i].Left {
			n++
		}
	}
	return n
}

// MeantFor reports whether event ev is delivered to participant r, judged by
// the event alone: a frame from another participant, another participant's
// Joined or Left, or Ended. Besides this, an event is meant for r only if it
// comes after r's own Joined event in the same instance (no Opened in
// between) and r had not left by then; a reader catching up from the stream
// starts after r's Joined (or after the client's last seq) and stops at r's
// Left or at the next Opened.
func MeantFor(ev proto.Message, r string) bool {
	switch e := ev.(type) {
	case *sessionpb.FrameSent:
		return e.GetFrom() != r
	case *sessionpb.Joined:
		return e.GetParticipant() != r
	case *sessionpb.Left:
		return e.GetParticipant() != r
	case *sessionpb.Ended:
		return true
	}
	return false
}

// LastFor reports whether, reading the stream forward, nothing after event
// ev is meant for participant r: ev is r's own Left, or Ended (itself meant
// for r), or Opened (a new instance whose participants are others, even
// where their ids repeat; ev itself is not meant for r). A reader catching
// up for r stops there.
func LastFor(ev proto.Message, r string) bool {
	switch e := ev.(type) {
	case *sessionpb.Left:
		return e.GetParticipant() == r
	case *sessionpb.Ended, *sessionpb.Opened:
		return true
	}
	return false
}

// Evolve applies one event and returns the new state; s itself is left
// unchanged. Every event counts for the version, known or not.
func Evolve(s State, ev proto.Message) State {
	s.Version++
	seq := s.Version
	switch e := ev.(type) {
	case *sessionpb.Opened:
		s = State{
			Code:           s.Code,
			Version:        s.Version,
			Status:         Live,
			HostUser:       e.GetHostUser(),
			Tenant:         e.GetTenant(),
			Limits:         proto.Clone(withDefaults(e.GetLimits())).(*sessionpb.Limits),
			JoinSecretHash: bytes.Clone(e.GetJoinSecretHash()),
			OpenedAt:       e.GetAtUnixMs(),
			OpenedSeq:      seq,
			LastActivity:   e.GetAtUnixMs(),
		}
		if s.Code == "" {
			s.Code = e.GetCode()
		}
	case *sessionpb.Joined:
		ps := s.deliver(ev, seq)
		ps = append(ps, Participant{
			ID:              e.GetParticipant(),
			Role:            e.GetRole(),
			Name:            e.GetName(),
			Addr:            e.GetAddr(),
			User:            e.GetUser(),
			ResumeTokenHash: bytes.Clone(e.GetResumeTokenHash()),
			Conn:            connOf(e.GetConn()),
			Attached:        true,
			JoinedSeq:       seq,
			Head:            seq,
		})
		s.Participants = ps
		s.Joins++
		s.LastActivity = e.GetAtUnixMs()
	case *sessionpb.Attached:
		s.Participants = s.update(e.GetParticipant(), func(p *Participant) {
			p.Conn = connOf(e.GetConn())
			p.Attached = true
			if e.GetAddr() != "" {
				p.Addr = e.GetAddr()
			}
		})
		s.LastActivity = e.GetAtUnixMs()
	case *sessionpb.Detached:
		s.Participants = s.update(e.GetParticipant(), func(p *Participant) { p.Attached = false })
	case *sessionpb.Left:
		ps := s.deliver(ev, seq)
		if i := s.participant(e.GetParticipant()); i >= 0 {
			ps[i].Left = true
			ps[i].Attached = false
		}
		s.Participants = ps
		s.LastActivity = e.GetAtUnixMs()
	case *sessionpb.FrameSent:
		ps := s.deliver(ev, seq)
		if i := s.participant(e.GetFrom()); i >= 0 {
			ps[i].LastCseq = e.GetCseq()
			ps[i].LastFrameSeq = seq
		}
		s.Participants = ps
		s.Frames++
		s.Bytes += uint64(len(e.GetPayload()))
		s.LastActivity = e.GetAtUnixMs()
	case *sessionpb.Active:
		s.LastActivity = e.GetAtUnixMs()
	case *sessionpb.Acknowledged:
		s.Participants = s.update(e.GetParticipant(), func(p *Participant) {
			p.Acked = max(p.Acked, e.GetSeq())
		})
	case *sessionpb.Ended:
		s.Participants = s.deliver(ev, seq)
		s.Status = Ended
		s.EndedAt = e.GetAtUnixMs()
		s.EndedBy = e.GetBy()
		s.EndReason = e.GetReason()
		s.EndedSeq = seq
	}
	return s
}

// deliver returns a copy of the participants with the heads of those ev is
// meant for moved to seq.
func (s *State) deliver(ev proto.Message, seq uint64) []Participant {
	ps := slices.Clone(s.Participants)
	for i := range ps {
		if !ps[i].Left && MeantFor(ev, ps[i].ID) {
			ps[i].PrevHead, ps[i].Head = ps[i].Head, seq
		}
	}
	return ps
}

// update returns a copy of the participants with f applied to participant
// id (unchanged when there is no such participant).
func (s *State) update(id string, f func(*Participant)) []Participant {
	i := s.participant(id)
	if i < 0 {
		return s.Participants
	}
	ps := slices.Clone(s.Participants)
	f(&ps[i])
	return ps
}
