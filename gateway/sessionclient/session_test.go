package sessionclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient/sessiontest"
	"github.com/switchboard-io/switchboard/gateway/sessionwire"
	"github.com/switchboard-io/switchboard/internal/frozen"
)

func newServer(t *testing.T, opts sessiontest.Options) *sessiontest.Server {
	t.Helper()
	srv, err := sessiontest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func testConfig(t *testing.T, srv *sessiontest.Server) Config {
	return Config{
		Nodes:       srv.URLs(),
		TLS:         srv.ClientTLS(),
		MinBackoff:  5 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
		GiveUpAfter: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openPair opens a session and joins one guest; the host has consumed the
// guest's joined notice.
func openPair(t *testing.T, srv *sessiontest.Server, cfg Config, lim Limits) (host, guest *Session) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	host, err := Open(ctx, cfg, OpenParams{Token: sessiontest.DefaultHostToken, Name: "Alice", Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	guest, err = Join(ctx, cfg, JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guest.Close() })
	m, err := host.Recv(ctx)
	if err != nil || m.Kind != Notice || m.Event != "joined" || m.Participant != guest.Participant() {
		t.Fatalf("host's first message: %+v, %v", m, err)
	}
	return host, guest
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{Nodes: []string{"nohost", "http://x:1", ""}, MinBackoff: time.Second, MaxBackoff: time.Millisecond, Window: -1}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Nodes[0]", "Nodes[1]", "Nodes[2]", "MaxBackoff", "Window"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err := (Config{Nodes: []string{"127.0.0.1:7405", "wss://n2:7405"}}).Validate(); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"127.0.0.1:7405":       "wss://127.0.0.1:7405/v1/session",
		"ws://h:1":             "ws://h:1/v1/session",
		"wss://h:1/other/path": "wss://h:1/other/path",
	} {
		if got, err := NodeURL(in); err != nil || got != want {
			t.Errorf("NodeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestOpenJoinExchange(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 10*time.Second)
	if c := host.Code(); len(c) != 9 || c[0] == '0' {
		t.Errorf("code %q", c)
	}
	if host.JoinSecret() == "" || guest.JoinSecret() != "" {
		t.Errorf("join secrets: host %q guest %q", host.JoinSecret(), guest.JoinSecret())
	}
	if host.Participant() != "p1" || guest.Participant() != "p2" || host.Role() != "host" || guest.Role() != "guest" {
		t.Errorf("identities %s/%s %s/%s", host.Participant(), host.Role(), guest.Participant(), guest.Role())
	}
	if ps := host.Participants(); len(ps) != 2 || ps[1].Name != "Bob" {
		t.Errorf("host's participants %+v", ps)
	}
	if err := host.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := guest.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := guest.Send(ctx, nil); err != nil { // empty payloads are allowed
		t.Fatal(err)
	}
	m, err := guest.Recv(ctx)
	if err != nil || m.Kind != Durable || m.From != "p1" || string(m.Payload) != "hello" {
		t.Fatalf("guest got %+v, %v", m, err)
	}
	m, err = host.Recv(ctx)
	if err != nil || m.Kind != Durable || m.From != "p2" || string(m.Payload) != "hi" {
		t.Fatalf("host got %+v, %v", m, err)
	}
	m, err = host.Recv(ctx)
	if err != nil || m.Kind != Durable || len(m.Payload) != 0 {
		t.Fatalf("host got %+v, %v", m, err)
	}
	if err := host.SendStream(ctx, []byte("pixels")); err != nil {
		t.Fatal(err)
	}
	m, err = guest.Recv(ctx)
	if err != nil || m.Kind != Stream || m.From != "p1" || string(m.Payload) != "pixels" {
		t.Fatalf("guest got %+v, %v", m, err)
	}
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := guest.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// exchange sends n numbered durable frames from s while collecting what the
// other side receives, and checks exactly-once in-order delivery.
func checkSequence(t *testing.T, got [][]byte, n int, who string) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s received %d frames, want %d", who, len(got), n)
	}
	for i, p := range got {
		if v := binary.BigEndian.Uint64(p); v != uint64(i) {
			t.Fatalf("%s: frame %d carries %d (lost, duplicated or reordered)", who, i, v)
		}
	}
}

func frame(i int) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(i))
	return append(b, fmt.Sprintf(" frame %d", i)...)
}

// sendAll sends n numbered frames, then flushes.
func sendAll(ctx context.Context, s *Session, n int) error {
	for i := range n {
		if err := s.Send(ctx, frame(i)); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
	}
	return s.Flush(ctx)
}

// recvDurable receives n durable frames, skipping other kinds.
func recvDurable(ctx context.Context, s *Session, n int) ([][]byte, error) {
	var got [][]byte
	last := uint64(0)
	for len(got) < n {
		m, err := s.Recv(ctx)
		if err != nil {
			return got, err
		}
		if m.Kind != Durable {
			continue
		}
		if m.Seq <= last {
			return got, fmt.Errorf("seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		got = append(got, m.Payload)
	}
	return got, nil
}

// Both participants send while the server kills connections at random
// (abruptly, on any node): every frame arrives exactly once, in order.
func TestExactlyOnceWhileConnectionsAreKilled(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 3})
	cfg := testConfig(t, srv)
	host, guest := openPair(t, srv, cfg, Limits{FramesPerSecond: 10000})
	ctx := ctxT(t, 60*time.Second)
	const n = 3000
	stop := make(chan struct{})
	var killer sync.WaitGroup
	kills := 0
	killer.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for kills < 40 {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(5+rng.IntN(30)) * time.Millisecond):
			}
			switch rng.IntN(3) {
			case 0:
				srv.KillParticipant(host.Code(), "p1")
			case 1:
				srv.KillParticipant(host.Code(), "p2")
			default:
				srv.KillNode(rng.IntN(3))
			}
			kills++
		}
	})
	var wg sync.WaitGroup
	var hostGot, guestGot [][]byte
	var errs [4]error
	wg.Go(func() { errs[0] = sendAll(ctx, host, n) })
	wg.Go(func() { errs[1] = sendAll(ctx, guest, n) })
	wg.Go(func() { guestGot, errs[2] = recvDurable(ctx, guest, n) })
	wg.Go(func() { hostGot, errs[3] = recvDurable(ctx, host, n) })
	wg.Wait()
	close(stop)
	killer.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkSequence(t, guestGot, n, "guest")
	checkSequence(t, hostGot, n, "host")
	hs, gs := host.Stats(), guest.Stats()
	t.Logf("kills %d; host %+v; guest %+v; server %+v", kills, hs, gs, srv.Stats())
	if hs.Reconnects+gs.Reconnects == 0 {
		t.Error("no reconnects: the test killed nothing")
	}
	if w := srv.Stats().Written; w != 2*n {
		t.Errorf("server wrote %d frames, want %d (cseq dedup failed)", w, 2*n)
	}
}

// Frames the server never got are re-sent after a resume; frames it wrote
// but whose `sent` was lost are confirmed by the welcome's last_cseq (not
// written twice); a lost last `sent` on a live connection does not leave
// Flush hanging.
func TestResendsUnconfirmedFrames(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	unconfirmed := func() int {
		host.mu.Lock()
		defer host.mu.Unlock()
		return len(host.pending)
	}

	// Written, confirmations lost.
	srv.DropSent(1000)
	for i := range 20 {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the server to write 20 frames", func() bool { return srv.Stats().Written == 20 })
	if unconfirmed() == 0 {
		t.Fatal("frames confirmed although every sent was dropped")
	}
	srv.DropSent(0)
	srv.KillParticipant(host.Code(), "p1")
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Never received by the server (its connection is frozen: it reads and
	// ignores), so the resume must re-send them.
	waitFor(t, 5*time.Second, "the host to resume", func() bool { return srv.NodeOf(host.Code(), "p1") >= 0 })
	srv.Freeze(host.Code(), "p1")
	resends := host.Stats().Resends
	for i := 20; i < 30; i++ {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "10 frames on the wire", func() bool {
		host.mu.Lock()
		defer host.mu.Unlock()
		return host.writeFrom == 31
	})
	srv.KillParticipant(host.Code(), "p1")
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := host.Stats().Resends - resends; got < 10 {
		t.Errorf("%d resends after the resume, want at least 10", got)
	}
	got, err := recvDurable(ctx, guest, 30)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, 30, "guest")
	if w := srv.Stats().Written; w != 30 {
		t.Errorf("server wrote %d frames, want 30", w)
	}

	// Only the last confirmation is lost and the connection stays up: the
	// client re-sends on its own and the duplicate's `sent` confirms it.
	srv.DropSent(1)
	if err := host.Send(ctx, frame(30)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("flush after a lost sent took %v; host %+v; server %+v", time.Since(start), host.Stats(), srv.Stats())
	if srv.Stats().Duplicates == 0 {
		t.Error("the server confirmed no duplicate")
	}
}

// A resumed connection delivers again what was received but not processed;
// the library drops those duplicates.
func TestDropsDuplicatesAfterResume(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	if err := sendAll(ctx, host, 50); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the guest to buffer 50 frames", func() bool {
		guest.mu.Lock()
		defer guest.mu.Unlock()
		return len(guest.queue)-guest.qhead == 50
	})
	// Process 10, kill before any ack can be sent is not needed: the resume
	// carries the last processed seq, and the server replays the other 40,
	// which are already buffered.
	got, err := recvDurable(ctx, guest, 10)
	if err != nil {
		t.Fatal(err)
	}
	srv.KillParticipant(host.Code(), "p2")
	waitFor(t, 5*time.Second, "the guest to resume", func() bool { return guest.Stats().Resumes == 1 })
	more, err := recvDurable(ctx, guest, 40)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, append(got, more...), 50, "guest")
	waitFor(t, 5*time.Second, "40 duplicates dropped", func() bool { return guest.Stats().DuplicatesDropped == 40 })
	// Nothing more arrives (no duplicate leaked through): the next message
	// is a fresh one.
	if err := host.Send(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := guest.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == Gap {
			continue
		}
		if string(m.Payload) != "after" {
			t.Fatalf("got %+v, want the frame after", m)
		}
		break
	}
}

// When its node stops, a participant resumes on another node (round robin),
// gets a gap notice, and traffic continues; the stopped node can come back.
func TestResumeOnAnotherNode(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 3})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	node := srv.NodeOf(host.Code(), "p2")
	if node < 0 {
		t.Fatal("guest not connected")
	}
	srv.StopNode(node)
	waitFor(t, 5*time.Second, "the guest to resume on another node", func() bool {
		now := srv.NodeOf(host.Code(), "p2")
		return now >= 0 && now != node
	})
	m, err := guest.Recv(ctx)
	if err != nil || m.Kind != Gap {
		t.Fatalf("want a gap after the resume, got %+v, %v", m, err)
	}
	if err := host.Send(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	m, err = guest.Recv(ctx)
	if err != nil || string(m.Payload) != "still here" {
		t.Fatalf("got %+v, %v", m, err)
	}
	if st := guest.Stats(); st.Reconnects != 1 || st.Resumes != 1 || st.LastResumeDuration <= 0 {
		t.Errorf("guest stats %+v", st)
	}
	// Every node but one stopped: the client still finds the last one.
	if err := srv.StartNode(node); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if i != node {
			srv.StopNode(i)
		}
	}
	waitFor(t, 5*time.Second, "the guest on the restarted node", func() bool { return srv.NodeOf(host.Code(), "p2") == node })
	waitFor(t, 5*time.Second, "the host on the restarted node", func() bool { return srv.NodeOf(host.Code(), "p1") == node })
	if err := guest.Send(ctx, []byte("back")); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := host.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == Durable {
			if string(m.Payload) != "back" {
				t.Fatalf("got %q", m.Payload)
			}
			break
		}
	}
}

// Every fatal rejection reaches the application as the right sentinel;
// unavailable and internal are retried instead.
func TestFatalErrorsSurfaceAsSentinels(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	cfg := testConfig(t, srv)
	ctx := ctxT(t, 30*time.Second)
	host, guest := openPair(t, srv, cfg, Limits{MaxParticipants: 2})
	code, secret := host.Code(), host.JoinSecret()

	handshake := []struct {
		name string
		do   func() error
		want error
	}{
		{"bad token", func() error {
			_, err := Open(ctx, cfg, OpenParams{Token: "wrong", Name: "Eve"})
			return err
		}, ErrUnauthorized},
		{"unknown session", func() error {
			_, err := Join(ctx, cfg, JoinParams{Session: "999999999", Secret: secret, Name: "Eve"})
			return err
		}, ErrUnknownSession},
		{"bad secret", func() error {
			_, err := Join(ctx, cfg, JoinParams{Session: code, Secret: "wrong", Name: "Eve"})
			return err
		}, ErrBadSecret},
		{"session full", func() error {
			_, err := Join(ctx, cfg, JoinParams{Session: code, Secret: secret, Name: "Eve"})
			return err
		}, ErrSessionFull},
		{"bad name", func() error {
			_, err := Join(ctx, cfg, JoinParams{Session: code, Secret: secret, Name: ""})
			return err
		}, ErrBadRequest},
		{"unsupported version", func() error {
			srv.RejectNext("unsupported_version")
			_, err := Join(ctx, cfg, JoinParams{Session: code, Secret: secret, Name: "Eve"})
			return err
		}, ErrUnsupportedVersion},
	}
	for _, tc := range handshake {
		err := tc.do()
		var se *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &se) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}

	// unavailable and internal in the handshake: tried again elsewhere.
	srv.RejectNext("unavailable")
	srv.RejectNext("internal")
	h2, err := Open(ctx, cfg, OpenParams{Token: sessiontest.DefaultHostToken, Name: "Carol"})
	if err != nil {
		t.Fatalf("open after unavailable+internal: %v", err)
	}
	h2.Close()
	srv.RejectNext("unavailable")
	srv.KillParticipant(code, "p2")
	waitFor(t, 5*time.Second, "a resume after unavailable", func() bool { return guest.Stats().Resumes == 1 })

	// Rejected resumes end the session for the client with the sentinel.
	for _, tc := range []struct {
		code string
		want error
	}{
		{"bad_resume_token", ErrBadResumeToken},
		{"resume_from_future", ErrResumeFromFuture},
		{"unknown_participant", ErrUnknownParticipant},
		{"unknown_session", ErrUnknownSession},
	} {
		h, err := Open(ctx, cfg, OpenParams{Token: sessiontest.DefaultHostToken, Name: "Dan"})
		if err != nil {
			t.Fatal(err)
		}
		srv.RejectNext(tc.code)
		srv.KillParticipant(h.Code(), "p1")
		_, err = h.Recv(ctx)
		if !errors.Is(err, tc.want) {
			t.Errorf("resume rejected with %s: Recv returned %v", tc.code, err)
		}
		if err := h.Send(ctx, []byte("x")); !errors.Is(err, tc.want) {
			t.Errorf("resume rejected with %s: Send returned %v", tc.code, err)
		}
		h.Close()
	}

	// A guest may not end the session.
	if err := guest.End(ctx, "no"); !errors.Is(err, ErrNotHost) {
		t.Errorf("guest End: %v", err)
	}
	// An oversized frame is refused by Send; the session goes on.
	if err := host.Send(ctx, make([]byte, 65537)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized Send: %v", err)
	}
	if err := host.SendStream(ctx, make([]byte, 65537)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized SendStream: %v", err)
	}
	if err := host.Send(ctx, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Joining an ended session: session_ended, which is also ErrEnded.
	if err := host.End(ctx, ""); err != nil {
		t.Fatal(err)
	}
	_, err = Join(ctx, cfg, JoinParams{Session: code, Secret: secret, Name: "Eve"})
	if !errors.Is(err, ErrSessionEnded) || !errors.Is(err, ErrEnded) {
		t.Errorf("join ended session: %v", err)
	}
}

// A non-fatal refusal of a durable frame (rate_limited, unavailable) makes
// the library re-send it and everything after it (which the server refused
// with bad_sequence) transparently.
func TestRefusedFramesAreResent(t *testing.T) {
	for _, code := range []string{"rate_limited", "unavailable"} {
		t.Run(code, func(t *testing.T) {
			srv := newServer(t, sessiontest.Options{})
			host, guest := openPair(t, srv, testConfig(t, srv), Limits{FramesPerSecond: 10000})
			ctx := ctxT(t, 20*time.Second)
			for i := range 10 {
				if err := host.Send(ctx, frame(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := host.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			srv.RefuseFrames(code, 3)
			for i := 10; i < 200; i++ {
				if err := host.Send(ctx, frame(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := host.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := recvDurable(ctx, guest, 200)
			if err != nil {
				t.Fatal(err)
			}
			checkSequence(t, got, 200, "guest")
			if w := srv.Stats().Written; w != 200 {
				t.Errorf("server wrote %d", w)
			}
			if host.Stats().Resends == 0 || host.Stats().Reconnects != 0 {
				t.Errorf("host stats %+v", host.Stats())
			}
		})
	}
}

// A connection that goes silent is declared dead after 3 × heartbeat_s and
// replaced.
func TestHeartbeatTimeout(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2, HeartbeatS: 1})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	before := srv.NodeOf(host.Code(), "p2")
	start := time.Now()
	if !srv.Freeze(host.Code(), "p2") {
		t.Fatal("guest not connected")
	}
	if err := host.Send(ctx, []byte("while frozen")); err != nil {
		t.Fatal(err)
	}
	m, err := recvDurable(ctx, guest, 1)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("detected and resumed after %v (node %d → %d)", took, before, srv.NodeOf(host.Code(), "p2"))
	if string(m[0]) != "while frozen" || guest.Stats().Reconnects != 1 {
		t.Fatalf("got %q, stats %+v", m[0], guest.Stats())
	}
	if took < 2*time.Second || took > 6*time.Second {
		t.Errorf("detection took %v, want about 3 s", took)
	}
	// The idle host kept its connection: pings and pongs kept it alive.
	if host.Stats().Reconnects != 0 {
		t.Errorf("host reconnected: %+v", host.Stats())
	}
}

// End: every message sent before it reaches the guest, then ErrEnded with
// the reason; the host's Recv ends the same way.
func TestEndAfterAllMessages(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	for i := range 100 {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.End(ctx, "done for today"); err != nil {
		t.Fatal(err)
	}
	got, err := recvDurable(ctx, guest, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, 100, "guest")
	_, err = guest.Recv(ctx)
	var ee *EndedError
	if !errors.As(err, &ee) || ee.Reason != "done for today" || !errors.Is(err, ErrEnded) {
		t.Fatalf("guest after the end: %v", err)
	}
	if _, err := host.Recv(ctx); !errors.Is(err, ErrEnded) {
		t.Fatalf("host after the end: %v", err)
	}
	if err := guest.Send(ctx, []byte("late")); !errors.Is(err, ErrEnded) {
		t.Errorf("send after the end: %v", err)
	}
	if err := guest.Leave(ctx); err != nil {
		t.Errorf("leave after the end: %v", err)
	}

	// An administrator's end reaches both.
	h2, g2 := openPair(t, srv, testConfig(t, srv), Limits{})
	if err := srv.EndSession(h2.Code(), "admin"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{h2, g2} {
		if _, err := s.Recv(ctx); !errors.As(err, &ee) || ee.Reason != "admin" {
			t.Errorf("%s after admin end: %v", s.Participant(), err)
		}
	}
}

func TestLeave(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	if err := guest.Send(ctx, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := guest.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Recv(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Recv after Leave: %v", err)
	}
	m, err := host.Recv(ctx)
	if err != nil || string(m.Payload) != "bye" {
		t.Fatalf("host got %+v, %v", m, err)
	}
	m, err = host.Recv(ctx)
	if err != nil || m.Kind != Notice || m.Event != "left" || m.Participant != "p2" {
		t.Fatalf("host got %+v, %v", m, err)
	}
	if ps := srv.Participants(host.Code()); len(ps) != 1 {
		t.Errorf("server participants %v", ps)
	}
	if ps := host.Participants(); !ps[1].Left {
		t.Errorf("host's view %+v", ps)
	}
}

// Acknowledgements reach the server while receiving and on Close.
func TestAcks(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 20*time.Second)
	if err := sendAll(ctx, host, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := recvDurable(ctx, guest, 5); err != nil {
		t.Fatal(err)
	}
	guest.mu.Lock()
	processed := guest.processed
	guest.mu.Unlock()
	start := time.Now()
	waitFor(t, 2*time.Second, "the coalesced ack at the server", func() bool { return srv.Acked(host.Code(), "p2") == processed })
	t.Logf("ack reached the server %v after the last Recv", time.Since(start))
}

func TestSendBlocksWhenWindowIsFull(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	cfg := testConfig(t, srv)
	cfg.Window = 4
	host, guest := openPair(t, srv, cfg, Limits{})
	ctx := ctxT(t, 20*time.Second)
	srv.DropSent(1 << 20)
	for i := range 4 {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := host.Send(short, frame(4)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fifth Send with a window of 4: %v", err)
	}
	srv.DropSent(0)
	if err := host.Send(ctx, frame(4)); err != nil {
		t.Fatal(err)
	}
	got, err := recvDurable(ctx, guest, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, 5, "guest")
}

// A message lost on the way (the next one's prev_seq names it) makes the
// client resume, which delivers it.
func TestLostMessageDetectedByPrevSeq(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 10*time.Second)
	if err := sendAll(ctx, host, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := recvDurable(ctx, guest, 1); err != nil {
		t.Fatal(err)
	}
	srv.LoseNext(host.Code(), "p2", 1)
	for i := 1; i < 5; i++ {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := recvDurable(ctx, guest, 4)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, append([][]byte{frame(0)}, got...), 5, "guest")
	if st := guest.Stats(); st.Reconnects != 1 {
		t.Errorf("guest stats %+v", st)
	}
}

// With every node gone for longer than GiveUpAfter, the application gets
// ErrUnavailable (Open at once, an open session from Recv and Send).
func TestGivesUpWhenNoNodeAnswers(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	cfg := testConfig(t, srv)
	cfg.GiveUpAfter = 300 * time.Millisecond
	host, _ := openPair(t, srv, cfg, Limits{})
	ctx := ctxT(t, 10*time.Second)
	srv.StopNode(0)
	srv.StopNode(1)
	start := time.Now()
	for {
		// The host may resume on node 1 between the two stops: the gap
		// notice of that resume comes first.
		m, err := host.Recv(ctx)
		if err == nil && m.Kind == Gap {
			continue
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Recv with every node down: %v %+v", err, m)
		}
		break
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("gave up after %v", took)
	}
	if err := host.Send(ctx, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Send: %v", err)
	}
	if _, err := Open(ctx, cfg, OpenParams{Token: sessiontest.DefaultHostToken, Name: "A"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Open: %v", err)
	}
}

// Close keeps the participant in the session (detached) after a last ack.
func TestCloseAcksAndDetaches(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{})
	ctx := ctxT(t, 10*time.Second)
	if err := sendAll(ctx, host, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := recvDurable(ctx, guest, 3); err != nil {
		t.Fatal(err)
	}
	guest.mu.Lock()
	processed := guest.processed
	guest.mu.Unlock()
	if err := guest.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Recv(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Recv after Close: %v", err)
	}
	if err := guest.Send(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	waitFor(t, 5*time.Second, "the guest detached", func() bool { return srv.NodeOf(host.Code(), "p2") < 0 })
	if ps := srv.Participants(host.Code()); len(ps) != 2 {
		t.Errorf("participants after Close: %v", ps)
	}
	if guest.Stats().Reconnects != 0 {
		t.Errorf("Close caused a reconnect: %+v", guest.Stats())
	}
	if a := srv.Acked(host.Code(), "p2"); a != processed {
		t.Errorf("server has ack %d, the guest processed %d", a, processed)
	}
}

// A node that stops answering (frozen, or cut off by a partition) is given
// up after a probe ping goes unanswered, long before 3 × heartbeat_s (45 s
// here): both for a participant that is only receiving and for one whose
// durable frames wait for their confirmation.
func TestProbeDetectsUnresponsiveNode(t *testing.T) {
	for _, frozen := range []string{"p2", "p1"} { // the receiving guest; the sending host
		t.Run(frozen, func(t *testing.T) {
			srv := newServer(t, sessiontest.Options{Nodes: 2}) // heartbeat_s 15
			cfg := testConfig(t, srv)
			cfg.ProbeInterval, cfg.ProbeTimeout = 2*time.Second, 500*time.Millisecond
			host, guest := openPair(t, srv, cfg, Limits{})
			ctx := ctxT(t, 20*time.Second)
			start := time.Now()
			if !srv.Freeze(host.Code(), frozen) {
				t.Fatalf("%s not connected", frozen)
			}
			if err := host.Send(ctx, []byte("while frozen")); err != nil {
				t.Fatal(err)
			}
			m, err := recvDurable(ctx, guest, 1)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			moved := host
			if frozen == "p2" {
				moved = guest
			}
			t.Logf("%s: detected and resumed after %v", frozen, took)
			if string(m[0]) != "while frozen" || moved.Stats().Resumes != 1 {
				t.Fatalf("got %q, stats %+v", m[0], moved.Stats())
			}
			// The guest probes after 2 s of silence, the sending host after
			// 1 s without a confirmation; then 0.5 s without an answer.
			if took > 10*time.Second {
				t.Errorf("detection took %v, want a few seconds, not 3 × heartbeat_s", took)
			}
		})
	}
}

// Probing never gives up a connection that answers: an idle pair stays on
// its connections through several probe rounds.
func TestProbeKeepsAnsweringConnections(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	cfg := testConfig(t, srv)
	cfg.ProbeInterval, cfg.ProbeTimeout = 100*time.Millisecond, 300*time.Millisecond
	host, guest := openPair(t, srv, cfg, Limits{})
	ctx := ctxT(t, 10*time.Second)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := host.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := recvDurable(ctx, guest, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // idle long enough for a probe each time
	}
	if h, g := host.Stats(), guest.Stats(); h.Reconnects != 0 || g.Reconnects != 0 {
		t.Fatalf("answering connections were given up: host %+v, guest %+v", h, g)
	}
}

// A node that answers pings but never confirms durable frames (every `sent`
// lost, re-sends included) is given up after ConfirmTimeout: the resume on
// another connection gets them confirmed.
func TestConfirmTimeoutGivesUpANodeThatTakesFramesButNeverConfirms(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	cfg := testConfig(t, srv)
	cfg.ConfirmTimeout = 1500 * time.Millisecond
	host, guest := openPair(t, srv, cfg, Limits{})
	ctx := ctxT(t, 20*time.Second)
	srv.DropSent(1 << 30)
	for i := range 5 {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the server to write 5 frames", func() bool { return srv.Stats().Written == 5 })
	waitFor(t, 10*time.Second, "the host to give the connection up", func() bool { return host.Stats().ConfirmTimeouts >= 1 })
	srv.DropSent(0)
	if err := host.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := host.Stats(); st.Resumes < 1 {
		t.Fatalf("no resume after the confirm timeout: %+v", st)
	}
	got, err := recvDurable(ctx, guest, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, 5, "guest")
	if w := srv.Stats().Written; w != 5 {
		t.Errorf("server wrote %d frames, want 5 (re-sends are duplicates)", w)
	}
}

// Frames confirmed one at a time with idle time between them (longer in
// all than the timeout) never trip it: it counts only while frames wait.
func TestConfirmTimeoutSparesConnectionsThatConfirm(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 2})
	cfg := testConfig(t, srv)
	cfg.ConfirmTimeout = 400 * time.Millisecond
	host, guest := openPair(t, srv, cfg, Limits{})
	ctx := ctxT(t, 20*time.Second)
	for i := range 10 {
		if err := host.Send(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
		if err := host.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // 1 s in all, each wait far under the timeout
	}
	if _, err := recvDurable(ctx, guest, 10); err != nil {
		t.Fatal(err)
	}
	if st := host.Stats(); st.ConfirmTimeouts != 0 || st.Reconnects != 0 {
		t.Fatalf("a connection that confirms was given up: %+v", st)
	}
}

// A frozen node's kernel accepts TCP connections that nobody answers: the
// client gives such a node up after DialTimeout and reaches the next one,
// rather than waiting the whole HandshakeTimeout (a minute here).
func TestDialTimeoutSkipsANodeThatAcceptsButNeverAnswers(t *testing.T) {
	srv := newServer(t, sessiontest.Options{Nodes: 1})
	fz, err := frozen.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fz.Close() })
	cfg := testConfig(t, srv)
	cfg.Nodes = append([]string{"wss://" + fz.Addr().String() + SessionPath}, srv.URLs()...)
	cfg.HandshakeTimeout = time.Minute
	cfg.DialTimeout = 300 * time.Millisecond
	ctx := ctxT(t, 15*time.Second)
	s, err := Open(ctx, cfg, OpenParams{Token: sessiontest.DefaultHostToken, Name: "A"})
	if err != nil {
		t.Fatalf("Open with a silent first node: %v", err)
	}
	defer s.Close()
	if fz.Accepted() == 0 {
		t.Error("the silent node was never tried")
	}
}

// The session's own transport dials every connection through burstDialer,
// and the dial context carries the slot that hands the burst connection to
// the attempt: the writer then sends its bursts with one write. Frames sent
// in bursts arrive exactly once and in order.
func TestConnectionsAreDialledForBurstWrites(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{FramesPerSecond: 10000, Burst: 20000})
	for _, s := range []*Session{host, guest} {
		if currentConn(t, s).bc == nil {
			t.Fatalf("%s: the connection was not dialled through the burst dialer", s.Role())
		}
	}
	ctx := ctxT(t, 20*time.Second)
	const n = 500
	errc := make(chan error, 1)
	go func() { errc <- sendAll(ctx, host, n) }()
	got, err := recvDurable(ctx, guest, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, n, "guest")
}

// A burst of acknowledgements and frames goes out as one write to the
// connection under the WebSocket and its TLS, and arrives whole.
func TestBurstIsOneWrite(t *testing.T) {
	srv := newServer(t, sessiontest.Options{})
	host, guest := openPair(t, srv, testConfig(t, srv), Limits{FramesPerSecond: 10000, Burst: 20000})
	c := currentConn(t, host)
	if c.bc == nil {
		t.Fatal("the connection was not dialled through the burst dialer")
	}
	// Frames with cseqs the client never issued: the guest gets them, the
	// host's own writer knows nothing of them. Written from the test while
	// the writer idles, so the count below is this burst's alone.
	const n = 10
	frames := make([]sessionwire.Frame, n)
	for i := range frames {
		frames[i] = sessionwire.Frame{Kind: sessionwire.KindDurable, CSeq: uint64(1 + i), Payload: frame(i)}
	}
	host.mu.Lock() // keeps the host's writer out while the test writes
	before := c.bc.Writes()
	err := c.burst([]sessionwire.Control{{Type: sessionwire.TypePing, T: 1}}, frames)
	after := c.bc.Writes()
	host.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if after-before != 1 {
		t.Fatalf("a burst of a ping and %d frames took %d writes, want 1", n, after-before)
	}
	got, err := recvDurable(ctxT(t, 10*time.Second), guest, n)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, got, n, "guest")
}

// currentConn waits for s to have a connection and returns it.
func currentConn(t *testing.T, s *Session) *conn {
	t.Helper()
	var c *conn
	waitFor(t, 5*time.Second, s.Role()+" connected", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		c = s.cur
		return c != nil
	})
	return c
}
