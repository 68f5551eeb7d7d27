package projections

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
)

func TestSessionsViewsAndHistory(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n, base: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)}
	var codes []string
	for i := 0; i < 12; i++ {
		user := []string{"alice", "bob"}[i%2]
		codes = append(codes, w.session(i, user, fmt.Sprintf("192.0.2.%d:4000", i%3), 5, i < 8))
	}
	e := openEngine(t, memDB(t, vfs.NewMem()), n)
	defer e.Close()
	waitCaughtUp(t, e, n)

	rec, found, err := e.GetSession(codes[0])
	if err != nil || !found {
		t.Fatalf("GetSession: %v %v", found, err)
	}
	if rec.Live || rec.HostUser != "alice" || rec.Frames != 5 || rec.Bytes != 50 || rec.EndedBy != "p1" || rec.HostName != "Host alice" || rec.HostAddr != "10.0.0.1:5000" {
		t.Fatalf("record: %+v", rec)
	}
	guest := rec.Participants[1]
	if guest.LastAckSeq != 4 || guest.Resumes != 1 || guest.Attaches != 2 || guest.Node != "n3" || guest.Attached || guest.FramesSent != 2 {
		t.Fatalf("guest: %+v", guest)
	}

	live, next, err := e.LiveSessions(3, "")
	if err != nil || len(live) != 3 || next == "" {
		t.Fatalf("live page 1: %d %q %v", len(live), next, err)
	}
	if live[0].Code != codes[11] || live[2].Code != codes[9] {
		t.Fatalf("live not newest first: %s %s", live[0].Code, live[2].Code)
	}
	more, next2, err := e.LiveSessions(3, next)
	if err != nil || len(more) != 1 || more[0].Code != codes[8] || next2 != "" {
		t.Fatalf("live page 2: %d %q %v", len(more), next2, err)
	}

	// History by user, paged, with statistics over every match.
	page, err := e.SessionHistory(HistoryQuery{User: "alice", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 4 || page.Next == "" || page.Stats.Sessions != 6 || page.Stats.Live != 2 {
		t.Fatalf("alice page 1: %d records, next %q, stats %+v", len(page.Records), page.Next, page.Stats)
	}
	if page.Stats.TotalDuration != 4*time.Minute || page.Stats.AvgDuration() != time.Minute {
		t.Fatalf("alice durations: %+v", page.Stats)
	}
	for _, r := range page.Records {
		if r.HostUser != "alice" {
			t.Fatalf("bob in alice's history: %s", r.Code)
		}
	}
	page2, err := e.SessionHistory(HistoryQuery{User: "alice", Limit: 4, Cursor: page.Next})
	if err != nil || len(page2.Records) != 2 || page2.Next != "" || page2.Records[1].Code != codes[0] {
		t.Fatalf("alice page 2: %+v %v", page2, err)
	}
	// By address and time range; user + address together.
	byAddr, err := e.SessionHistory(HistoryQuery{Addr: "192.0.2.1:4000"})
	if err != nil || byAddr.Stats.Sessions != 4 {
		t.Fatalf("by addr: %+v %v", byAddr.Stats, err)
	}
	both, err := e.SessionHistory(HistoryQuery{User: "bob", Addr: "192.0.2.1:4000"})
	if err != nil || both.Stats.Sessions != 2 || len(both.Records) != 2 {
		t.Fatalf("bob at addr: %+v %v", both.Stats, err)
	}
	window, err := e.SessionHistory(HistoryQuery{From: w.base.Add(2 * time.Minute), To: w.base.Add(5 * time.Minute)})
	if err != nil || window.Stats.Sessions != 3 || window.Records[0].Code != codes[4] {
		t.Fatalf("window: %+v %v", window.Stats, err)
	}
	one, err := e.SessionHistory(HistoryQuery{Code: codes[3]})
	if err != nil || len(one.Records) != 1 || one.Records[0].Code != codes[3] {
		t.Fatalf("by code: %+v %v", one, err)
	}

	buckets, err := e.SessionsOpenedPerMinute(w.base, w.base.Add(12*time.Minute))
	if err != nil || len(buckets) != 12 {
		t.Fatalf("per minute: %v %v", buckets, err)
	}
	for _, b := range buckets {
		if b.Count != 1 {
			t.Fatalf("bucket %v: %d", b.Start, b.Count)
		}
	}
	fo, err := e.FailoverState("", 100)
	if err != nil || len(fo) != 8 {
		t.Fatalf("failover: %d %v", len(fo), err)
	}

	for _, q := range []HistoryQuery{{Code: "12"}, {Limit: -1}, {Limit: MaxPage + 1}, {From: w.base, To: w.base}, {Cursor: "!!"}, {User: "a\x00b"}} {
		if _, err := e.SessionHistory(q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("query %+v: got %v, want ErrBadQuery", q, err)
		}
	}
	err = (HistoryQuery{Code: "1", Limit: -3}).Validate()
	if err == nil || !strings.Contains(err.Error(), "code:") || !strings.Contains(err.Error(), "limit:") {
		t.Errorf("Validate should name every bad field: %v", err)
	}
}

func TestAuditQueries(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n, base: time.Now().Add(-time.Hour)}
	for i := 0; i < 6; i++ {
		w.session(i, []string{"alice", "bob"}[i%2], "192.0.2.9:1", 3, true)
	}
	e := openEngine(t, memDB(t, vfs.NewMem()), n)
	defer e.Close()
	waitCaughtUp(t, e, n)
	total := n.LastPosition()

	// Every event but the 3 frames of each session has a row.
	rows := total - 6*3
	all, err := e.AuditLog(AuditQuery{Limit: MaxPage})
	if err != nil || uint64(len(all.Rows)) != rows || all.Next != 0 {
		t.Fatalf("all: %d of %d, next %d, %v", len(all.Rows), rows, all.Next, err)
	}
	for i, r := range all.Rows {
		if i > 0 && r.Position >= all.Rows[i-1].Position {
			t.Fatalf("row %d at position %d after %d, want newest first", i, r.Position, all.Rows[i-1].Position)
		}
		if r.Type == typeFrameSent {
			t.Fatalf("row %d is a relayed frame (%s at %d): frames are not audited", i, r.Stream, r.Position)
		}
	}
	if all.Rows[0].Position != total {
		t.Fatalf("newest row at %d, want %d (the last session's end)", all.Rows[0].Position, total)
	}
	ended, err := e.AuditLog(AuditQuery{Type: typeEnded})
	if err != nil || len(ended.Rows) != 6 {
		t.Fatalf("ended: %d %v", len(ended.Rows), err)
	}
	// The host's opening, joining and end are alice's.
	alice, err := e.AuditLog(AuditQuery{Actor: UserActor("alice"), Limit: 4})
	if err != nil || len(alice.Rows) != 4 || alice.Next == 0 {
		t.Fatalf("alice: %d next %d %v", len(alice.Rows), alice.Next, err)
	}
	rest, err := e.AuditLog(AuditQuery{Actor: UserActor("alice"), Before: alice.Next, Limit: MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	// Per alice session: Opened, Joined(host), Ended = 3 (not her 2 frames).
	if got := len(alice.Rows) + len(rest.Rows); got != 3*3 {
		t.Fatalf("alice's events: %d, want 9", got)
	}
	// The guest's: Joined, Acknowledged, Detached, Attached in each session.
	guest, err := e.AuditLog(AuditQuery{Actor: GuestActor("Guest"), Limit: MaxPage})
	if err != nil || len(guest.Rows) != 6*4 {
		t.Fatalf("guest: %d rows, want 24; %v", len(guest.Rows), err)
	}
	if frames, err := e.AuditLog(AuditQuery{Type: typeFrameSent}); err != nil || len(frames.Rows) != 0 {
		t.Fatalf("frames: %d rows %v, want none", len(frames.Rows), err)
	}
	// The per-minute event counts still count every event, frames included.
	perMinute, err := e.EventsPerMinute(w.base.Add(-time.Minute), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	counted := uint64(0)
	for _, b := range perMinute {
		counted += b.Count
	}
	if counted != total {
		t.Fatalf("events per minute add up to %d, want every event (%d)", counted, total)
	}
	stream, err := e.AuditLog(AuditQuery{Stream: "session/100000002"})
	if err != nil || len(stream.Rows) == 0 {
		t.Fatalf("stream: %v", err)
	}
	for _, r := range stream.Rows {
		if r.Stream != "session/100000002" {
			t.Fatalf("other stream %s", r.Stream)
		}
	}
	future, err := e.AuditLog(AuditQuery{From: time.Now().Add(time.Hour)})
	if err != nil || len(future.Rows) != 0 {
		t.Fatalf("future: %d %v", len(future.Rows), err)
	}
	recent, err := e.AuditLog(AuditQuery{From: time.Now().Add(-time.Minute), Limit: MaxPage})
	if err != nil || uint64(len(recent.Rows)) != rows {
		t.Fatalf("recent: %d of %d %v", len(recent.Rows), rows, err)
	}
	if _, err := e.AuditLog(AuditQuery{Limit: 5000}); !errors.Is(err, ErrBadQuery) {
		t.Fatalf("limit over max: %v", err)
	}
}

// TestFoldEqualsReplayAfterCrashesAndRebuild folds a log that grows while the
// views database crashes (unflushed writes lost), the engine restarts and a
// rebuild runs; the result must equal a fold from zero.
func TestFoldEqualsReplayAfterCrashesAndRebuild(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n, base: time.Now().Add(-2 * time.Hour)}
	fs := vfs.NewCrashableMem()
	db := memDB(t, fs)
	e := openEngine(t, db, n)
	i := 0
	writeSome := func(k int) {
		for end := i + k; i < end; i++ {
			w.session(i, fmt.Sprintf("u%d", i%3), fmt.Sprintf("198.51.100.%d:1", i%5), i%4, i%3 != 0)
		}
	}
	for round := 0; round < 3; round++ {
		writeSome(4)
		// Crash the views database mid-fold: whatever was not flushed is lost.
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(1, uint64(round)))})
		e.Close()
		db.Close()
		fs = clone
		db = memDB(t, fs)
		e = openEngine(t, db, n)
	}
	// Rebuild both projections while writers go on.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); writeSome(6) }()
	for _, name := range e.Names() {
		if err := e.Rebuild(name); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range e.Names() {
		if err := e.WaitRebuilt(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	waitCaughtUp(t, e, n)
	for _, s := range e.Status() {
		if s.Generation < 2 || s.Rebuilding || s.Lag != 0 || s.Skipped != 0 {
			t.Fatalf("status after rebuild: %+v", s)
		}
	}
	fresh := openEngine(t, memDB(t, vfs.NewMem()), n)
	defer fresh.Close()
	waitCaughtUp(t, fresh, n)
	for _, name := range e.Names() {
		sameRows(t, name, dump(t, e, name), dump(t, fresh, name))
	}
	// The digests agree too (what the chaos harness compares across nodes),
	// and a digest does change with the rows.
	d1, err := e.Digests()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := fresh.Digests()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d1, d2) || len(d1) != 2 || d1[0].Rows == 0 || d1[0].Position != n.LastPosition() {
		t.Fatalf("digests differ or are empty:\n%+v\n%+v", d1, d2)
	}
	writeSome(1)
	waitCaughtUp(t, e, n)
	if d3, _ := e.Digests(); d3[0].SHA256 == d1[0].SHA256 || d3[1].SHA256 == d1[1].SHA256 || d3[0].Position == d1[0].Position {
		t.Fatalf("digests did not change with new rows: %+v", d3)
	}
	// The old generation's rows are gone.
	gens := map[string]bool{}
	it, _ := db.NewIter(nil)
	for ok := it.First(); ok; ok = it.Next() {
		if k := it.Key(); k[0] == spaceRows {
			name, rest, _ := strings.Cut(string(k[1:]), "\x00")
			gens[name+"/"+rest[:8]] = true
		}
	}
	it.Close()
	if len(gens) != 2 {
		t.Fatalf("rows of %d generations remain, want one per projection", len(gens))
	}
	e.Close()
}

// TestVersionChangeRebuilds: a projection whose layout version changed is
// folded again from position 1 in a new generation.
func TestVersionChangeRebuilds(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n, base: time.Now()}
	w.session(1, "alice", "192.0.2.1:1", 2, true)
	db := memDB(t, vfs.NewMem())
	e, err := Open(Config{DB: db, Logger: quiet}, NodeSource(n), countingProjection{version: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitCaughtUp(t, e, n)
	e.Close()
	e, err = Open(Config{DB: db, Logger: quiet}, NodeSource(n), countingProjection{version: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if st := e.Status()[0]; st.Generation != 2 || st.Position != 0 {
		t.Fatalf("after a version change: %+v", st)
	}
	e.Start()
	waitCaughtUp(t, e, n)
	rows := dump(t, e, "count")
	if got := rows["n"]; len(got) != 8 || decodeU64([]byte(got)) != n.LastPosition() {
		t.Fatalf("count %x, want %d", got, n.LastPosition())
	}
}

// TestConsistentWaitsForTheLog: Consistent returns only once the projection
// includes an append acknowledged before the call.
func TestConsistentWaitsForTheLog(t *testing.T) {
	_, n := testLog(t)
	e, err := Open(Config{DB: memDB(t, vfs.NewMem()), Logger: quiet}, NodeSource(n), countingProjection{version: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		if _, err := n.Append(ctx, events.AppendArgs("x/1", events.Any(), events.Event{Type: "t", Data: []byte{byte(i)}})); err != nil {
			t.Fatal(err)
		}
		if err := e.Consistent(ctx, "count"); err != nil {
			t.Fatal(err)
		}
		if got := decodeU64([]byte(dump(t, e, "count")["n"])); got != uint64(i+1) {
			t.Fatalf("after append %d the projection counts %d", i+1, got)
		}
	}
	if err := e.Consistent(ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown projection: %v", err)
	}
}

// countingProjection counts events in row "n".
type countingProjection struct{ version uint32 }

func (countingProjection) Name() string      { return "count" }
func (p countingProjection) Version() uint32 { return p.version }
func (countingProjection) Apply(w *Writer, evs []events.RecordedEvent) error {
	v, _, err := w.Get([]byte("n"))
	if err != nil {
		return err
	}
	return w.Set([]byte("n"), encodeU64(decodeU64(v)+uint64(len(evs))))
}

func decodeU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func TestDueSessions(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n, base: time.Now().Add(-2 * time.Hour)}
	now := time.Now()
	open := func(code string, limits *sessionpb.Limits, at time.Time) {
		w.append(code, &sessionpb.Opened{Code: code, HostUser: "u", Limits: limits, AtUnixMs: at.UnixMilli()},
			&sessionpb.Joined{Participant: "p1", Role: "host", Name: "H", User: "u", AtUnixMs: at.UnixMilli()})
	}
	open("111111111", &sessionpb.Limits{IdleTimeoutS: 60}, now.Add(-time.Hour))                   // idle: due
	open("222222222", &sessionpb.Limits{IdleTimeoutS: 3600}, now.Add(-time.Minute))               // not idle long enough
	open("333333333", &sessionpb.Limits{ExpiresAtUnixMs: now.Add(-time.Second).UnixMilli()}, now) // expired: due
	open("444444444", &sessionpb.Limits{IdleTimeoutS: 60}, now.Add(-time.Hour))
	w.append("444444444", &sessionpb.Attached{Participant: "p1", AtUnixMs: now.UnixMilli()}) // active again
	w.session(9, "u", "192.0.2.1:1", 1, true)                                                // ended: never due
	e := openEngine(t, memDB(t, vfs.NewMem()), n)
	defer e.Close()
	waitCaughtUp(t, e, n)
	due, err := e.DueSessions(now, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(due)
	if !slices.Equal(due, []string{"111111111", "333333333"}) {
		t.Fatalf("due: %v", due)
	}
	if one, _ := e.DueSessions(now, 1); len(one) != 1 {
		t.Fatalf("limit: %v", one)
	}
}

func TestHistoryByTenant(t *testing.T) {
	_, n := testLog(t)
	w := sessionWriter{t: t, n: n}
	at := time.Now().Add(-time.Hour).UnixMilli()
	for i, c := range []struct{ code, user, tenant string }{{"111111111", "a", "t1"}, {"222222222", "b", "t1"}, {"333333333", "a", "t2"}, {"444444444", "a", ""}} {
		w.append(c.code, &sessionpb.Opened{Code: c.code, HostUser: c.user, Tenant: c.tenant, AtUnixMs: at + int64(i)},
			&sessionpb.Joined{Participant: "p1", Role: "host", Name: "H", User: c.user, AtUnixMs: at + int64(i)})
	}
	e := openEngine(t, memDB(t, vfs.NewMem()), n)
	defer e.Close()
	waitCaughtUp(t, e, n)
	codes := func(q HistoryQuery) []string {
		t.Helper()
		p, err := e.SessionHistory(q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range p.Records {
			out = append(out, r.Code)
		}
		if uint64(len(out)) != p.Stats.Sessions {
			t.Fatalf("%+v: %d records, stats say %d", q, len(out), p.Stats.Sessions)
		}
		return out
	}
	if got := codes(HistoryQuery{Tenant: "t1"}); !slices.Equal(got, []string{"222222222", "111111111"}) {
		t.Fatalf("t1: %v", got)
	}
	if got := codes(HistoryQuery{Tenant: "t1", User: "a"}); !slices.Equal(got, []string{"111111111"}) {
		t.Fatalf("t1, user a: %v", got)
	}
	if got := codes(HistoryQuery{Tenant: "t2", Code: "111111111"}); len(got) != 0 {
		t.Fatalf("t2 reads t1's session by code: %v", got)
	}
	if got := codes(HistoryQuery{User: "a"}); len(got) != 3 {
		t.Fatalf("user a in every tenant: %v", got)
	}
}
