// Package session is the pure core of the relayed-session job: a session
// grain whose identity is its 9-digit code and whose state is the stream
// "session/<code>" (see sessionpb/session.proto for every message).
//
// The core does no I/O and reads no clock: time comes from entity.Env.Now,
// and secrets, codes and resume tokens are made by the edge (NewCode,
// NewSecret in secrets.go) and reach the core only as hashes or as values to
// compare with stored hashes.
//
// The rules, briefly:
//
//   - Open starts an instance on a code that was never opened or whose
//     session ended (a reopen continues the same stream but resets everything
//     else); the opener becomes "p1", the host. Join adds a guest "p<N>" given
//     the join secret, while fewer than max_participants have not left.
//   - Every event has a seq: its stream version. An event is meant for
//     participant r (see MeantFor) when it is a frame from, or the Joined or
//     Left of, another participant, or Ended; and it comes after r joined and
//     before r left. The state keeps each participant's head (the seq of the
//     newest event meant for it) and the head before it, so every Deliver
//     pushed to r carries prev_seq and r can tell when it missed something.
//   - Durable frames carry a per-participant cseq 1, 2, 3...: the next one is
//     written, older ones are acknowledged as duplicates, a gap is refused.
//     Stream frames are relayed by Effects and never written.
//   - Attach (re)binds a participant to a connection given its resume token:
//     a resume (resumed set) to any connection, otherwise (a node
//     re-attaching a connection it holds) only to the connection the
//     participant is bound to (ReasonSuperseded); Detach unbinds it only
//     from that same connection; Leave is for good.
//   - End (by the host or an administrator) or Expire (past expires_at or
//     idle for idle_timeout_s) ends the instance; after that only Get, Expire,
//     Detach (which do nothing) and Open (a new instance) are accepted.
//
// Rejections are *entity.Rejection values whose Reason is one of the Reason*
// constants; the edge maps them 1:1 to protocol error codes. A rejected
// command writes nothing.
package session

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

// Kind is the entity kind of sessions; a session's stream is "session/<code>".
const Kind = "session"

// Rejection reasons (entity.Rejection.Reason), mapped 1:1 by the edge to
// protocol error codes.
const (
	// ReasonUnknownSession: no session was ever opened under the code.
	ReasonUnknownSession = "unknown_session"
	// ReasonEnded: the session under the code has ended.
	ReasonEnded = "session_ended"
	// ReasonCodeInUse: Open on a code whose session is live.
	ReasonCodeInUse = "code_in_use"
	// ReasonBadSecret: the join secret does not match.
	ReasonBadSecret = "bad_secret"
	// ReasonFull: max_participants participants have not left.
	ReasonFull = "session_full"
	// ReasonUnknownParticipant: no such participant, or it has left.
	ReasonUnknownParticipant = "unknown_participant"
	// ReasonBadResumeToken: the resume token does not match.
	ReasonBadResumeToken = "bad_resume_token"
	// ReasonResumeFromFuture: a last_seq or ack past the participant's head.
	ReasonResumeFromFuture = "resume_from_future"
	// ReasonFrameTooLarge: a payload over limits.max_frame_bytes.
	ReasonFrameTooLarge = "frame_too_large"
	// ReasonBadSequence: a durable frame's cseq skips ahead.
	ReasonBadSequence = "bad_sequence"
	// ReasonNotHost: End by someone other than the host or an administrator.
	ReasonNotHost = "not_host"
	// ReasonBadRequest: a malformed command (the message names every bad
	// field).
	ReasonBadRequest = "bad_request"
	// ReasonSuperseded: an Attach that is not a resume (a node re-attaching
	// a connection it holds) for a connection the participant no longer
	// uses: it resumed through a newer one. Never sent to clients: the node
	// closes the stale connection.
	ReasonSuperseded = "superseded"
)

// Text limits (bytes).
const (
	MaxNameBytes   = 64  // host_user, host_name, guest name, admin user
	MaxAddrBytes   = 128 // client addresses
	MaxReasonBytes = 256 // End.reason
	MaxConnBytes   = 256 // each field of a Conn
	HashBytes      = 32  // SHA-256
)

// HostID is the participant id of the host.
const HostID = "p1"

// TouchEvery is how old the last recorded activity must be before a Touch
// writes an Active event.
const TouchEvery = time.Minute

// Spec returns the session kind's core for the entity shell.
func Spec() entity.Spec[State] {
	return entity.Spec[State]{
		Kind:       Kind,
		Initial:    Initial,
		Decide:     Decide,
		Evolve:     Evolve,
		Reply:      Reply,
		Effects:    Effects,
		OnActivate: OnActivate,
		Immediate:  Immediate,
	}
}

// Immediate: stream frames are relayed at once, on the committed
// participants, never held behind the session's durable frames being
// appended (media must not wait for the log; the two kinds were never
// ordered with each other).
func Immediate(cmd proto.Message) bool {
	_, ok := cmd.(*sessionpb.StreamFrame)
	return ok
}

// ValidCode reports whether code is a session code: exactly 9 ASCII digits,
// the first not 0.
func ValidCode(code string) bool {
	if len(code) != 9 || code[0] == '0' {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

func reject(reason, format string, args ...any) error { return entity.Reject(reason, format, args...) }

func badRequest(cmd string, bad []string) error {
	return reject(ReasonBadRequest, "%s: %s", cmd, strings.Join(bad, "; "))
}

// checkText appends a problem with text field v to bad: more than maxBytes,
// fewer than minBytes, invalid UTF-8 or a control character.
func checkText(bad []string, field, v string, minBytes, maxBytes int) []string {
	switch {
	case len(v) < minBytes && minBytes == 1:
		return append(bad, field+" is empty")
	case len(v) < minBytes || len(v) > maxBytes:
		return append(bad, fmt.Sprintf("%s has %d bytes, not %d..%d", field, len(v), minBytes, maxBytes))
	case !utf8.ValidString(v):
		return append(bad, field+" is not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return append(bad, field+" contains a control character")
	}
	return bad
}

func checkHash(bad []string, field string, h []byte) []string {
	if len(h) != HashBytes {
		return append(bad, fmt.Sprintf("%s has %d bytes, not %d (SHA-256)", field, len(h), HashBytes))
	}
	return bad
}

func checkConn(bad []string, field string, c *sessionpb.Conn) []string {
	bad = checkText(bad, field+".address", c.GetAddress(), 1, MaxConnBytes)
	bad = checkText(bad, field+".id", c.GetId(), 1, MaxConnBytes)
	return checkText(bad, field+".node", c.GetNode(), 0, MaxConnBytes)
}

// sameConn: the same actor (address and id; the node is informational).
func sameConn(a Conn, c *sessionpb.Conn) bool {
	return a.Address == c.GetAddress() && a.ID == c.GetId()
}

// matches compares SHA-256(secret) with hash in constant time.
func matches(secret, hash []byte) bool {
	return len(hash) == HashBytes && subtle.ConstantTimeCompare(HashSecret(secret), hash) == 1
}

// Decide returns the events cmd produces in state s (none for a query or a
// no-op) or an *entity.Rejection. It never modifies s.
func Decide(s State, cmd proto.Message, env entity.Env) ([]proto.Message, error) {
	now := env.Now.UnixMilli()
	if c, ok := cmd.(*sessionpb.Open); ok {
		return decideOpen(s, c, env)
	}
	switch cmd.(type) {
	case *sessionpb.Join, *sessionpb.Attach, *sessionpb.Detach, *sessionpb.Leave, *sessionpb.SendFrame, *sessionpb.SendFrames,
		*sessionpb.StreamFrame, *sessionpb.Ack, *sessionpb.End, *sessionpb.Expire, *sessionpb.Get, *sessionpb.Touch:
	default:
		return nil, reject(ReasonBadRequest, "%T is not a session command", cmd)
	}
	switch s.Status {
	case NeverOpened:
		return nil, reject(ReasonUnknownSession, "no session %s", env.ID)
	case Ended:
		switch c := cmd.(type) {
		case *sessionpb.Get, *sessionpb.Expire, *sessionpb.Detach:
			return nil, nil
		case *sessionpb.Attach:
			// A participant that was away when the session ended may still
			// resume to read what it missed, up to the "ended" notice;
			// nothing is written.
			if c.GetResumed() {
				_, err := resumable(s, c, env)
				return nil, err
			}
		}
		return nil, reject(ReasonEnded, "session %s ended (%s by %s)", env.ID, s.EndReason, s.EndedBy)
	}

	switch c := cmd.(type) {
	case *sessionpb.Join:
		var bad []string
		bad = checkText(bad, "name", c.GetName(), 1, MaxNameBytes)
		bad = checkText(bad, "addr", c.GetAddr(), 0, MaxAddrBytes)
		bad = checkHash(bad, "resume_token_hash", c.GetResumeTokenHash())
		bad = checkConn(bad, "conn", c.GetConn())
		if len(bad) > 0 {
			return nil, badRequest("join", bad)
		}
		if !matches(c.GetJoinSecret(), s.JoinSecretHash) {
			return nil, reject(ReasonBadSecret, "wrong join secret for session %s", env.ID)
		}
		if n := s.Present(); n >= int(s.Limits.GetMaxParticipants()) {
			return nil, reject(ReasonFull, "session %s is full (%d of %d participants)", env.ID, n, s.Limits.GetMaxParticipants())
		}
		return []proto.Message{&sessionpb.Joined{
			Participant:     fmt.Sprintf("p%d", s.Joins+1),
			Role:            "guest",
			Name:            c.GetName(),
			Addr:            c.GetAddr(),
			ResumeTokenHash: c.GetResumeTokenHash(),
			Conn:            c.GetConn(),
			AtUnixMs:        now,
		}}, nil

	case *sessionpb.Attach:
		var bad []string
		bad = checkConn(bad, "conn", c.GetConn())
		bad = checkText(bad, "addr", c.GetAddr(), 0, MaxAddrBytes)
		if len(bad) > 0 {
			return nil, badRequest("attach", bad)
		}
		p, err := resumable(s, c, env)
		if err != nil {
			return nil, err
		}
		if !c.GetResumed() && !sameConn(p.Conn, c.GetConn()) {
			// A node re-attaching a connection it still holds must not take
			// the participant back from the newer connection it resumed on
			// (the client left the old one, but its close has not reached
			// that node yet): pushes would go to a dead connection.
			return nil, reject(ReasonSuperseded, "participant %s is attached through a newer connection", p.ID)
		}
		if p.Attached && !c.GetResumed() {
			return nil, nil
		}
		return []proto.Message{&sessionpb.Attached{
			Participant: p.ID,
			Conn:        c.GetConn(),
			Addr:        c.GetAddr(),
			Resumed:     c.GetResumed(),
			LastSeq:     c.GetLastSeq(),
			AtUnixMs:    now,
		}}, nil

	case *sessionpb.Detach:
		p, ok := s.Participant(c.GetParticipant())
		if !ok || p.Left || !p.Attached || !sameConn(p.Conn, c.GetConn()) {
			return nil, nil
		}
		return []proto.Message{&sessionpb.Detached{Participant: p.ID, Conn: c.GetConn(), AtUnixMs: now}}, nil

	case *sessionpb.Leave:
		p, ok := s.Participant(c.GetParticipant())
		if !ok {
			return nil, reject(ReasonUnknownParticipant, "no participant %q in session %s", c.GetParticipant(), env.ID)
		}
		if p.Left {
			return nil, nil // already left: a retried Leave
		}
		return []proto.Message{&sessionpb.Left{Participant: p.ID, AtUnixMs: now}}, nil

	case *sessionpb.SendFrame:
		p, err := present(s, c.GetParticipant(), env)
		if err != nil {
			return nil, err
		}
		if c.GetCseq() == 0 {
			return nil, reject(ReasonBadRequest, "send_frame: cseq is 0 (durable frames are numbered from 1)")
		}
		if err := checkSize(s, c.GetPayload()); err != nil {
			return nil, err
		}
		switch {
		case c.GetCseq() <= p.LastCseq:
			return nil, nil // duplicate: acknowledged again by Reply
		case c.GetCseq() > p.LastCseq+1:
			return nil, reject(ReasonBadSequence, "cseq %d from participant %s skips ahead: the next is %d", c.GetCseq(), p.ID, p.LastCseq+1)
		}
		return []proto.Message{&sessionpb.FrameSent{From: p.ID, Cseq: c.GetCseq(), Payload: c.GetPayload(), AtUnixMs: now}}, nil

	case *sessionpb.SendFrames:
		p, err := present(s, c.GetParticipant(), env)
		if err != nil {
			return nil, err
		}
		last := p.LastCseq
		var evs []proto.Message
		for _, f := range c.GetFrames() {
			if f.GetCseq() == 0 || f.GetCseq() > last+1 || checkSize(s, f.GetPayload()) != nil {
				break // left out: sent again alone, it gets its refusal
			}
			if f.GetCseq() <= last {
				continue // duplicate
			}
			evs = append(evs, &sessionpb.FrameSent{From: p.ID, Cseq: f.GetCseq(), Payload: f.GetPayload(), AtUnixMs: now})
			last = f.GetCseq()
		}
		return evs, nil

	case *sessionpb.StreamFrame:
		if _, err := present(s, c.GetParticipant(), env); err != nil {
			return nil, err
		}
		return nil, checkSize(s, c.GetPayload())

	case *sessionpb.Touch:
		p, err := present(s, c.GetParticipant(), env)
		if err != nil {
			return nil, err
		}
		if now-s.LastActivity < TouchEvery.Milliseconds() {
			return nil, nil
		}
		return []proto.Message{&sessionpb.Active{Participant: p.ID, AtUnixMs: now}}, nil

	case *sessionpb.Ack:
		p, err := present(s, c.GetParticipant(), env)
		if err != nil {
			return nil, err
		}
		if c.GetSeq() > p.Head {
			return nil, reject(ReasonResumeFromFuture, "ack of seq %d is past the newest seq %d sent to participant %s", c.GetSeq(), p.Head, p.ID)
		}
		if c.GetSeq() <= p.Acked {
			return nil, nil
		}
		return []proto.Message{&sessionpb.Acknowledged{Participant: p.ID, Seq: c.GetSeq()}}, nil

	case *sessionpb.End:
		by, reason := c.GetBy(), c.GetReason()
		var bad []string
		bad = checkText(bad, "reason", reason, 0, MaxReasonBytes)
		user, admin := strings.CutPrefix(by, "admin:")
		switch {
		case admin && user != "":
			bad = checkText(bad, "by (administrator user)", user, 1, MaxNameBytes)
			if reason == "" {
				reason = "admin"
			}
		case by == HostID:
			if p, ok := s.Participant(HostID); !ok || p.Left {
				return nil, reject(ReasonNotHost, "the host of session %s has left and can no longer end it", env.ID)
			}
			if reason == "" {
				reason = "host"
			}
		default:
			return nil, reject(ReasonNotHost, "%q may not end session %s: only the host (p1) or an administrator (admin:<user>)", by, env.ID)
		}
		if len(bad) > 0 {
			return nil, badRequest("end", bad)
		}
		return []proto.Message{&sessionpb.Ended{By: by, Reason: reason, AtUnixMs: now}}, nil

	case *sessionpb.Expire:
		if ev := expiry(s, now); ev != nil {
			return []proto.Message{ev}, nil
		}
		return nil, nil

	case *sessionpb.Get:
		return nil, nil
	}
	return nil, reject(ReasonBadRequest, "%T is not a session command", cmd) // unreachable
}

// expiry returns the Ended event Expire records at now, or nil.
func expiry(s State, now int64) *sessionpb.Ended {
	if exp := s.Limits.GetExpiresAtUnixMs(); exp > 0 && now >= exp {
		return &sessionpb.Ended{By: "system", Reason: "expired", AtUnixMs: now}
	}
	if idle := int64(s.Limits.GetIdleTimeoutS()); idle > 0 && now-s.LastActivity >= idle*1000 {
		return &sessionpb.Ended{By: "system", Reason: "idle", AtUnixMs: now}
	}
	return nil
}

func decideOpen(s State, c *sessionpb.Open, env entity.Env) ([]proto.Message, error) {
	if s.Status == Live {
		return nil, reject(ReasonCodeInUse, "code %s is in use by a live session", env.ID)
	}
	var bad []string
	if !ValidCode(env.ID) {
		bad = append(bad, fmt.Sprintf("code %q is not 9 digits without a leading 0", env.ID))
	}
	bad = checkText(bad, "host_user", c.GetHostUser(), 1, MaxNameBytes)
	if err := auth.CheckTenant(c.GetTenant()); err != nil {
		bad = append(bad, "tenant: "+err.Error())
	}
	bad = checkText(bad, "host_name", c.GetHostName(), 1, MaxNameBytes)
	bad = checkText(bad, "host_addr", c.GetHostAddr(), 0, MaxAddrBytes)
	bad = checkHash(bad, "join_secret_hash", c.GetJoinSecretHash())
	bad = checkHash(bad, "resume_token_hash", c.GetResumeTokenHash())
	bad = checkConn(bad, "conn", c.GetConn())
	limits := withDefaults(c.GetLimits())
	bad = append(bad, checkLimits(limits, env.Now)...)
	if len(bad) > 0 {
		return nil, badRequest("open", bad)
	}
	now := env.Now.UnixMilli()
	return []proto.Message{
		&sessionpb.Opened{
			Code:           env.ID,
			HostUser:       c.GetHostUser(),
			Limits:         limits,
			JoinSecretHash: c.GetJoinSecretHash(),
			AtUnixMs:       now,
			Tenant:         c.GetTenant(),
		},
		&sessionpb.Joined{
			Participant:     HostID,
			Role:            "host",
			Name:            c.GetHostName(),
			Addr:            c.GetHostAddr(),
			User:            c.GetHostUser(),
			ResumeTokenHash: c.GetResumeTokenHash(),
			Conn:            c.GetConn(),
			AtUnixMs:        now,
		},
	}, nil
}

// present returns participant id if it exists and has not left.
// resumable checks an Attach: a present participant, its resume token, and a
// last_seq it was sent.
func resumable(s State, c *sessionpb.Attach, env entity.Env) (Participant, error) {
	p, err := present(s, c.GetParticipant(), env)
	if err != nil {
		return p, err
	}
	if !matches(c.GetResumeToken(), p.ResumeTokenHash) {
		return p, reject(ReasonBadResumeToken, "wrong resume token for participant %s", p.ID)
	}
	if c.GetLastSeq() > p.Head {
		return p, reject(ReasonResumeFromFuture, "last_seq %d is past the newest seq %d sent to participant %s", c.GetLastSeq(), p.Head, p.ID)
	}
	return p, nil
}

func present(s State, id string, env entity.Env) (Participant, error) {
	p, ok := s.Participant(id)
	switch {
	case !ok:
		return p, reject(ReasonUnknownParticipant, "no participant %q in session %s", id, env.ID)
	case p.Left:
		return p, reject(ReasonUnknownParticipant, "participant %s has left session %s", id, env.ID)
	}
	return p, nil
}

func checkSize(s State, payload []byte) error {
	if max := s.Limits.GetMaxFrameBytes(); len(payload) > int(max) {
		return reject(ReasonFrameTooLarge, "frame of %d bytes is over the session's limit of %d", len(payload), max)
	}
	return nil
}

// Reply answers cmd given the state after its events (env.Version is the
// version after them): Welcome for Open, Join and Attach, FrameAccepted for
// SendFrame, Info for Get, nothing for StreamFrame and Ack (the shell sends
// no reply), Ok otherwise. It is called only for accepted
// commands.
//
// A SendFrame that wrote nothing (env.Appended == 0) was a duplicate; one
// whose cseq is the last accepted one still carries that frame's seq.
func Reply(s State, cmd proto.Message, env entity.Env) proto.Message {
	switch c := cmd.(type) {
	case *sessionpb.Open:
		return welcome(s, HostID, true)
	case *sessionpb.Join:
		if len(s.Participants) == 0 {
			return &sessionpb.Ok{}
		}
		return welcome(s, s.Participants[len(s.Participants)-1].ID, true)
	case *sessionpb.Attach:
		return welcome(s, c.GetParticipant(), false)
	case *sessionpb.SendFrame:
		p, _ := s.Participant(c.GetParticipant())
		r := &sessionpb.FrameAccepted{Cseq: c.GetCseq()}
		switch {
		case c.GetCseq() == p.LastCseq:
			r.Seq = p.LastFrameSeq
			r.Duplicate = env.Appended == 0
		case c.GetCseq() < p.LastCseq:
			r.Duplicate = true
		}
		return r
	case *sessionpb.SendFrames:
		// Cumulative: every frame up to the participant's last cseq is in.
		p, _ := s.Participant(c.GetParticipant())
		return &sessionpb.FrameAccepted{Cseq: p.LastCseq, Seq: p.LastFrameSeq, Duplicate: env.Appended == 0}
	case *sessionpb.Get:
		return info(s)
	case *sessionpb.StreamFrame, *sessionpb.Ack, *sessionpb.Touch:
		// Told, not asked: the edge sends these without waiting, and a
		// reply per stream frame would double the traffic.
		return nil
	}
	return &sessionpb.Ok{}
}

func welcome(s State, id string, joined bool) proto.Message {
	p, ok := s.Participant(id)
	if !ok {
		return &sessionpb.Ok{}
	}
	head := p.Head
	if joined {
		head = p.JoinedSeq
	}
	return &sessionpb.Welcome{
		Session:      s.Code,
		Participant:  p.ID,
		Role:         p.Role,
		Head:         head,
		Limits:       proto.Clone(s.Limits).(*sessionpb.Limits),
		Participants: participants(s),
		LastCseq:     p.LastCseq,
	}
}

func participants(s State) []*sessionpb.Participant {
	out := make([]*sessionpb.Participant, len(s.Participants))
	for i := range s.Participants {
		out[i] = s.Participants[i].proto()
	}
	return out
}

func info(s State) *sessionpb.Info {
	i := &sessionpb.Info{
		Code:           s.Code,
		Live:           s.Status == Live,
		Ended:          s.Status == Ended,
		HostUser:       s.HostUser,
		Tenant:         s.Tenant,
		Participants:   participants(s),
		Version:        s.Version,
		Frames:         s.Frames,
		Bytes:          s.Bytes,
		OpenedAtUnixMs: s.OpenedAt,
		EndedAtUnixMs:  s.EndedAt,
		EndedBy:        s.EndedBy,
		EndReason:      s.EndReason,
	}
	if s.Limits != nil {
		i.Limits = proto.Clone(s.Limits).(*sessionpb.Limits)
	}
	return i
}
