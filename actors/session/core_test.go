package session_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/actors/session/sessiontest"
)

const code = "123456789"

var t0 = time.UnixMilli(1_700_000_000_000)

func conn(n string) *sessionpb.Conn {
	return &sessionpb.Conn{Address: "10.1.0.1:7000", Id: "conn-" + n, Node: "node-a"}
}

func token(p string) []byte { return []byte("resume-token-of-" + p) }

func openCmd() *sessionpb.Open {
	return &sessionpb.Open{
		HostUser:        "alice@example.com",
		HostName:        "Alice",
		HostAddr:        "192.0.2.1:50000",
		JoinSecretHash:  session.HashSecret([]byte("join-secret")),
		ResumeTokenHash: session.HashSecret(token("p1")),
		Conn:            conn("p1"),
	}
}

// joinCmd joins a guest that will be participant id (token and conn named
// after it).
func joinCmd(name, id string) *sessionpb.Join {
	return &sessionpb.Join{
		Name:            name,
		Addr:            "198.51.100.7:40000",
		JoinSecret:      []byte("join-secret"),
		ResumeTokenHash: session.HashSecret(token(id)),
		Conn:            conn(id),
	}
}

func newDriver(t testing.TB) *sessiontest.Driver { return sessiontest.New(t, code, t0) }

func do(t testing.TB, d *sessiontest.Driver, cmd proto.Message) (proto.Message, []entity.Effect) {
	t.Helper()
	r, effs, err := d.Do(cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return r, effs
}

// opened returns a driver with a session opened by p1 and guests p2..pN
// joined.
func opened(t testing.TB, guests int) *sessiontest.Driver {
	t.Helper()
	d := newDriver(t)
	do(t, d, openCmd())
	for i := 2; i <= guests+1; i++ {
		id := fmt.Sprintf("p%d", i)
		do(t, d, joinCmd("Guest "+id, id))
	}
	return d
}

func reasonOf(err error) string {
	var r *entity.Rejection
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// rejects checks that cmd is rejected with reason, that the message
// contains every string of mention, and that nothing was written.
func rejects(t *testing.T, d *sessiontest.Driver, cmd proto.Message, reason string, mention ...string) {
	t.Helper()
	v, before := d.Version(), sessiontest.Snapshot(d.State)
	_, effs, err := d.Do(cmd)
	if got := reasonOf(err); got != reason {
		t.Fatalf("%T: reason %q (err %v), want %q", cmd, got, err, reason)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%T: message %q does not mention %q", cmd, err, m)
		}
	}
	if d.Version() != v || !sessiontest.Equal(before, d.State) || effs != nil {
		t.Errorf("%T: a rejection changed something (version %d → %d)", cmd, v, d.Version())
	}
}

// noop checks that cmd is accepted and writes nothing.
func noop(t *testing.T, d *sessiontest.Driver, cmd proto.Message) proto.Message {
	t.Helper()
	v := d.Version()
	r, _ := do(t, d, cmd)
	if d.Version() != v {
		t.Fatalf("%T wrote %d events, want none: %v", cmd, d.Version()-v, d.Log[v:])
	}
	return r
}

// writes checks that cmd is accepted and writes exactly the given event types.
func writes(t *testing.T, d *sessiontest.Driver, cmd proto.Message, types ...proto.Message) (proto.Message, []entity.Effect) {
	t.Helper()
	v := d.Version()
	r, effs := do(t, d, cmd)
	got := d.Log[v:]
	if len(got) != len(types) {
		t.Fatalf("%T wrote %v, want %d events", cmd, got, len(types))
	}
	for i := range got {
		if proto.MessageName(got[i]) != proto.MessageName(types[i]) {
			t.Fatalf("%T wrote %v, want %T at %d", cmd, got, types[i], i)
		}
	}
	return r, effs
}

func TestSpecIsComplete(t *testing.T) {
	s := session.Spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Kind != "session" || s.Effects == nil || s.OnActivate == nil {
		t.Fatalf("spec %+v", s)
	}
	if st := s.Initial(code); st.Code != code || st.Status != session.NeverOpened || st.Version != 0 {
		t.Fatalf("initial %+v", st)
	}
	if entity.StreamName(s.Kind, code) != "session/"+code {
		t.Fatal("stream name")
	}
}

func TestValidCode(t *testing.T) {
	for c, want := range map[string]bool{
		"123456789": true, "999999999": true, "100000000": true,
		"023456789": false, "12345678": false, "1234567890": false, "12345678a": false,
		"": false, "１23456789": false, " 23456789": false, "12345678\x00": false,
	} {
		if got := session.ValidCode(c); got != want {
			t.Errorf("ValidCode(%q) = %v", c, got)
		}
	}
}

func TestSecrets(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := session.NewCode()
		if !session.ValidCode(c) {
			t.Fatalf("NewCode() = %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 990 {
		t.Fatalf("only %d distinct codes of 1000", len(seen))
	}
	a, b := session.NewSecret(), session.NewSecret()
	if a == b || len(a) < 22 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("NewSecret() = %q, %q", a, b)
	}
	h := sha256.Sum256([]byte(a))
	if !bytes.Equal(session.HashSecret([]byte(a)), h[:]) {
		t.Fatal("HashSecret is not SHA-256")
	}
}

func TestDefaultLimits(t *testing.T) {
	l := session.DefaultLimits()
	if l.GetMaxParticipants() != 10 || l.GetMaxFrameBytes() != 65536 || l.GetFramesPerSecond() != 200 ||
		l.GetBurst() != 400 || l.GetIdleTimeoutS() != 1800 || l.GetExpiresAtUnixMs() != 0 {
		t.Fatalf("defaults %v", l)
	}
	l.MaxParticipants = 3 // a caller's copy
	if session.DefaultLimits().GetMaxParticipants() != 10 {
		t.Fatal("DefaultLimits shares its value")
	}
}

func TestOpen(t *testing.T) {
	d := newDriver(t)
	r, effs := writes(t, d, openCmd(), &sessionpb.Opened{}, &sessionpb.Joined{})
	if len(effs) != 0 {
		t.Errorf("Open pushed %v", effs)
	}
	w := r.(*sessionpb.Welcome)
	if w.GetSession() != code || w.GetParticipant() != "p1" || w.GetRole() != "host" || w.GetHead() != 2 || w.GetLastCseq() != 0 {
		t.Fatalf("welcome %v", w)
	}
	if !proto.Equal(w.GetLimits(), session.DefaultLimits()) {
		t.Errorf("limits %v", w.GetLimits())
	}
	if len(w.GetParticipants()) != 1 || w.GetParticipants()[0].GetName() != "Alice" || !w.GetParticipants()[0].GetAttached() {
		t.Errorf("participants %v", w.GetParticipants())
	}
	op, j := d.Log[0].(*sessionpb.Opened), d.Log[1].(*sessionpb.Joined)
	if op.GetCode() != code || op.GetHostUser() != "alice@example.com" || op.GetAtUnixMs() != t0.UnixMilli() || !proto.Equal(op.GetLimits(), session.DefaultLimits()) {
		t.Errorf("opened %v", op)
	}
	if j.GetParticipant() != "p1" || j.GetRole() != "host" || j.GetUser() != "alice@example.com" || j.GetName() != "Alice" ||
		j.GetAddr() != "192.0.2.1:50000" || !proto.Equal(j.GetConn(), conn("p1")) || j.GetAtUnixMs() != t0.UnixMilli() {
		t.Errorf("joined %v", j)
	}
	rejects(t, d, openCmd(), session.ReasonCodeInUse, code)

	info := noop(t, d, &sessionpb.Get{}).(*sessionpb.Info)
	if !info.GetLive() || info.GetEnded() || info.GetVersion() != 2 || info.GetOpenedAtUnixMs() != t0.UnixMilli() || info.GetHostUser() != "alice@example.com" {
		t.Errorf("info %v", info)
	}
}

func TestOpenLimits(t *testing.T) {
	future := t0.Add(time.Hour).UnixMilli()
	for _, tc := range []struct {
		name   string
		limits *sessionpb.Limits
		bad    []string // fields named in the rejection; none = accepted
		want   *sessionpb.Limits
	}{
		{"unset", nil, nil, session.DefaultLimits()},
		{"zeros take defaults", &sessionpb.Limits{}, nil, session.DefaultLimits()},
		{"partial", &sessionpb.Limits{MaxParticipants: 2, ExpiresAtUnixMs: future}, nil,
			&sessionpb.Limits{MaxParticipants: 2, MaxFrameBytes: 65536, FramesPerSecond: 200, Burst: 400, IdleTimeoutS: 1800, ExpiresAtUnixMs: future}},
		{"upper bounds", &sessionpb.Limits{MaxParticipants: 100, MaxFrameBytes: 524288, FramesPerSecond: 10000, Burst: 20000, IdleTimeoutS: 604800}, nil,
			&sessionpb.Limits{MaxParticipants: 100, MaxFrameBytes: 524288, FramesPerSecond: 10000, Burst: 20000, IdleTimeoutS: 604800}},
		{"lower bounds", &sessionpb.Limits{MaxParticipants: 2, MaxFrameBytes: 1, FramesPerSecond: 1, Burst: 1, IdleTimeoutS: 60}, nil,
			&sessionpb.Limits{MaxParticipants: 2, MaxFrameBytes: 1, FramesPerSecond: 1, Burst: 1, IdleTimeoutS: 60}},
		{"one participant", &sessionpb.Limits{MaxParticipants: 1}, []string{"max_participants"}, nil},
		{"too many participants", &sessionpb.Limits{MaxParticipants: 101}, []string{"max_participants"}, nil},
		{"frames too big", &sessionpb.Limits{MaxFrameBytes: 524289}, []string{"max_frame_bytes"}, nil},
		{"rate", &sessionpb.Limits{FramesPerSecond: 10001}, []string{"frames_per_second"}, nil},
		{"burst", &sessionpb.Limits{Burst: 20001}, []string{"burst"}, nil},
		{"idle short", &sessionpb.Limits{IdleTimeoutS: 59}, []string{"idle_timeout_s"}, nil},
		{"idle long", &sessionpb.Limits{IdleTimeoutS: 604801}, []string{"idle_timeout_s"}, nil},
		{"expired now", &sessionpb.Limits{ExpiresAtUnixMs: t0.UnixMilli()}, []string{"expires_at_unix_ms"}, nil},
		{"negative expiry", &sessionpb.Limits{ExpiresAtUnixMs: -1}, []string{"expires_at_unix_ms"}, nil},
		{"all at once", &sessionpb.Limits{MaxParticipants: 1000, MaxFrameBytes: 1 << 30, FramesPerSecond: 1 << 20, Burst: 1 << 20, IdleTimeoutS: 1, ExpiresAtUnixMs: 1},
			[]string{"max_participants", "max_frame_bytes", "frames_per_second", "burst", "idle_timeout_s", "expires_at_unix_ms"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t)
			o := openCmd()
			o.Limits = tc.limits
			if tc.bad != nil {
				rejects(t, d, o, session.ReasonBadRequest, tc.bad...)
				return
			}
			r, _ := do(t, d, o)
			if got := r.(*sessionpb.Welcome).GetLimits(); !proto.Equal(got, tc.want) {
				t.Fatalf("limits %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOpenValidation(t *testing.T) {
	long := strings.Repeat("x", 65)
	for _, tc := range []struct {
		name  string
		id    string
		edit  func(*sessionpb.Open)
		named []string
	}{
		{"bad code", "012345678", func(*sessionpb.Open) {}, []string{"code"}},
		{"no user", code, func(o *sessionpb.Open) { o.HostUser = "" }, []string{"host_user"}},
		{"long user", code, func(o *sessionpb.Open) { o.HostUser = long }, []string{"host_user"}},
		{"no name", code, func(o *sessionpb.Open) { o.HostName = "" }, []string{"host_name"}},
		{"long name", code, func(o *sessionpb.Open) { o.HostName = long }, []string{"host_name"}},
		{"control in name", code, func(o *sessionpb.Open) { o.HostName = "a\x1b[2Jb" }, []string{"host_name"}},
		{"invalid utf-8 name", code, func(o *sessionpb.Open) { o.HostName = "a\xffb" }, []string{"host_name"}},
		{"long addr", code, func(o *sessionpb.Open) { o.HostAddr = strings.Repeat("1", 129) }, []string{"host_addr"}},
		{"short secret hash", code, func(o *sessionpb.Open) { o.JoinSecretHash = []byte("short") }, []string{"join_secret_hash"}},
		{"no token hash", code, func(o *sessionpb.Open) { o.ResumeTokenHash = nil }, []string{"resume_token_hash"}},
		{"no conn", code, func(o *sessionpb.Open) { o.Conn = nil }, []string{"conn.address", "conn.id"}},
		{"everything", "x", func(o *sessionpb.Open) {
			*o = sessionpb.Open{HostName: long, HostAddr: strings.Repeat("1", 129), Limits: &sessionpb.Limits{MaxParticipants: 1}}
		}, []string{"code", "host_user", "host_name", "host_addr", "join_secret_hash", "resume_token_hash", "conn.address", "conn.id", "max_participants"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sessiontest.New(t, tc.id, t0)
			o := openCmd()
			tc.edit(o)
			rejects(t, d, o, session.ReasonBadRequest, tc.named...)
		})
	}
	// 64 bytes of multi-byte UTF-8 is fine.
	d := newDriver(t)
	o := openCmd()
	o.HostName = strings.Repeat("é", 32)
	do(t, d, o)
}

func TestUnknownCommand(t *testing.T) {
	d := opened(t, 0)
	rejects(t, d, &sessionpb.Welcome{}, session.ReasonBadRequest)
}

// allButOpen returns one valid command of every kind but Open, for p2.
func allButOpen() []proto.Message {
	return []proto.Message{
		joinCmd("Bob", "p2"),
		&sessionpb.Attach{Participant: "p1", ResumeToken: token("p1"), Conn: conn("p1")},
		&sessionpb.Detach{Participant: "p1", Conn: conn("p1")},
		&sessionpb.Leave{Participant: "p1"},
		&sessionpb.SendFrame{Participant: "p1", Cseq: 1, Payload: []byte("x")},
		&sessionpb.StreamFrame{Participant: "p1", Payload: []byte("x")},
		&sessionpb.Ack{Participant: "p1", Seq: 1},
		&sessionpb.End{By: "p1"},
		&sessionpb.Expire{},
		&sessionpb.Get{},
	}
}

func TestNeverOpened(t *testing.T) {
	for _, cmd := range allButOpen() {
		d := newDriver(t)
		rejects(t, d, cmd, session.ReasonUnknownSession, code)
	}
}

func TestEnded(t *testing.T) {
	for _, cmd := range allButOpen() {
		t.Run(fmt.Sprintf("%T", cmd), func(t *testing.T) {
			d := opened(t, 1)
			do(t, d, &sessionpb.End{By: "p1", Reason: "done"})
			switch cmd.(type) {
			case *sessionpb.Get:
				info := noop(t, d, cmd).(*sessionpb.Info)
				if info.GetLive() || !info.GetEnded() || info.GetEndedBy() != "p1" || info.GetEndReason() != "done" || info.GetEndedAtUnixMs() != t0.UnixMilli() {
					t.Fatalf("info %v", info)
				}
			case *sessionpb.Expire, *sessionpb.Detach:
				if _, ok := noop(t, d, cmd).(*sessionpb.Ok); !ok {
					t.Fatal("want Ok")
				}
			default:
				rejects(t, d, cmd, session.ReasonEnded, code, "done")
			}
		})
	}
}

// A participant away when the session ended may resume to read up to the
// "ended" notice; nothing is written, and a plain re-attach is refused.
func TestResumeAfterEnd(t *testing.T) {
	d := opened(t, 1)
	do(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2")})
	do(t, d, &sessionpb.End{By: "p1", Reason: "done"})
	endSeq := d.Version()
	r := noop(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), LastSeq: 3, Conn: conn("p2-new"), Resumed: true})
	if w := r.(*sessionpb.Welcome); w.GetHead() != endSeq || w.GetParticipant() != "p2" {
		t.Fatalf("welcome %v, want head %d (the ended notice)", w, endSeq)
	}
	rejects(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: []byte("wrong"), Conn: conn("p2-new"), Resumed: true}, session.ReasonBadResumeToken)
	rejects(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), LastSeq: endSeq + 1, Conn: conn("p2-new"), Resumed: true}, session.ReasonResumeFromFuture)
	rejects(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), Conn: conn("p2-new")}, session.ReasonEnded)
}

func TestReopen(t *testing.T) {
	d := opened(t, 2)
	do(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("hello")})
	do(t, d, &sessionpb.End{By: "admin:ops"})
	v := d.Version()
	d.Advance(time.Minute)
	o := openCmd()
	o.HostName = "Carol"
	o.Limits = &sessionpb.Limits{MaxParticipants: 2}
	r, _ := writes(t, d, o, &sessionpb.Opened{}, &sessionpb.Joined{})
	w := r.(*sessionpb.Welcome)
	if w.GetHead() != v+2 || len(w.GetParticipants()) != 1 || w.GetParticipants()[0].GetName() != "Carol" {
		t.Fatalf("welcome after reopen %v (version before %d)", w, v)
	}
	info := noop(t, d, &sessionpb.Get{}).(*sessionpb.Info)
	if !info.GetLive() || info.GetFrames() != 0 || info.GetBytes() != 0 || info.GetEndedBy() != "" || info.GetVersion() != v+2 ||
		info.GetOpenedAtUnixMs() != t0.Add(time.Minute).UnixMilli() || info.GetLimits().GetMaxParticipants() != 2 {
		t.Fatalf("info after reopen %v", info)
	}
	// Participant ids restart; the old guests are gone.
	rejects(t, d, &sessionpb.SendFrame{Participant: "p3", Cseq: 1}, session.ReasonUnknownParticipant)
	r, _ = do(t, d, joinCmd("Dan", "p2"))
	if w := r.(*sessionpb.Welcome); w.GetParticipant() != "p2" || w.GetHead() != v+3 {
		t.Fatalf("welcome %v", w)
	}
	if err := d.CheckHeads(); err != nil {
		t.Fatal(err)
	}
	d.Reactivate()
}

func TestJoin(t *testing.T) {
	d := newDriver(t)
	o := openCmd()
	o.Limits = &sessionpb.Limits{MaxParticipants: 3}
	do(t, d, o)

	j := joinCmd("Bob", "p2")
	j.JoinSecret = []byte("wrong")
	rejects(t, d, j, session.ReasonBadSecret)
	j.JoinSecret = nil
	rejects(t, d, j, session.ReasonBadSecret)
	bad := &sessionpb.Join{Name: "", Addr: strings.Repeat("a", 129), JoinSecret: []byte("join-secret")}
	rejects(t, d, bad, session.ReasonBadRequest, "name", "addr", "resume_token_hash", "conn.address", "conn.id")

	r, effs := writes(t, d, joinCmd("Bob", "p2"), &sessionpb.Joined{})
	w := r.(*sessionpb.Welcome)
	if w.GetParticipant() != "p2" || w.GetRole() != "guest" || w.GetHead() != 3 || len(w.GetParticipants()) != 2 {
		t.Fatalf("welcome %v", w)
	}
	if j := d.Log[2].(*sessionpb.Joined); j.GetUser() != "" || j.GetRole() != "guest" || j.GetName() != "Bob" {
		t.Fatalf("joined %v", j)
	}
	// p1 is told, with prev_seq = its Welcome head.
	wantDeliver(t, effs, "p1", 3, 2, "joined", "p2")
	if len(effs) != 1 {
		t.Fatalf("effects %v", effs)
	}
	do(t, d, joinCmd("Carol", "p3"))
	rejects(t, d, joinCmd("Dave", "p4"), session.ReasonFull, "3 of 3")
	// Someone leaving makes room; ids keep counting Joined events.
	do(t, d, &sessionpb.Leave{Participant: "p2"})
	r, _ = do(t, d, joinCmd("Dave", "p4"))
	if r.(*sessionpb.Welcome).GetParticipant() != "p4" {
		t.Fatalf("welcome %v", r)
	}
	rejects(t, d, joinCmd("Eve", "p5"), session.ReasonFull)
}

func wantDeliver(t *testing.T, effs []entity.Effect, to string, seq, prev uint64, notice, who string) {
	t.Helper()
	for _, e := range effs {
		d, ok := e.Msg.(*sessionpb.Deliver)
		if !ok || d.GetTo() != to {
			continue
		}
		if e.Address != conn(to).GetAddress() || e.ID != conn(to).GetId() {
			t.Errorf("deliver to %s addressed to %s/%s", to, e.Address, e.ID)
		}
		if d.GetSession() != code || d.GetSeq() != seq || d.GetPrevSeq() != prev {
			t.Errorf("deliver to %s: %v, want seq %d prev %d", to, d, seq, prev)
		}
		if notice == "" {
			if d.GetNotice() != nil || d.GetFrom() != who {
				t.Errorf("deliver to %s: %v, want a frame from %s", to, d, who)
			}
		} else if d.GetNotice().GetEvent() != notice || d.GetNotice().GetParticipant() != who {
			t.Errorf("deliver to %s: %v, want notice %s of %s", to, d, notice, who)
		}
		return
	}
	t.Errorf("no deliver to %s in %v", to, effs)
}

func recipients(effs []entity.Effect) map[string]string {
	out := map[string]string{}
	for _, e := range effs {
		var to string
		switch m := e.Msg.(type) {
		case *sessionpb.Deliver:
			to = m.GetTo()
		case *sessionpb.StreamDeliver:
			to = m.GetTo()
		case *sessionpb.Gap:
			to = m.GetTo()
		case *sessionpb.Sync:
			to = m.GetTo()
		}
		out[to] = string(proto.MessageName(e.Msg).Name())
	}
	return out
}

func sameRecipients(t *testing.T, effs []entity.Effect, kind string, to ...string) {
	t.Helper()
	got := recipients(effs)
	if len(got) != len(to) || len(effs) != len(to) {
		t.Fatalf("effects %v, want %s to %v", effs, kind, to)
	}
	for _, p := range to {
		if got[p] != kind {
			t.Fatalf("effects %v, want %s to %v", effs, kind, to)
		}
	}
}

func TestAttach(t *testing.T) {
	d := opened(t, 2)
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1, Payload: []byte("a")}) // seq 5
	do(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("b")}) // seq 6
	att := func(p string, last uint64, c string, resumed bool) *sessionpb.Attach {
		return &sessionpb.Attach{Participant: p, ResumeToken: token(p), LastSeq: last, Conn: conn(c), Addr: "203.0.113.9:1", Resumed: resumed}
	}
	rejects(t, d, att("p9", 0, "p9", false), session.ReasonUnknownParticipant, "p9")
	bt := att("p2", 0, "x", false)
	bt.ResumeToken = token("p3")
	rejects(t, d, bt, session.ReasonBadResumeToken)
	// p2's head is 5 (p1's frame); its own frame (6) is not meant for it.
	rejects(t, d, att("p2", 6, "p2", false), session.ReasonResumeFromFuture, "6", "5")
	rejects(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2")}, session.ReasonBadRequest, "conn")

	// Same connection, not resumed: nothing to write, Welcome all the same.
	w := noop(t, d, att("p2", 5, "p2", false)).(*sessionpb.Welcome)
	if w.GetParticipant() != "p2" || w.GetHead() != 5 || w.GetLastCseq() != 1 || w.GetRole() != "guest" {
		t.Fatalf("welcome %v", w)
	}
	// Another connection, not resumed (a node re-attaching a connection
	// the participant no longer uses): superseded, nothing written.
	rejects(t, d, att("p2", 3, "p2-b", false), session.ReasonSuperseded, "p2")
	// A resumed client on a new connection: Attached, and a Gap to the
	// others (attached ones only).
	do(t, d, &sessionpb.Detach{Participant: "p3", Conn: conn("p3")})
	r, effs := writes(t, d, att("p2", 5, "p2-b", true), &sessionpb.Attached{})
	sameRecipients(t, effs, "Gap", "p1")
	if g := effs[0].Msg.(*sessionpb.Gap); g.GetFrom() != "p2" || g.GetSession() != code || effs[0].ID != "conn-p1" || r.(*sessionpb.Welcome).GetHead() != 5 {
		t.Fatalf("gap %v, reply %v", effs[0], r)
	}
	if p, _ := d.State.Participant("p2"); p.Conn.ID != "conn-p2-b" || p.Addr != "203.0.113.9:1" {
		t.Fatalf("participant %+v", p)
	}
	// The node of the old connection re-attaches it (a membership change,
	// or its idle resync) before the client's close reached it: it must not
	// take p2 back — pushes would go to a connection nobody reads.
	rejects(t, d, att("p2", 0, "p2", false), session.ReasonSuperseded)
	if p, _ := d.State.Participant("p2"); p.Conn.ID != "conn-p2-b" || !p.Attached {
		t.Fatalf("participant taken back: %+v", p)
	}
	// Its Detach, when the close arrives, changes nothing either.
	noop(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2")})
	// The current connection re-attaching after its own Detach (the node
	// thought it closed): Attached again, as the same connection.
	do(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2-b")})
	writes(t, d, att("p2", 5, "p2-b", false), &sessionpb.Attached{})
	if p, _ := d.State.Participant("p2"); p.Conn.ID != "conn-p2-b" || !p.Attached {
		t.Fatalf("participant %+v", p)
	}
	do(t, d, &sessionpb.Leave{Participant: "p2"})
	rejects(t, d, att("p2", 0, "p2", false), session.ReasonUnknownParticipant, "left")
}

func TestDetach(t *testing.T) {
	d := opened(t, 1)
	noop(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("other")})
	noop(t, d, &sessionpb.Detach{Participant: "nobody", Conn: conn("p2")})
	writes(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2")}, &sessionpb.Detached{})
	noop(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2")})
	// A detached participant's head still moves, but it gets no pushes.
	_, effs := do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1, Payload: []byte("x")})
	if len(effs) != 0 {
		t.Fatalf("pushes to a detached participant: %v", effs)
	}
	if p, _ := d.State.Participant("p2"); p.Attached || p.Head != d.Version() {
		t.Fatalf("p2 %+v", p)
	}
	r, _ := writes(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), LastSeq: 3, Conn: conn("p2")}, &sessionpb.Attached{})
	if r.(*sessionpb.Welcome).GetHead() != d.Version()-1 {
		t.Fatalf("welcome %v", r)
	}
}

func TestLeave(t *testing.T) {
	d := opened(t, 2)
	rejects(t, d, &sessionpb.Leave{Participant: "p7"}, session.ReasonUnknownParticipant)
	_, effs := writes(t, d, &sessionpb.Leave{Participant: "p2"}, &sessionpb.Left{})
	sameRecipients(t, effs, "Deliver", "p1", "p3")
	wantDeliver(t, effs, "p1", 5, 4, "left", "p2")
	wantDeliver(t, effs, "p3", 5, 4, "left", "p2")
	if n := effs[0].Msg.(*sessionpb.Deliver).GetNotice(); n.GetName() != "Guest p2" || n.GetRole() != "guest" {
		t.Errorf("left notice %v", n)
	}
	noop(t, d, &sessionpb.Leave{Participant: "p2"}) // a retry
	for _, cmd := range []proto.Message{
		&sessionpb.SendFrame{Participant: "p2", Cseq: 1},
		&sessionpb.StreamFrame{Participant: "p2"},
		&sessionpb.Ack{Participant: "p2", Seq: 1},
	} {
		rejects(t, d, cmd, session.ReasonUnknownParticipant, "left")
	}
	// p2 receives nothing any more; the host leaving does not end the session.
	_, effs = do(t, d, &sessionpb.SendFrame{Participant: "p3", Cseq: 1})
	sameRecipients(t, effs, "Deliver", "p1")
	do(t, d, &sessionpb.Leave{Participant: "p1"})
	if d.State.Status != session.Live {
		t.Fatal("host leaving ended the session")
	}
	rejects(t, d, &sessionpb.End{By: "p1"}, session.ReasonNotHost, "left")
	do(t, d, &sessionpb.End{By: "admin:root"})
	if err := d.CheckHeads(); err != nil {
		t.Fatal(err)
	}
}

// SendFrames writes several frames in one command: duplicates inside are
// skipped, the first frame SendFrame would refuse ends the batch (left out,
// not refused), the reply is cumulative, and every receiver gets each frame
// with a prev_seq chain without holes.
func TestSendFrames(t *testing.T) {
	d := newDriver(t)
	o := openCmd()
	o.Limits = &sessionpb.Limits{MaxFrameBytes: 4}
	do(t, d, o)
	do(t, d, joinCmd("Bob", "p2")) // seq 3
	f := func(cseq uint64, payload string) *sessionpb.SendFrame {
		return &sessionpb.SendFrame{Cseq: cseq, Payload: []byte(payload)}
	}
	r, effs := writes(t, d, &sessionpb.SendFrames{Participant: "p2", Frames: []*sessionpb.SendFrame{f(1, "a"), f(2, "b"), f(3, "c")}},
		&sessionpb.FrameSent{}, &sessionpb.FrameSent{}, &sessionpb.FrameSent{})
	if fa := r.(*sessionpb.FrameAccepted); fa.GetCseq() != 3 || fa.GetSeq() != 6 || fa.GetDuplicate() {
		t.Fatalf("accepted %v", fa)
	}
	if len(effs) != 1 {
		t.Fatalf("%d effects, want one Delivers for p1", len(effs))
	}
	var prev uint64 = 3 // p1's head: p2's joining
	items := effs[0].Msg.(*sessionpb.Delivers).GetItems()
	for i, dl := range items {
		if dl.GetTo() != "p1" || dl.GetSeq() != uint64(4+i) || dl.GetPrevSeq() != prev || string(dl.GetPayload()) != string(rune('a'+i)) {
			t.Fatalf("deliver %d: %v (want seq %d prev %d)", i, dl, 4+i, prev)
		}
		prev = dl.GetSeq()
	}
	if len(items) != 3 {
		t.Fatalf("%d delivers, want 3", len(items))
	}
	// Duplicates skipped; a frame too large ends the batch; what follows is left out.
	r, _ = writes(t, d, &sessionpb.SendFrames{Participant: "p2", Frames: []*sessionpb.SendFrame{f(2, "b"), f(3, "c"), f(4, "d"), f(5, "12345"), f(6, "f")}},
		&sessionpb.FrameSent{})
	if fa := r.(*sessionpb.FrameAccepted); fa.GetCseq() != 4 || fa.GetSeq() != 7 {
		t.Fatalf("accepted %v", fa)
	}
	// A gap ends it at once: nothing written, the reply still says how far.
	if fa := noop(t, d, &sessionpb.SendFrames{Participant: "p2", Frames: []*sessionpb.SendFrame{f(9, "x")}}).(*sessionpb.FrameAccepted); fa.GetCseq() != 4 || !fa.GetDuplicate() {
		t.Fatalf("gap: %v", fa)
	}
	rejects(t, d, &sessionpb.SendFrames{Participant: "p7", Frames: []*sessionpb.SendFrame{f(1, "x")}}, session.ReasonUnknownParticipant)
}

func TestSendFrame(t *testing.T) {
	d := newDriver(t)
	o := openCmd()
	o.Limits = &sessionpb.Limits{MaxFrameBytes: 4}
	do(t, d, o)
	do(t, d, joinCmd("Bob", "p2")) // seq 3
	do(t, d, joinCmd("Cy", "p3"))  // seq 4

	rejects(t, d, &sessionpb.SendFrame{Participant: "p9", Cseq: 1}, session.ReasonUnknownParticipant)
	rejects(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 0, Payload: []byte("x")}, session.ReasonBadRequest, "cseq")
	rejects(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("12345")}, session.ReasonFrameTooLarge, "5", "4")
	rejects(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 2, Payload: []byte("x")}, session.ReasonBadSequence, "next is 1")

	r, effs := writes(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("1234")}, &sessionpb.FrameSent{})
	if fa := r.(*sessionpb.FrameAccepted); fa.GetSeq() != 5 || fa.GetCseq() != 1 || fa.GetDuplicate() {
		t.Fatalf("accepted %v", fa)
	}
	sameRecipients(t, effs, "Deliver", "p1", "p3")
	wantDeliver(t, effs, "p1", 5, 4, "", "p2") // p1 saw p2 (3) and p3 (4) join
	wantDeliver(t, effs, "p3", 5, 4, "", "p2") // p3's own Joined is 4
	if !bytes.Equal(effs[0].Msg.(*sessionpb.Deliver).GetPayload(), []byte("1234")) {
		t.Fatal("payload")
	}
	// The same frame again, at once and later: acknowledged, not written.
	if fa := noop(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("1234")}).(*sessionpb.FrameAccepted); fa.GetSeq() != 5 || !fa.GetDuplicate() {
		t.Fatalf("immediate duplicate %v", fa)
	}
	d.Advance(time.Millisecond)
	if fa := noop(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1, Payload: []byte("1234")}).(*sessionpb.FrameAccepted); fa.GetSeq() != 5 || !fa.GetDuplicate() {
		t.Fatalf("duplicate %v", fa)
	}
	writes(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 2}, &sessionpb.FrameSent{}) // seq 6, empty payload is fine
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1})                             // seq 7
	if fa := noop(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 2}).(*sessionpb.FrameAccepted); fa.GetSeq() != 6 || !fa.GetDuplicate() {
		t.Fatalf("duplicate of the last %v", fa)
	}
	if fa := noop(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1}).(*sessionpb.FrameAccepted); fa.GetSeq() != 0 || !fa.GetDuplicate() || fa.GetCseq() != 1 {
		t.Fatalf("older duplicate %v", fa)
	}
	rejects(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 4}, session.ReasonBadSequence)
	info := noop(t, d, &sessionpb.Get{}).(*sessionpb.Info)
	if info.GetFrames() != 3 || info.GetBytes() != 4 {
		t.Fatalf("info %v", info)
	}
	// Welcome after attach carries last_cseq.
	w := noop(t, d, &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), Conn: conn("p2")}).(*sessionpb.Welcome)
	if w.GetLastCseq() != 2 || w.GetHead() != 7 {
		t.Fatalf("welcome %v", w)
	}
}

func TestStreamFrame(t *testing.T) {
	d := newDriver(t)
	o := openCmd()
	o.Limits = &sessionpb.Limits{MaxFrameBytes: 3}
	do(t, d, o)
	do(t, d, joinCmd("B", "p2"))
	do(t, d, joinCmd("C", "p3"))
	do(t, d, joinCmd("D", "p4"))
	do(t, d, &sessionpb.Detach{Participant: "p3", Conn: conn("p3")})
	do(t, d, &sessionpb.Leave{Participant: "p4"})
	v := d.Version()
	r, effs := do(t, d, &sessionpb.StreamFrame{Participant: "p2", Payload: []byte("abc")})
	if d.Version() != v {
		t.Fatal("a stream frame was written")
	}
	if r != nil {
		t.Fatalf("a stream frame is told, not asked: reply %v", r)
	}
	sameRecipients(t, effs, "StreamDeliver", "p1")
	if sd := effs[0].Msg.(*sessionpb.StreamDeliver); sd.GetFrom() != "p2" || string(sd.GetPayload()) != "abc" || sd.GetSession() != code {
		t.Fatalf("stream deliver %v", sd)
	}
	rejects(t, d, &sessionpb.StreamFrame{Participant: "p2", Payload: []byte("abcd")}, session.ReasonFrameTooLarge)
	rejects(t, d, &sessionpb.StreamFrame{Participant: "p5", Payload: []byte("a")}, session.ReasonUnknownParticipant)
}

func TestAck(t *testing.T) {
	d := opened(t, 1)
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1}) // seq 4, for p2
	rejects(t, d, &sessionpb.Ack{Participant: "p9", Seq: 1}, session.ReasonUnknownParticipant)
	rejects(t, d, &sessionpb.Ack{Participant: "p2", Seq: 5}, session.ReasonResumeFromFuture)
	rejects(t, d, &sessionpb.Ack{Participant: "p1", Seq: 4}, session.ReasonResumeFromFuture) // its own frame
	writes(t, d, &sessionpb.Ack{Participant: "p2", Seq: 3}, &sessionpb.Acknowledged{})
	noop(t, d, &sessionpb.Ack{Participant: "p2", Seq: 3})
	noop(t, d, &sessionpb.Ack{Participant: "p2", Seq: 1})
	writes(t, d, &sessionpb.Ack{Participant: "p2", Seq: 4}, &sessionpb.Acknowledged{})
	if p, _ := d.State.Participant("p2"); p.Acked != 4 {
		t.Fatalf("acked %d", p.Acked)
	}
}

func TestEnd(t *testing.T) {
	for _, by := range []string{"p2", "", "admin:", "admin", "p1 ", "system"} {
		d := opened(t, 1)
		rejects(t, d, &sessionpb.End{By: by}, session.ReasonNotHost)
	}
	d := opened(t, 1)
	rejects(t, d, &sessionpb.End{By: "p1", Reason: strings.Repeat("r", 257)}, session.ReasonBadRequest, "reason")
	rejects(t, d, &sessionpb.End{By: "admin:\xff", Reason: "a\x00"}, session.ReasonBadRequest, "reason", "administrator")
	do(t, d, &sessionpb.Detach{Participant: "p2", Conn: conn("p2")})
	_, effs := writes(t, d, &sessionpb.End{By: "p1", Reason: strings.Repeat("r", 256)}, &sessionpb.Ended{})
	// Everyone attached is told, the host who ended it included.
	sameRecipients(t, effs, "Deliver", "p1")
	wantDeliver(t, effs, "p1", 5, 3, "ended", "p1") // Detached (4) is meant for nobody
	if p, _ := d.State.Participant("p2"); p.Head != 5 || p.PrevHead != 3 {
		t.Fatalf("a detached participant's head must still move: %+v", p)
	}

	for by, reason := range map[string]string{"p1": "host", "admin:root": "admin"} {
		d := opened(t, 2)
		_, effs := do(t, d, &sessionpb.End{By: by})
		if e := d.Log[len(d.Log)-1].(*sessionpb.Ended); e.GetBy() != by || e.GetReason() != reason {
			t.Fatalf("ended %v", e)
		}
		sameRecipients(t, effs, "Deliver", "p1", "p2", "p3")
		if n := effs[0].Msg.(*sessionpb.Deliver).GetNotice(); n.GetReason() != reason || n.GetParticipant() != by {
			t.Fatalf("notice %v", n)
		}
	}
}

func TestExpire(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		d := newDriver(t)
		o := openCmd()
		o.Limits = &sessionpb.Limits{IdleTimeoutS: 60}
		do(t, d, o)
		d.Advance(59 * time.Second)
		noop(t, d, &sessionpb.Expire{})
		do(t, d, joinCmd("B", "p2")) // activity
		d.Advance(59 * time.Second)
		noop(t, d, &sessionpb.Expire{})
		d.Advance(50 * time.Second)
		do(t, d, &sessionpb.SendFrame{Participant: "p2", Cseq: 1}) // activity
		do(t, d, &sessionpb.Ack{Participant: "p1", Seq: 4})        // not activity
		do(t, d, &sessionpb.StreamFrame{Participant: "p1"})        // not activity (writes nothing)
		d.Advance(59 * time.Second)
		noop(t, d, &sessionpb.Expire{})
		d.Advance(time.Second)
		_, effs := writes(t, d, &sessionpb.Expire{}, &sessionpb.Ended{})
		if e := d.Log[len(d.Log)-1].(*sessionpb.Ended); e.GetBy() != "system" || e.GetReason() != "idle" || e.GetAtUnixMs() != d.Now.UnixMilli() {
			t.Fatalf("ended %v", e)
		}
		sameRecipients(t, effs, "Deliver", "p1", "p2")
		noop(t, d, &sessionpb.Expire{})
	})
	for name, activity := range map[string]proto.Message{
		"attach": &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), Conn: conn("p2-new"), Resumed: true},
		"leave":  &sessionpb.Leave{Participant: "p2"},
	} {
		t.Run(name+" is activity", func(t *testing.T) {
			d := newDriver(t)
			o := openCmd()
			o.Limits = &sessionpb.Limits{IdleTimeoutS: 60}
			do(t, d, o)
			do(t, d, joinCmd("B", "p2"))
			d.Advance(30 * time.Second)
			do(t, d, activity)
			d.Advance(59 * time.Second)
			noop(t, d, &sessionpb.Expire{})
		})
	}
	t.Run("touch keeps a stream-only session alive", func(t *testing.T) {
		d := newDriver(t)
		o := openCmd()
		o.Limits = &sessionpb.Limits{IdleTimeoutS: 120}
		do(t, d, o)
		d.Advance(59 * time.Second)
		noop(t, d, &sessionpb.Touch{Participant: "p1"}) // recent activity: nothing written
		d.Advance(time.Second)
		if r, _ := writes(t, d, &sessionpb.Touch{Participant: "p1"}, &sessionpb.Active{}); r != nil {
			t.Fatalf("touch is told, not asked: reply %v", r)
		}
		d.Advance(119 * time.Second)
		noop(t, d, &sessionpb.Expire{})
		d.Advance(time.Second)
		writes(t, d, &sessionpb.Expire{}, &sessionpb.Ended{})
		rejects(t, d, &sessionpb.Touch{Participant: "p1"}, session.ReasonEnded)
	})
	t.Run("detach is not activity", func(t *testing.T) {
		d := newDriver(t)
		o := openCmd()
		o.Limits = &sessionpb.Limits{IdleTimeoutS: 60}
		do(t, d, o)
		d.Advance(30 * time.Second)
		do(t, d, &sessionpb.Detach{Participant: "p1", Conn: conn("p1")})
		d.Advance(30 * time.Second)
		writes(t, d, &sessionpb.Expire{}, &sessionpb.Ended{})
	})
	t.Run("expiry", func(t *testing.T) {
		d := newDriver(t)
		o := openCmd()
		o.Limits = &sessionpb.Limits{ExpiresAtUnixMs: t0.Add(time.Hour).UnixMilli(), IdleTimeoutS: 7200}
		do(t, d, o)
		d.Advance(time.Hour - time.Millisecond)
		noop(t, d, &sessionpb.Expire{})
		d.Advance(time.Millisecond)
		writes(t, d, &sessionpb.Expire{}, &sessionpb.Ended{})
		if e := d.Log[len(d.Log)-1].(*sessionpb.Ended); e.GetBy() != "system" || e.GetReason() != "expired" {
			t.Fatalf("ended %v", e)
		}
	})
}

func TestOnActivate(t *testing.T) {
	d := newDriver(t)
	if effs := d.Reactivate(); len(effs) != 0 {
		t.Fatalf("never opened: %v", effs)
	}
	d = opened(t, 3)
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1}) // seq 6
	do(t, d, &sessionpb.Detach{Participant: "p3", Conn: conn("p3")})
	do(t, d, &sessionpb.Leave{Participant: "p4"}) // seq 8
	effs := d.Reactivate()
	sameRecipients(t, effs, "Sync", "p1", "p2")
	for _, e := range effs {
		s := e.Msg.(*sessionpb.Sync)
		want := map[string]uint64{"p1": 8, "p2": 8}[s.GetTo()]
		if s.GetHead() != want || !s.GetGap() || s.GetSession() != code || e.ID != conn(s.GetTo()).GetId() {
			t.Fatalf("sync %v to %s", s, e.ID)
		}
	}
	// An ended session's participants still get a Sync (they may have
	// missed the notice).
	do(t, d, &sessionpb.End{By: "p1"})
	sameRecipients(t, d.Reactivate(), "Sync", "p1", "p2")
}

// TestStateIsAValue: Evolve never changes the state it is given, so two
// branches from one state do not see each other, and Decide leaves the state
// unchanged (the driver checks this on every command too).
func TestStateIsAValue(t *testing.T) {
	d := opened(t, 2)
	base := d.State
	snap := sessiontest.Snapshot(base)
	a := session.Evolve(base, &sessionpb.FrameSent{From: "p2", Cseq: 1, Payload: []byte("a")})
	b := session.Evolve(base, &sessionpb.Left{Participant: "p3"})
	b = session.Evolve(b, &sessionpb.Attached{Participant: "p1", Conn: conn("zz")})
	b = session.Evolve(b, &sessionpb.Acknowledged{Participant: "p1", Seq: 3})
	b = session.Evolve(b, &sessionpb.Detached{Participant: "p2"})
	b = session.Evolve(b, &sessionpb.Joined{Participant: "p4", Conn: conn("p4")})
	if !sessiontest.Equal(base, snap) {
		t.Fatal("Evolve modified its input")
	}
	pa, _ := a.Participant("p3")
	pb, _ := b.Participant("p3")
	if pa.Left || !pb.Left || pa.Head != 5 || pb.Head != 4 {
		t.Fatalf("branches share state: %+v / %+v", pa, pb)
	}
	for _, cmd := range append(allButOpen(), openCmd(), &sessionpb.Attach{Participant: "p2", ResumeToken: token("p2"), Conn: conn("new"), Resumed: true}) {
		env := entity.Env{ID: code, Version: base.Version, Epoch: 1, Now: t0}
		evs, err := session.Decide(base, cmd, env)
		if !sessiontest.Equal(base, snap) {
			t.Fatalf("Decide(%T) modified the state", cmd)
		}
		if err == nil {
			s := base
			for _, ev := range evs {
				s = session.Evolve(s, ev)
			}
			env.Version = s.Version
			session.Effects(base, s, cmd, evs, env)
			session.Reply(s, cmd, env)
			if !sessiontest.Equal(base, snap) {
				t.Fatalf("Evolve/Effects/Reply after %T modified the original state", cmd)
			}
		}
	}
}

// TestVersionsAndDeliveryChains runs a long scenario with every participant
// attached and checks that the state's version is the shell's, that heads
// match what the stream says, and that each participant's pushes form an
// unbroken prev_seq chain starting at its Welcome head, covering every event
// meant for it.
func TestVersionsAndDeliveryChains(t *testing.T) {
	d := newDriver(t)
	heads := map[string]uint64{} // Welcome head per participant
	welcome := func(r proto.Message) {
		w := r.(*sessionpb.Welcome)
		if w.GetParticipant() != "" {
			heads[w.GetParticipant()] = w.GetHead()
		}
	}
	r, _ := do(t, d, openCmd())
	welcome(r)
	cseq := map[string]uint64{}
	send := func(p string) {
		cseq[p]++
		r, _ := do(t, d, &sessionpb.SendFrame{Participant: p, Cseq: cseq[p], Payload: []byte(p)})
		if r.(*sessionpb.FrameAccepted).GetSeq() != d.Version() {
			t.Fatalf("frame seq %v, version %d", r, d.Version())
		}
	}
	for i := 2; i <= 5; i++ {
		id := fmt.Sprintf("p%d", i)
		r, _ := do(t, d, joinCmd(id, id))
		welcome(r)
		if heads[id] != d.Version() {
			t.Fatalf("%s welcome head %d, version %d", id, heads[id], d.Version())
		}
		send("p1")
		send(id)
		do(t, d, &sessionpb.Ack{Participant: "p1", Seq: d.State.Participants[0].Head})
	}
	do(t, d, &sessionpb.Leave{Participant: "p3"})
	send("p2")
	send("p4")
	r, _ = do(t, d, joinCmd("p6", "p6"))
	welcome(r)
	send("p6")
	do(t, d, &sessionpb.Attach{Participant: "p5", ResumeToken: token("p5"), LastSeq: 2, Conn: conn("p5"), Resumed: true})
	send("p5")
	do(t, d, &sessionpb.End{By: "p1"})
	info := noop(t, d, &sessionpb.Get{}).(*sessionpb.Info)
	if info.GetVersion() != d.Version() || d.State.Version != d.Version() {
		t.Fatalf("info version %d, state %d, stream %d", info.GetVersion(), d.State.Version, d.Version())
	}
	if err := d.CheckHeads(); err != nil {
		t.Fatal(err)
	}
	meant := d.MeantFor()
	for p, seqs := range meant {
		got := d.Delivered[p]
		if seqs[0] != heads[p] {
			t.Fatalf("%s: welcome head %d, joined at %d", p, heads[p], seqs[0])
		}
		if len(got) != len(seqs)-1 {
			t.Fatalf("%s: %d pushes, %d events meant for it (%v)", p, len(got), len(seqs)-1, seqs)
		}
		prev := heads[p]
		for i, m := range got {
			if m.GetPrevSeq() != prev || m.GetSeq() != seqs[i+1] {
				t.Fatalf("%s: push %d is seq %d prev %d, want seq %d prev %d", p, i, m.GetSeq(), m.GetPrevSeq(), seqs[i+1], prev)
			}
			prev = m.GetSeq()
		}
	}
	d.Reactivate()

	// Reopen: the count goes on across instances.
	do(t, d, openCmd())
	if d.State.Version != d.Version() || d.State.OpenedSeq != d.Version()-1 {
		t.Fatalf("after reopen: state version %d, stream %d", d.State.Version, d.Version())
	}
	d.Reactivate()
}

func TestDeliverFor(t *testing.T) {
	if _, ok := session.DeliverFor(code, "p1", 3, 2, &sessionpb.FrameSent{From: "p1"}); ok {
		t.Fatal("own frame delivered")
	}
	if _, ok := session.DeliverFor(code, "p1", 3, 2, &sessionpb.Attached{Participant: "p2"}); ok {
		t.Fatal("Attached delivered")
	}
	dv, ok := session.DeliverFor(code, "p1", 3, 2, &sessionpb.Joined{Participant: "p2", Name: "B", Role: "guest", ResumeTokenHash: []byte("secret")})
	if !ok || dv.GetNotice().GetEvent() != "joined" || dv.GetSeq() != 3 || dv.GetPrevSeq() != 2 || bytes.Contains([]byte(dv.String()), []byte("secret")) {
		t.Fatalf("deliver %v", dv)
	}
}

func TestLastFor(t *testing.T) {
	for _, tc := range []struct {
		ev   proto.Message
		want bool
	}{
		{&sessionpb.Left{Participant: "p2"}, true},
		{&sessionpb.Left{Participant: "p3"}, false},
		{&sessionpb.Ended{By: "p1"}, true},
		{&sessionpb.Opened{}, true},
		{&sessionpb.Joined{Participant: "p2"}, false},
		{&sessionpb.FrameSent{From: "p1"}, false},
	} {
		if got := session.LastFor(tc.ev, "p2"); got != tc.want {
			t.Errorf("LastFor(%T %v) = %v", tc.ev, tc.ev, got)
		}
	}
	// Following the stream with MeantFor until LastFor gives exactly what
	// the driver's independent reading says, across a reopen.
	d := opened(t, 2)
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1})
	do(t, d, &sessionpb.Leave{Participant: "p2"})
	do(t, d, &sessionpb.SendFrame{Participant: "p3", Cseq: 1})
	do(t, d, &sessionpb.End{By: "p1"})
	first := d.MeantFor()
	do(t, d, openCmd())
	do(t, d, joinCmd("again", "p2"))
	do(t, d, &sessionpb.SendFrame{Participant: "p1", Cseq: 1})
	for _, p := range []string{"p1", "p2", "p3"} {
		want := first[p]
		var got []uint64
		for i := int(want[0]); i < len(d.Log); i++ { // after its Joined
			ev := d.Log[i]
			if session.MeantFor(ev, p) {
				got = append(got, uint64(i+1))
			}
			if session.LastFor(ev, p) {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[1:]) {
			t.Errorf("%s: read %v, meant %v", p, got, want[1:])
		}
	}
}

// A session opened by a supporter account belongs to the account's tenant.
func TestOpenWithTenant(t *testing.T) {
	d := newDriver(t)
	bad := openCmd()
	bad.Tenant = "Not A Tenant"
	rejects(t, d, bad, session.ReasonBadRequest, "tenant")
	o := openCmd()
	o.Tenant = "t1"
	writes(t, d, o, &sessionpb.Opened{}, &sessionpb.Joined{})
	if op := d.Log[0].(*sessionpb.Opened); op.GetTenant() != "t1" {
		t.Fatalf("opened %v", op)
	}
	if info := noop(t, d, &sessionpb.Get{}).(*sessionpb.Info); info.GetTenant() != "t1" {
		t.Fatalf("info %v", info)
	}
}
