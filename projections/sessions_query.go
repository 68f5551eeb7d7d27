package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/projections/viewspb"
)

// MaxPage bounds the records one query returns.
const MaxPage = 1000

// ErrBadQuery is wrapped by errors about a query's arguments.
var ErrBadQuery = errors.New("projections: bad query")

// GetSession returns the record of one session (found = false if the code
// was never seen).
func (e *Engine) GetSession(code string) (rec *viewspb.SessionRecord, found bool, err error) {
	if !session.ValidCode(code) {
		return nil, false, fmt.Errorf("%w: code %q is not 9 digits", ErrBadQuery, code)
	}
	err = e.View(SessionsName, func(r *Reader) error {
		rec, found, err = readRecord(r, code)
		return err
	})
	return rec, found, err
}

func readRecord(r *Reader, code string) (*viewspb.SessionRecord, bool, error) {
	v, found, err := r.Get(recordKey(code))
	if err != nil || !found {
		return nil, false, err
	}
	rec := &viewspb.SessionRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, false, fmt.Errorf("projections: session record %s: %w", code, err)
	}
	return rec, true, nil
}

// LiveSessions returns up to limit live sessions, newest first, opened
// before the cursor (an opaque string from a previous page; "" = newest).
func (e *Engine) LiveSessions(limit int, cursor string) (recs []*viewspb.SessionRecord, next string, err error) {
	limit, err = pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	upper := []byte{'l' + 1}
	if cursor != "" {
		c, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		upper = append(append([]byte{'l'}, c...), 0) // the cursor's own key is on this page
	}
	err = e.View(SessionsName, func(r *Reader) error {
		return r.Scan([]byte{'l'}, upper, true, func(k, _ []byte) (bool, error) {
			if len(recs) == limit {
				next = encodeCursor(k[1:])
				return false, nil
			}
			rec, found, err := readRecord(r, string(k[9:]))
			if err != nil {
				return false, err
			}
			if found {
				recs = append(recs, rec)
			}
			return true, nil
		})
	})
	return recs, next, err
}

// HistoryQuery selects sessions of the history. Empty fields do not filter;
// at most one of Code, User, Addr is used to pick the index (in that order)
// and the others filter.
type HistoryQuery struct {
	// Tenant, when set, keeps only sessions of that tenant's hosts.
	Tenant   string
	Code     string
	User     string
	Addr     string
	From, To time.Time // opened in [From, To); zero = unbounded
	Limit    int       // 1..MaxPage (0 = 50)
	Cursor   string    // from a previous page's Next
}

// HistoryPage is one page of history, newest first, and statistics over
// every session the query matches (not only this page).
type HistoryPage struct {
	Records []*viewspb.SessionRecord
	Next    string // cursor of the following page; "" = last page
	Stats   HistoryStats
}

// HistoryStats summarises the matching sessions.
type HistoryStats struct {
	Sessions      uint64
	Live          uint64
	TotalDuration time.Duration // of the ended ones
	MaxDuration   time.Duration
}

// AvgDuration returns the mean duration of the ended sessions.
func (s HistoryStats) AvgDuration() time.Duration {
	if ended := s.Sessions - s.Live; ended > 0 {
		return s.TotalDuration / time.Duration(ended)
	}
	return 0
}

// Validate reports every bad field at once.
func (q HistoryQuery) Validate() error {
	var errs []string
	if q.Code != "" && !session.ValidCode(q.Code) {
		errs = append(errs, fmt.Sprintf("code: %q is not a 9-digit session code", q.Code))
	}
	if q.Tenant != "" && !validIndexValue(q.Tenant) {
		errs = append(errs, "tenant: must not contain NUL")
	}
	if q.User != "" && !validIndexValue(q.User) {
		errs = append(errs, "user: must not contain NUL")
	}
	if q.Addr != "" && !validIndexValue(q.Addr) {
		errs = append(errs, "addr: must not contain NUL")
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		errs = append(errs, "from: must be before to")
	}
	if q.Limit < 0 || q.Limit > MaxPage {
		errs = append(errs, fmt.Sprintf("limit: %d is outside 0..%d", q.Limit, MaxPage))
	}
	if q.Cursor != "" {
		if _, err := decodeCursor(q.Cursor); err != nil {
			errs = append(errs, "cursor: "+strings.TrimPrefix(err.Error(), ErrBadQuery.Error()+": "))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrBadQuery, strings.Join(errs, "; "))
	}
	return nil
}

// SessionHistory answers a history query from the indexes: the statistics
// come from index entries alone (opened and ended times), records are read
// only for the page.
func (e *Engine) SessionHistory(q HistoryQuery) (HistoryPage, error) {
	if err := q.Validate(); err != nil {
		return HistoryPage{}, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	var page HistoryPage
	err := e.View(SessionsName, func(r *Reader) error {
		if q.Code != "" {
			rec, found, err := readRecord(r, q.Code)
			if err != nil || !found {
				return err
			}
			if !matches(rec, q) {
				return nil
			}
			page.Records = []*viewspb.SessionRecord{rec}
			page.Stats.add(rec.OpenedAtUnixMs, rec.EndedAtUnixMs)
			return nil
		}
		var prefix []byte
		switch {
		case q.User != "":
			prefix = append(append([]byte{'u'}, q.User...), 0)
		case q.Addr != "":
			prefix = append(append([]byte{'a'}, q.Addr...), 0)
		case q.Tenant != "":
			prefix = append(append([]byte{'n'}, q.Tenant...), 0)
		default:
			prefix = []byte{'t'}
		}
		lower, upper := append([]byte(nil), prefix...), prefixEnd(prefix)
		if !q.From.IsZero() {
			lower = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(q.From.UnixMilli()))
		}
		if !q.To.IsZero() {
			upper = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(q.To.UnixMilli()))
		}
		var cursor []byte
		if q.Cursor != "" {
			cursor, _ = decodeCursor(q.Cursor)
		}
		n := len(prefix)
		return r.Scan(lower, upper, true, func(k, v []byte) (bool, error) {
			if len(k) < n+8 || len(v) != 8 {
				return true, nil
			}
			opened := int64(binary.BigEndian.Uint64(k[n:]))
			ended := int64(binary.BigEndian.Uint64(v))
			code := string(k[n+8:])
			if (q.User != "" && q.Addr != "") || (q.Tenant != "" && (q.User != "" || q.Addr != "")) {
				// One index drove; the others filter (they need the record).
				rec, found, err := readRecord(r, code)
				if err != nil {
					return false, err
				}
				if !found || !matches(rec, q) {
					return true, nil
				}
			}
			page.Stats.add(opened, ended)
			if cursor != nil && string(k[n:]) > string(cursor) {
				return true, nil // on an earlier page
			}
			if len(page.Records) == q.Limit {
				if page.Next == "" {
					page.Next = encodeCursor(k[n:])
				}
				return true, nil
			}
			rec, found, err := readRecord(r, code)
			if err != nil {
				return false, err
			}
			if found {
				page.Records = append(page.Records, rec)
			}
			return true, nil
		})
	})
	return page, err
}

func (s *HistoryStats) add(opened, ended int64) {
	s.Sessions++
	if ended == 0 {
		s.Live++
		return
	}
	d := time.Duration(ended-opened) * time.Millisecond
	s.TotalDuration += d
	s.MaxDuration = max(s.MaxDuration, d)
}

func matches(rec *viewspb.SessionRecord, q HistoryQuery) bool {
	if q.Tenant != "" && rec.Tenant != q.Tenant {
		return false
	}
	if q.User != "" && rec.HostUser != q.User {
		return false
	}
	if q.Addr != "" {
		found := false
		for _, p := range rec.Participants {
			for _, a := range p.Addrs {
				found = found || a == q.Addr
			}
		}
		if !found {
			return false
		}
	}
	if !q.From.IsZero() && rec.OpenedAtUnixMs < q.From.UnixMilli() {
		return false
	}
	if !q.To.IsZero() && rec.OpenedAtUnixMs >= q.To.UnixMilli() {
		return false
	}
	return true
}

// Bucket is a count over one interval.
type Bucket struct {
	Start time.Time
	Count uint64
}

// SessionsOpenedPerMinute returns the sessions opened in each minute of
// [from, to) (minutes without sessions are included with 0), at most 1440.
func (e *Engine) SessionsOpenedPerMinute(from, to time.Time) ([]Bucket, error) {
	return e.perMinute(SessionsName, 'm', from, to)
}

func (e *Engine) perMinute(name string, space byte, from, to time.Time) ([]Bucket, error) {
	first, last := from.UnixMilli()/60000, (to.UnixMilli()+59999)/60000
	if last <= first || last-first > 1440 {
		return nil, fmt.Errorf("%w: range must cover 1..1440 minutes", ErrBadQuery)
	}
	out := make([]Bucket, 0, last-first)
	for m := first; m < last; m++ {
		out = append(out, Bucket{Start: time.UnixMilli(m * 60000).UTC()})
	}
	err := e.View(name, func(r *Reader) error {
		lo := binary.BigEndian.AppendUint64([]byte{space}, uint64(first))
		hi := binary.BigEndian.AppendUint64([]byte{space}, uint64(last))
		return r.Scan(lo, hi, false, func(k, v []byte) (bool, error) {
			if len(k) == 9 && len(v) == 8 {
				out[int64(binary.BigEndian.Uint64(k[1:]))-first].Count = binary.BigEndian.Uint64(v)
			}
			return true, nil
		})
	})
	return out, err
}

// FailoverPoint is the resume point of one participant of a live session.
type FailoverPoint struct {
	Code        string
	Participant *viewspb.ParticipantRecord
}

// FailoverState returns the resume points of the participants of live
// sessions (of one session when code is set), up to limit.
func (e *Engine) FailoverState(code string, limit int) ([]FailoverPoint, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, err
	}
	var out []FailoverPoint
	add := func(rec *viewspb.SessionRecord) bool {
		for _, p := range rec.Participants {
			if p.LeftAtUnixMs != 0 {
				continue
			}
			if len(out) == limit {
				return false
			}
			out = append(out, FailoverPoint{Code: rec.Code, Participant: p})
		}
		return true
	}
	if code != "" {
		rec, found, err := e.GetSession(code)
		if err != nil || !found || !rec.Live {
			return nil, err
		}
		add(rec)
		return out, nil
	}
	recs, _, err := e.LiveSessions(MaxPage, "")
	for _, rec := range recs {
		if !add(rec) {
			break
		}
	}
	return out, err
}

func pageLimit(limit int) (int, error) {
	if limit == 0 {
		return 50, nil
	}
	if limit < 0 || limit > MaxPage {
		return 0, fmt.Errorf("%w: limit %d is outside 1..%d", ErrBadQuery, limit, MaxPage)
	}
	return limit, nil
}

// DueSessions returns up to limit live sessions that are past their hard
// expiry or idle for longer than their idle timeout at now, as this node's
// view knows them (the session grain decides: Expire on a session that is
// not due writes nothing).
func (e *Engine) DueSessions(now time.Time, limit int) ([]string, error) {
	var due []string
	t := now.UnixMilli()
	err := e.View(SessionsName, func(r *Reader) error {
		return r.ScanPrefix([]byte{'l'}, false, func(k, _ []byte) (bool, error) {
			rec, found, err := readRecord(r, string(k[9:]))
			if err != nil || !found {
				return err == nil, err
			}
			exp, idle := rec.GetExpiresAtUnixMs(), int64(rec.GetIdleTimeoutS())*1000
			if (exp > 0 && t >= exp) || (idle > 0 && t-rec.GetLastActivityUnixMs() >= idle) {
				due = append(due, rec.GetCode())
			}
			return len(due) < limit, nil
		})
	})
	return due, err
}
