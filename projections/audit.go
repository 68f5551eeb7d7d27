package projections

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/projections/viewspb"
)

// AuditName is the name of the audit projection.
const AuditName = "audit"

// Audit indexes the events of the log by position, stream, type, actor and
// time (the events themselves stay in the log): every event except the
// frames relayed in sessions (FrameSent). The audit log is the trail of who
// did what — opened, joined, left, acknowledged, ended, administered; a
// frame is data moved inside a session, as many per second as the session
// carries, and its row and three index keys were most of the view's writes
// (and of a node's work under durable traffic). The frames stay in the
// session's stream in the log, the sessions view counts them and their
// bytes per participant, and the per-minute event counts (m) and the
// second index (f) still include them.
//
// Rows (relative keys; pos = 8-byte big-endian position):
//
//	e <pos>                      → AuditRow
//	s <stream> 0x00 <pos>        →
//	t <type> 0x00 <pos>          →
//	a <actor> 0x00 <pos>         →
//	m <minute>                   → events in that minute (8 bytes)
//	f <second>                   → first position stamped in that second (8 bytes)
//	p <session code> <participant> → actor of a session participant
type Audit struct{}

// Name implements Projection.
func (Audit) Name() string { return AuditName }

// Version implements Projection. 2: frames are no longer indexed.
func (Audit) Version() uint32 { return 2 }

// ActorFunc returns the actor of an event (who caused it) from its data, or
// "" when the event does not say. Jobs register theirs with RegisterActor.
type ActorFunc func(ev events.RecordedEvent) (string, error)

var (
	actorsMu sync.RWMutex
	actorFns = map[string]ActorFunc{}
)

// RegisterActor sets the actor function of an event type (its protobuf
// message name). Call it from init functions.
func RegisterActor(eventType string, fn ActorFunc) {
	actorsMu.Lock()
	defer actorsMu.Unlock()
	actorFns[eventType] = fn
}

// Actor strings.
func UserActor(name string) string  { return "user:" + name }
func GuestActor(name string) string { return "guest:" + name }

// SystemActor is the actor of what the cluster does by itself.
const SystemActor = "system"

// Apply implements Projection.
func (Audit) Apply(w *Writer, evs []events.RecordedEvent) error {
	minutes := map[uint64]uint64{}
	var seconds []uint64
	actors := map[string]string{} // participantKey → actor, for this batch
	for _, ev := range evs {
		if err := auditRow(w, ev, actors); err != nil {
			return err
		}
		ms := ev.Time / 1e6
		minutes[uint64(ms/60000)]++
		if sec := uint64(ms / 1000); len(seconds) == 0 || seconds[len(seconds)-1] != sec {
			seconds = append(seconds, sec)
			pos := encodeU64(ev.Position)
			k := binary.BigEndian.AppendUint64([]byte{'f'}, sec)
			if _, found, err := w.Get(k); err != nil {
				return err
			} else if !found {
				if err := w.Set(k, pos); err != nil {
					return err
				}
			}
		}
	}
	for m, n := range minutes {
		k := binary.BigEndian.AppendUint64([]byte{'m'}, m)
		v, _, err := w.Get(k)
		if err != nil {
			return err
		}
		if len(v) == 8 {
			n += binary.BigEndian.Uint64(v)
		}
		if err := w.Set(k, encodeU64(n)); err != nil {
			return err
		}
	}
	return nil
}

// auditRow writes ev's row and index keys, unless ev is a relayed frame.
func auditRow(w *Writer, ev events.RecordedEvent, actors map[string]string) error {
	if ev.Type == typeFrameSent {
		return nil
	}
	actor, err := auditActor(w, ev, actors)
	if err != nil {
		w.Skip(ev, err) // still indexed, without an actor
	}
	row := &viewspb.AuditRow{Position: ev.Position, Stream: ev.Stream, Version: ev.Version, Type: ev.Type,
		TimeUnixMs: ev.Time / 1e6, Actor: actor}
	v, err := proto.Marshal(row)
	if err != nil {
		return err
	}
	if err := w.Set(append([]byte{'e'}, encodeU64(ev.Position)...), v); err != nil {
		return err
	}
	for _, ix := range []struct {
		space byte
		value string
	}{{'s', ev.Stream}, {'t', ev.Type}, {'a', actor}} {
		if ix.value == "" {
			continue
		}
		if err := w.Set(posIndexKey(ix.space, ix.value, ev.Position), nil); err != nil {
			return err
		}
	}
	return nil
}

// auditActor finds who caused ev: a registered function, or the session
// rules below (a session participant is known by the Joined event that made
// it one). cache holds the participants' actors already read or written in
// this batch (a busy session's frames name the same few).
func auditActor(w *Writer, ev events.RecordedEvent, cache map[string]string) (string, error) {
	actorsMu.RLock()
	fn := actorFns[ev.Type]
	actorsMu.RUnlock()
	if fn != nil {
		return fn(ev)
	}
	code, ok := strings.CutPrefix(ev.Stream, sessionPrefix)
	if !ok {
		return "", nil
	}
	participantActor := func(pid string) (string, error) {
		k := participantKey(code, pid)
		if a, ok := cache[string(k)]; ok {
			return a, nil
		}
		v, found, err := w.Get(k)
		if err != nil || !found {
			return "", err
		}
		cache[string(k)] = string(v)
		return string(v), nil
	}
	switch ev.Type {
	case typeOpened:
		var e sessionpb.Opened
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return "", err
		}
		return UserActor(e.GetHostUser()), nil
	case typeJoined:
		var e sessionpb.Joined
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return "", err
		}
		a := GuestActor(e.GetName())
		if e.GetUser() != "" {
			a = UserActor(e.GetUser())
		}
		k := participantKey(code, e.GetParticipant())
		cache[string(k)] = a
		return a, w.Set(k, []byte(a))
	case typeEnded:
		var e sessionpb.Ended
		if err := proto.Unmarshal(ev.Data, &e); err != nil {
			return "", err
		}
		if by, ok := strings.CutPrefix(e.GetBy(), "admin:"); ok {
			return UserActor(by), nil
		}
		if e.GetBy() == "system" || e.GetBy() == "" {
			return SystemActor, nil
		}
		return participantActor(e.GetBy())
	}
	// Events about one participant name it.
	var m interface {
		proto.Message
		GetParticipant() string
	}
	switch ev.Type {
	case typeAttached:
		m = &sessionpb.Attached{}
	case typeDetached:
		m = &sessionpb.Detached{}
	case typeLeft:
		m = &sessionpb.Left{}
	case typeActive:
		m = &sessionpb.Active{}
	case typeAcknowledged:
		m = &sessionpb.Acknowledged{}
	default:
		return "", nil
	}
	if err := proto.Unmarshal(ev.Data, m); err != nil {
		return "", err
	}
	return participantActor(m.GetParticipant())
}

func participantKey(code, pid string) []byte {
	return append(append([]byte{'p'}, code...), pid...)
}

func posIndexKey(space byte, value string, pos uint64) []byte {
	k := append([]byte{space}, value...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, pos)
}

// AuditQuery selects events of the audit log, newest first. Empty fields do
// not filter.
type AuditQuery struct {
	Stream   string // exact stream id
	Type     string // exact event type
	Actor    string // exact actor ("user:alice")
	From, To time.Time
	Limit    int    // 1..MaxPage (0 = 50)
	Before   uint64 // only positions below (paging; 0 = from the newest)
}

// AuditPage is one page of the audit log.
type AuditPage struct {
	Rows []*viewspb.AuditRow
	// Next is the Before of the following page (0 = no more). A page can be
	// short and still have a Next when the scan bound (ScanBound rows) was
	// reached: ask again from Next.
	Next uint64
}

// ScanBound bounds the index entries one audit query examines.
const ScanBound = 100_000

// Validate reports every bad field at once.
func (q AuditQuery) Validate() error {
	var errs []string
	for _, f := range []struct{ name, v string }{{"stream", q.Stream}, {"type", q.Type}, {"actor", q.Actor}} {
		if strings.ContainsRune(f.v, 0) {
			errs = append(errs, f.name+": must not contain NUL")
		}
		if len(f.v) > 256 {
			errs = append(errs, f.name+": longer than 256 bytes")
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		errs = append(errs, "from: must be before to")
	}
	if q.Limit < 0 || q.Limit > MaxPage {
		errs = append(errs, fmt.Sprintf("limit: %d is outside 0..%d", q.Limit, MaxPage))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrBadQuery, strings.Join(errs, "; "))
	}
	return nil
}

// AuditLog answers an audit query: the most selective index given (actor,
// stream, type, in that order) drives the scan and the rest filter.
func (e *Engine) AuditLog(q AuditQuery) (AuditPage, error) {
	if err := q.Validate(); err != nil {
		return AuditPage{}, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	var page AuditPage
	err := e.View(AuditName, func(r *Reader) error {
		lowPos, highPos := uint64(1), uint64(1<<63)
		if q.Before != 0 {
			highPos = q.Before
		}
		if !q.From.IsZero() {
			p, err := firstPositionAt(r, q.From.Add(-2*time.Second))
			if err != nil {
				return err
			}
			lowPos = max(lowPos, p)
		}
		if !q.To.IsZero() {
			p, err := firstPositionAt(r, q.To.Add(2*time.Second))
			if err != nil {
				return err
			}
			highPos = min(highPos, p)
		}
		if lowPos >= highPos {
			return nil
		}
		var space byte
		var value string
		switch {
		case q.Actor != "":
			space, value = 'a', q.Actor
		case q.Stream != "":
			space, value = 's', q.Stream
		case q.Type != "":
			space, value = 't', q.Type
		}
		var lower, upper []byte
		var posAt func(k []byte) uint64
		if space == 0 {
			lower = binary.BigEndian.AppendUint64([]byte{'e'}, lowPos)
			upper = binary.BigEndian.AppendUint64([]byte{'e'}, highPos)
			posAt = func(k []byte) uint64 { return binary.BigEndian.Uint64(k[1:]) }
		} else {
			lower, upper = posIndexKey(space, value, lowPos), posIndexKey(space, value, highPos)
			n := 1 + len(value) + 1
			posAt = func(k []byte) uint64 { return binary.BigEndian.Uint64(k[n:]) }
		}
		scanned := 0
		return r.Scan(lower, upper, true, func(k, v []byte) (bool, error) {
			pos := posAt(k)
			if scanned++; scanned > ScanBound {
				page.Next = pos + 1
				return false, nil
			}
			if len(page.Rows) == q.Limit {
				page.Next = pos + 1
				return false, nil
			}
			if space != 0 {
				var found bool
				var err error
				v, found, err = r.Get(binary.BigEndian.AppendUint64([]byte{'e'}, pos))
				if err != nil || !found {
					return err == nil, err
				}
			}
			row := &viewspb.AuditRow{}
			if err := proto.Unmarshal(v, row); err != nil {
				return false, fmt.Errorf("projections: audit row %d: %w", pos, err)
			}
			if (q.Stream != "" && row.Stream != q.Stream) || (q.Type != "" && row.Type != q.Type) ||
				(q.Actor != "" && row.Actor != q.Actor) ||
				(!q.From.IsZero() && row.TimeUnixMs < q.From.UnixMilli()) ||
				(!q.To.IsZero() && row.TimeUnixMs >= q.To.UnixMilli()) {
				return true, nil
			}
			page.Rows = append(page.Rows, row)
			return true, nil
		})
	})
	return page, err
}

// firstPositionAt returns the first position stamped at or after t's second,
// or 1<<63 when there is none (every event is older).
func firstPositionAt(r *Reader, t time.Time) (uint64, error) {
	sec := max(t.Unix(), 0)
	pos := uint64(1 << 63)
	err := r.Scan(binary.BigEndian.AppendUint64([]byte{'f'}, uint64(sec)), []byte{'f' + 1}, false, func(_, v []byte) (bool, error) {
		if len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return false, nil
	})
	return pos, err
}

// EventsPerMinute returns the events appended in each minute of [from, to).
func (e *Engine) EventsPerMinute(from, to time.Time) ([]Bucket, error) {
	return e.perMinute(AuditName, 'm', from, to)
}

func encodeCursor(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeCursor(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 8 || len(b) > 1024 {
		return nil, fmt.Errorf("%w: cursor %q is not one this server returned", ErrBadQuery, s)
	}
	return b, nil
}
