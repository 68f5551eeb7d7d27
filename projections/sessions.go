package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/projections/viewspb"
)

// SessionsName is the name of the sessions projection.
const SessionsName = "sessions"

// Sessions folds the streams "session/<code>" into one record per session
// (live view, history, failover state) with indexes for the history search.
//
// Rows (relative keys; ms = 8-byte big-endian unix milliseconds):
//
//	r <code>                     → SessionRecord
//	l <opened ms> <code>         → (live sessions)
//	t <opened ms> <code>         → ended ms (8 bytes, 0 while live)
//	u <user> 0x00 <opened ms> <code>  → ended ms
//	a <addr> 0x00 <opened ms> <code>  → ended ms (every address of every participant)
//	n <tenant> 0x00 <opened ms> <code> → ended ms (sessions of a tenant's hosts)
//	m <minute>                   → sessions opened in that minute (8 bytes)
type Sessions struct{}

// Name implements Projection.
func (Sessions) Name() string { return SessionsName }

// Version implements Projection.
func (Sessions) Version() uint32 { return 3 }

const sessionPrefix = session.Kind + "/"

var (
	typeOpened       = string(proto.MessageName(&sessionpb.Opened{}))
	typeJoined       = string(proto.MessageName(&sessionpb.Joined{}))
	typeAttached     = string(proto.MessageName(&sessionpb.Attached{}))
	typeDetached     = string(proto.MessageName(&sessionpb.Detached{}))
	typeLeft         = string(proto.MessageName(&sessionpb.Left{}))
	typeFrameSent    = string(proto.MessageName(&sessionpb.FrameSent{}))
	typeActive       = string(proto.MessageName(&sessionpb.Active{}))
	typeAcknowledged = string(proto.MessageName(&sessionpb.Acknowledged{}))
	typeEnded        = string(proto.MessageName(&sessionpb.Ended{}))
)

// maxAddrs bounds the addresses kept per participant.
const maxAddrs = 8

// Apply implements Projection.
func (Sessions) Apply(w *Writer, evs []events.RecordedEvent) error {
	recs := map[string]*viewspb.SessionRecord{}
	var order []string
	load := func(code string) (*viewspb.SessionRecord, error) {
		if r, ok := recs[code]; ok {
			return r, nil
		}
		v, found, err := w.Get(recordKey(code))
		if err != nil {
			return nil, err
		}
		r := &viewspb.SessionRecord{Code: code}
		if found {
			if err := proto.Unmarshal(v, r); err != nil {
				return nil, fmt.Errorf("session record %s: %w", code, err)
			}
		}
		recs[code] = r
		order = append(order, code)
		return r, nil
	}
	for _, ev := range evs {
		code, ok := strings.CutPrefix(ev.Stream, sessionPrefix)
		if !ok || !session.ValidCode(code) {
			continue
		}
		r, err := load(code)
		if err != nil {
			return err
		}
		if err := foldSession(w, r, ev); err != nil {
			w.Skip(ev, err)
			continue
		}
		r.Version, r.LastPosition = ev.Version, ev.Position
	}
	for _, code := range order {
		v, err := proto.Marshal(recs[code])
		if err != nil {
			return fmt.Errorf("session record %s: %w", code, err)
		}
		if err := w.Set(recordKey(code), v); err != nil {
			return err
		}
	}
	return nil
}

// foldSession applies one event of the session's stream to its record and
// indexes. An error means the event was not used.
func foldSession(w *Writer, r *viewspb.SessionRecord, ev events.RecordedEvent) error {
	ms := ev.Time / 1e6
	switch ev.Type {
	case typeOpened:
		var e sessionpb.Opened
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		if r.OpenedAtUnixMs != 0 {
			return errors.New("session opened twice")
		}
		at := e.GetAtUnixMs()
		if at == 0 {
			at = ms
		}
		r.HostUser, r.OpenedAtUnixMs, r.Live, r.Tenant = e.GetHostUser(), at, true, e.GetTenant()
		r.MaxParticipants = e.GetLimits().GetMaxParticipants()
		r.ExpiresAtUnixMs = e.GetLimits().GetExpiresAtUnixMs()
		r.IdleTimeoutS = e.GetLimits().GetIdleTimeoutS()
		r.LastActivityUnixMs = at
		if err := w.Set(liveKey(at, r.Code), nil); err != nil {
			return err
		}
		if err := setIndexes(w, r); err != nil {
			return err
		}
		return bumpCounter(w, minuteKey('m', at))
	case typeJoined:
		var e sessionpb.Joined
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		p := &viewspb.ParticipantRecord{Id: e.GetParticipant(), Role: e.GetRole(), Name: e.GetName(), User: e.GetUser(),
			JoinedAtUnixMs: e.GetAtUnixMs(), Attached: e.GetConn() != nil, Node: e.GetConn().GetNode()}
		if p.Attached {
			p.Attaches = 1
		}
		r.Participants = append(r.Participants, p)
		if p.Role == "host" {
			r.HostName = p.Name
			r.HostAddr = e.GetAddr()
		}
		r.LastActivityUnixMs = max(r.LastActivityUnixMs, e.GetAtUnixMs())
		return addAddr(w, r, p, e.GetAddr())
	case typeAttached:
		var e sessionpb.Attached
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		p, err := participant(r, e.GetParticipant())
		if err != nil {
			return err
		}
		p.Attached, p.Node = true, e.GetConn().GetNode()
		p.Attaches++
		if e.GetResumed() {
			p.Resumes++
		}
		p.LastAckSeq = max(p.LastAckSeq, e.GetLastSeq())
		r.LastActivityUnixMs = max(r.LastActivityUnixMs, e.GetAtUnixMs())
		return addAddr(w, r, p, e.GetAddr())
	case typeDetached:
		var e sessionpb.Detached
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		p, err := participant(r, e.GetParticipant())
		if err != nil {
			return err
		}
		p.Attached, p.DetachedAtUnixMs = false, e.GetAtUnixMs()
	case typeLeft:
		var e sessionpb.Left
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		p, err := participant(r, e.GetParticipant())
		if err != nil {
			return err
		}
		p.Attached, p.LeftAtUnixMs = false, e.GetAtUnixMs()
		r.LastActivityUnixMs = max(r.LastActivityUnixMs, e.GetAtUnixMs())
	case typeFrameSent:
		var e sessionpb.FrameSent
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		r.Frames++
		r.Bytes += uint64(len(e.GetPayload()))
		r.LastActivityUnixMs = max(r.LastActivityUnixMs, e.GetAtUnixMs())
		if p, err := participant(r, e.GetFrom()); err == nil {
			p.FramesSent++
		}
	case typeActive:
		var e sessionpb.Active
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		r.LastActivityUnixMs = max(r.LastActivityUnixMs, e.GetAtUnixMs())
	case typeAcknowledged:
		var e sessionpb.Acknowledged
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		p, err := participant(r, e.GetParticipant())
		if err != nil {
			return err
		}
		p.LastAckSeq = max(p.LastAckSeq, e.GetSeq())
	case typeEnded:
		var e sessionpb.Ended
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		if !r.Live {
			return errors.New("session ended but not live")
		}
		at := e.GetAtUnixMs()
		if at == 0 {
			at = ms
		}
		r.Live, r.EndedAtUnixMs, r.EndedBy, r.EndReason = false, at, e.GetBy(), e.GetReason()
		for _, p := range r.Participants {
			p.Attached = false
		}
		if err := w.Delete(liveKey(r.OpenedAtUnixMs, r.Code)); err != nil {
			return err
		}
		return setIndexes(w, r)
	default:
		return fmt.Errorf("unknown session event type %q", ev.Type)
	}
	return nil
}

func participant(r *viewspb.SessionRecord, id string) (*viewspb.ParticipantRecord, error) {
	for _, p := range r.Participants {
		if p.Id == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown participant %q", id)
}

// addAddr records a new client address of p and indexes the session by it.
func addAddr(w *Writer, r *viewspb.SessionRecord, p *viewspb.ParticipantRecord, addr string) error {
	if addr == "" || slices.Contains(p.Addrs, addr) || len(p.Addrs) >= maxAddrs {
		return nil
	}
	p.Addrs = append(p.Addrs, addr)
	if sessionHasAddr(r, addr, p) {
		return nil
	}
	return w.Set(indexKey('a', addr, r.OpenedAtUnixMs, r.Code), encodeI64(r.EndedAtUnixMs))
}

func sessionHasAddr(r *viewspb.SessionRecord, addr string, except *viewspb.ParticipantRecord) bool {
	for _, p := range r.Participants {
		if p != except && slices.Contains(p.Addrs, addr) {
			return true
		}
	}
	return false
}

// setIndexes (re)writes every history index entry of r with its end time.
func setIndexes(w *Writer, r *viewspb.SessionRecord) error {
	val := encodeI64(r.EndedAtUnixMs)
	if err := w.Set(timeKey('t', r.OpenedAtUnixMs, r.Code), val); err != nil {
		return err
	}
	if r.HostUser != "" {
		if err := w.Set(indexKey('u', r.HostUser, r.OpenedAtUnixMs, r.Code), val); err != nil {
			return err
		}
	}
	if r.Tenant != "" {
		if err := w.Set(indexKey('n', r.Tenant, r.OpenedAtUnixMs, r.Code), val); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, p := range r.Participants {
		for _, a := range p.Addrs {
			if seen[a] {
				continue
			}
			seen[a] = true
			if err := w.Set(indexKey('a', a, r.OpenedAtUnixMs, r.Code), val); err != nil {
				return err
			}
		}
	}
	return nil
}

func bumpCounter(w *Writer, key []byte) error {
	v, _, err := w.Get(key)
	if err != nil {
		return err
	}
	var n uint64
	if len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	return w.Set(key, encodeU64(n+1))
}

func recordKey(code string) []byte { return append([]byte{'r'}, code...) }

func liveKey(openedMS int64, code string) []byte { return timeKey('l', openedMS, code) }

func timeKey(space byte, ms int64, code string) []byte {
	k := binary.BigEndian.AppendUint64([]byte{space}, uint64(ms))
	return append(k, code...)
}

func indexKey(space byte, value string, ms int64, code string) []byte {
	k := append([]byte{space}, value...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(ms))
	return append(k, code...)
}

func minuteKey(space byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{space}, uint64(ms/60000))
}

func encodeI64(v int64) []byte { return encodeU64(uint64(v)) }

// validIndexValue reports whether v can be an indexed string (user, addr):
// no 0x00, which separates it from the time.
func validIndexValue(v string) bool { return v != "" && !bytes.ContainsRune([]byte(v), 0) }
