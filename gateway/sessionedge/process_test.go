package sessionedge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/gateway/sessionwire"
	"github.com/switchboard-io/switchboard/internal/bench"
)

const hostToken = "alice-token-0123456789"

var fastArgs = []string{"--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms",
	"--raft-leader-lease-timeout", "250ms", "--log-level", "info", "--cluster-stabilization-time", "1s",
	"--session-host-tokens", "alice:" + hostToken, "--session-heartbeat", "2s"}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/switchboard")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build switchboard: %v\n%s", err, out)
	}
	return bin
}

type testCluster struct {
	*bench.LogCluster
	tls *tls.Config
}

func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: skipped under -short")
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := bench.StartLogClusterWith(ctx, bin, n, t.TempDir(), bench.ClusterOptions{
		ExtraArgs: append(append([]string{}, fastArgs...), extra...), ReadyTimeout: 60 * time.Second, StopTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("--- %s log tail ---\n%s", nd.ID, nd.Proc.LogTail(4000))
			}
		}
		_ = c.Stop()
	})
	pem, err := os.ReadFile(filepath.Join(c.Dir, "tls", tlsutil.DefaultCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &testCluster{LogCluster: c, tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

// wsClient is a raw protocol client for tests (the library hides errors the
// tests need to see).
type wsClient struct {
	t  *testing.T
	ws *websocket.Conn
	in chan msg // filled by a reader goroutine: coder/websocket closes the connection when a Read's context ends
}

func (tc *testCluster) dial(t *testing.T, node int, hdr http.Header) (*wsClient, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "wss://"+tc.Nodes[node].SessionAddr+"/v1/session", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tc.tls}}, HTTPHeader: hdr,
	})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 21)
	c := &wsClient{t: t, ws: ws, in: make(chan msg, 4096)}
	go c.readLoop()
	t.Cleanup(func() { _ = ws.CloseNow() })
	return c, resp, nil
}

func (tc *testCluster) mustDial(t *testing.T, node int) *wsClient {
	t.Helper()
	c, _, err := tc.dial(t, node, nil)
	if err != nil {
		t.Fatalf("dial node %d: %v", node, err)
	}
	return c
}

func (c *wsClient) sendControl(m sessionwire.Control) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, sessionwire.EncodeControl(m)); err != nil {
		c.t.Fatalf("write %s: %v", m.Type, err)
	}
}

func (c *wsClient) sendBinary(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.t.Fatalf("write binary: %v", err)
	}
}

func (c *wsClient) sendDurable(cseq uint64, payload string) {
	c.t.Helper()
	b, _ := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindDurable, CSeq: cseq, Payload: []byte(payload)})
	c.sendBinary(b)
}

// msg is one message received: a control message or a frame.
type msg struct {
	ctl   *sessionwire.Control
	frame *sessionwire.Frame
	err   error // read error (closed)
}

func (m msg) String() string {
	switch {
	case m.ctl != nil:
		return fmt.Sprintf("%+v", *m.ctl)
	case m.frame != nil:
		return fmt.Sprintf("frame kind %#x seq %d prev %d from %s %q", m.frame.Kind, m.frame.Seq, m.frame.PrevSeq, m.frame.From, m.frame.Payload)
	}
	return fmt.Sprintf("read error: %v", m.err)
}

func (c *wsClient) readLoop() {
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.in <- msg{err: err}
			close(c.in)
			return
		}
		if typ == websocket.MessageBinary {
			f, err := sessionwire.DecodeFrame(data)
			if err != nil {
				c.in <- msg{err: fmt.Errorf("server sent an undecodable frame: %w", err)}
				continue
			}
			c.in <- msg{frame: &f}
			continue
		}
		m, err := sessionwire.DecodeControl(data)
		if err != nil {
			c.in <- msg{err: fmt.Errorf("server sent an undecodable control message %q: %w", data, err)}
			continue
		}
		c.in <- msg{ctl: &m}
	}
}

// read returns the next message, or a message with err set on timeout.
func (c *wsClient) read(timeout time.Duration) msg {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m, ok := <-c.in:
		if !ok {
			return msg{err: errors.New("connection closed")}
		}
		return m
	case <-t.C:
		return msg{err: errTimeout}
	}
}

var errTimeout = errors.New("timeout waiting for a message")

// next returns the next message that is not a heartbeat or a gap notice.
func (c *wsClient) next(timeout time.Duration) msg {
	deadline := time.Now().Add(timeout)
	for {
		m := c.read(time.Until(deadline))
		if m.ctl != nil && (m.ctl.Type == sessionwire.TypePing || m.ctl.Type == sessionwire.TypePong || m.ctl.Type == sessionwire.TypeGap) {
			if m.ctl.Type == sessionwire.TypePing {
				c.sendControl(sessionwire.Control{Type: sessionwire.TypePong, T: m.ctl.T})
			}
			continue
		}
		return m
	}
}

func (c *wsClient) expectControl(typ string) sessionwire.Control {
	c.t.Helper()
	m := c.next(15 * time.Second)
	if m.ctl == nil || m.ctl.Type != typ {
		c.t.Fatalf("want %s, got %v", typ, m)
	}
	return *m.ctl
}

func (c *wsClient) expectError(code string, fatal bool) sessionwire.Control {
	c.t.Helper()
	e := c.expectControl(sessionwire.TypeError)
	if e.Code != code || e.Fatal != fatal {
		c.t.Fatalf("want error %s (fatal %v), got %+v", code, fatal, e)
	}
	if e.Message == "" {
		c.t.Fatalf("error %s without a message", code)
	}
	return e
}

func (c *wsClient) expectClosed(code websocket.StatusCode) {
	c.t.Helper()
	for {
		m := c.read(10 * time.Second)
		if m.err == nil {
			if m.ctl != nil && (m.ctl.Type == sessionwire.TypePing || m.ctl.Type == sessionwire.TypeGap) {
				continue
			}
			c.t.Fatalf("want close %d, got %v", code, m)
		}
		if got := websocket.CloseStatus(m.err); got != code {
			c.t.Fatalf("want close %d, got %v (%d)", code, m.err, got)
		}
		return
	}
}

func (c *wsClient) expectFrame(seqAbove uint64, from, payload string) sessionwire.Frame {
	c.t.Helper()
	m := c.next(15 * time.Second)
	if m.frame == nil || m.frame.Kind != sessionwire.KindDeliverDurable || m.frame.From != from || string(m.frame.Payload) != payload || m.frame.Seq <= seqAbove {
		c.t.Fatalf("want durable frame %q from %s after seq %d, got %v", payload, from, seqAbove, m)
	}
	return *m.frame
}

func open(t *testing.T, c *wsClient, limits *sessionwire.Limits) sessionwire.Control {
	t.Helper()
	c.sendControl(sessionwire.Control{Type: sessionwire.TypeOpen, V: 1, Token: hostToken, Name: "Alice", Limits: limits})
	w := c.expectControl(sessionwire.TypeWelcome)
	if len(w.Session) != 9 || w.JoinSecret == "" || w.ResumeToken == "" || w.Participant != "p1" || w.Role != "host" {
		t.Fatalf("bad welcome for the host: %+v", w)
	}
	return w
}

func join(t *testing.T, c *wsClient, code, secret, name string) sessionwire.Control {
	t.Helper()
	c.sendControl(sessionwire.Control{Type: sessionwire.TypeJoin, V: 1, Session: code, Secret: secret, Name: name})
	w := c.expectControl(sessionwire.TypeWelcome)
	if w.JoinSecret != "" || w.ResumeToken == "" || w.Role != "guest" {
		t.Fatalf("bad welcome for a guest: %+v", w)
	}
	return w
}

func TestProcessSessionOneNode(t *testing.T) {
	tc := startCluster(t, 1)

	host := tc.mustDial(t, 0)
	hw := open(t, host, nil)
	guest := tc.mustDial(t, 0)
	gw := join(t, guest, hw.Session, hw.JoinSecret, "Bob")
	if gw.Participant != "p2" || len(gw.Participants) != 2 {
		t.Fatalf("guest welcome %+v", gw)
	}
	ev := host.expectControl(sessionwire.TypeEvent)
	if ev.Event != "joined" || ev.Participant != "p2" || ev.Name != "Bob" || ev.Seq != gw.Seq {
		t.Fatalf("joined notice %+v (guest welcome seq %d)", ev, gw.Seq)
	}

	// Durable frames both ways, in order, confirmed.
	var last uint64 = gw.Seq
	for i := 1; i <= 5; i++ {
		host.sendDurable(uint64(i), fmt.Sprintf("h%d", i))
		s := host.expectControl(sessionwire.TypeSent)
		if s.CSeq != uint64(i) || s.Seq == 0 || s.Duplicate {
			t.Fatalf("sent %+v", s)
		}
		f := guest.expectFrame(last, "p1", fmt.Sprintf("h%d", i))
		if f.Seq != s.Seq || f.PrevSeq != last {
			t.Fatalf("frame seq %d prev %d, sent seq %d, last %d", f.Seq, f.PrevSeq, s.Seq, last)
		}
		last = f.Seq
	}
	guest.sendControl(sessionwire.Control{Type: sessionwire.TypeAck, Seq: last})
	// A duplicate is confirmed again and not delivered twice.
	host.sendDurable(5, "h5")
	if s := host.expectControl(sessionwire.TypeSent); !s.Duplicate || s.CSeq != 5 {
		t.Fatalf("duplicate: %+v", s)
	}
	guest.sendDurable(1, "g1")
	gs := guest.expectControl(sessionwire.TypeSent)
	hf := host.expectFrame(0, "p2", "g1")
	if hf.Seq != gs.Seq {
		t.Fatalf("host got seq %d, guest's sent says %d", hf.Seq, gs.Seq)
	}
	// Stream frames are relayed, not confirmed.
	b, _ := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindStream, Payload: []byte("pixels")})
	host.sendBinary(b)
	m := guest.next(10 * time.Second)
	if m.frame == nil || m.frame.Kind != sessionwire.KindDeliverStream || m.frame.From != "p1" || string(m.frame.Payload) != "pixels" {
		t.Fatalf("stream frame: %v", m)
	}

	// Bad input: each gets its code, the connection stays, nothing changes.
	host.sendBinary([]byte{})
	host.expectError("bad_frame", false)
	host.sendBinary([]byte{sessionwire.KindDurable, 1, 2})
	host.expectError("bad_frame", false)
	host.sendBinary([]byte{0x7e, 1})
	host.expectError("unknown_frame_kind", false)
	host.sendBinary([]byte{sessionwire.KindDeliverDurable, 0})
	host.expectError("unknown_frame_kind", false)
	host.sendDurable(9, "skips ahead")
	if e := host.expectError("bad_sequence", false); e.CSeq != 9 {
		t.Fatalf("bad_sequence for cseq %d", e.CSeq)
	}
	big := strings.Repeat("x", 65537)
	host.sendDurable(6, big)
	if e := host.expectError("frame_too_large", false); e.CSeq != 6 {
		t.Fatalf("frame_too_large for cseq %d", e.CSeq)
	}
	host.sendControl(sessionwire.Control{Type: sessionwire.TypeAck, Seq: 1 << 40})
	host.expectError("resume_from_future", false)
	host.sendControl(sessionwire.Control{Type: "open", V: 1})
	host.expectError("bad_request", false)
	guest.sendControl(sessionwire.Control{Type: sessionwire.TypeEnd})
	guest.expectError("not_host", false)
	// After all that, cseq 6 is still the next one: nothing was written.
	host.sendDurable(6, "h6")
	if s := host.expectControl(sessionwire.TypeSent); s.CSeq != 6 || s.Duplicate {
		t.Fatalf("sent %+v", s)
	}
	guest.expectFrame(last, "p1", "h6")

	// Handshake failures.
	bad := tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeJoin, V: 1, Session: hw.Session, Secret: "wrong", Name: "Eve"})
	bad.expectError("bad_secret", true)
	bad.expectClosed(4403)
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeJoin, V: 1, Session: "100000001", Secret: "x", Name: "Eve"})
	bad.expectError("unknown_session", true)
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeOpen, V: 1, Token: "not-a-token", Name: "Mallory"})
	bad.expectError("unauthorized", true)
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeOpen, V: 2, Token: hostToken, Name: "A"})
	bad.expectError("unsupported_version", true)
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeResume, V: 1, Session: hw.Session, Participant: "p2", ResumeToken: gw.ResumeToken, LastSeq: 1 << 40})
	bad.expectError("resume_from_future", true)
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeResume, V: 1, Session: hw.Session, Participant: "p2", ResumeToken: "stolen", LastSeq: 0})
	bad.expectError("bad_resume_token", true)
	if _, resp, err := tc.dial(t, 0, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin accepted: %v", err)
	}

	// Resume: the guest's connection dies; the host sends meanwhile; the
	// guest resumes and gets exactly what it missed, then a gap notice.
	_ = guest.ws.CloseNow()
	for i := 7; i <= 9; i++ {
		host.sendDurable(uint64(i), fmt.Sprintf("h%d", i))
		host.expectControl(sessionwire.TypeSent)
	}
	guest2 := tc.mustDial(t, 0)
	guest2.sendControl(sessionwire.Control{Type: sessionwire.TypeResume, V: 1, Session: hw.Session, Participant: "p2", ResumeToken: gw.ResumeToken, LastSeq: last})
	rw := guest2.expectControl(sessionwire.TypeWelcome)
	if rw.LastCSeq != 1 || rw.Participant != "p2" {
		t.Fatalf("resume welcome %+v", rw)
	}
	// h6 was delivered before the close but not acknowledged by seq "last":
	// it comes again (the client drops it by seq), then h7..h9.
	want := []string{"h6", "h7", "h8", "h9"}
	prev := last
	for _, w := range want {
		f := guest2.expectFrame(prev, "p1", w)
		prev = f.Seq
	}
	if prev != rw.Seq {
		t.Fatalf("caught up to %d, welcome said head %d", prev, rw.Seq)
	}

	// Flood: over the rate limit frames are refused with rate_limited.
	limited := false
	payload, _ := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindStream, Payload: []byte("f")})
	for i := 0; i < 1000 && !limited; i++ {
		host.sendBinary(payload)
		if i%50 == 49 {
			// Drain what arrived so far without blocking.
			for {
				m := host.read(50 * time.Millisecond)
				if m.err != nil {
					if m.err != errTimeout {
						t.Fatalf("flood: %v", m.err)
					}
					break
				}
				if m.ctl != nil && m.ctl.Type == sessionwire.TypeError && m.ctl.Code == "rate_limited" {
					limited = true
					break
				}
			}
		}
	}
	if !limited {
		t.Fatal("1000 stream frames without rate_limited (limit 200/s, burst 400)")
	}

	// The host ends the session: everybody gets "ended", then a normal close.
	host.sendControl(sessionwire.Control{Type: sessionwire.TypeEnd, Reason: "done"})
	for _, c := range []*wsClient{host, guest2} {
		for {
			m := c.next(10 * time.Second)
			if m.err != nil {
				t.Fatalf("closed before the ended notice: %v", m.err)
			}
			if m.ctl != nil && m.ctl.Type == sessionwire.TypeEvent && m.ctl.Event == "ended" {
				if m.ctl.Reason != "done" {
					t.Fatalf("ended %+v", m.ctl)
				}
				break
			}
		}
		c.expectClosed(websocket.StatusNormalClosure)
	}
	bad = tc.mustDial(t, 0)
	bad.sendControl(sessionwire.Control{Type: sessionwire.TypeJoin, V: 1, Session: hw.Session, Secret: hw.JoinSecret, Name: "Late"})
	bad.expectError("session_ended", true)
}

// A node cut off from the cluster (here: it lost its quorum) sends its
// clients to other nodes: after session.isolation_grace their connections
// close with 1013 and new ones are refused with 503 node_isolated, instead
// of waiting on a node that cannot serve them.
func TestProcessIsolatedNodeSendsClientsAway(t *testing.T) {
	tc := startCluster(t, 3, "--session-isolation-grace", "1s")
	host := tc.mustDial(t, 0)
	open(t, host, nil)
	for i := 1; i < 3; i++ {
		if err := tc.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	host.expectClosed(websocket.StatusTryAgainLater)
	_, resp, err := tc.dial(t, 0, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a new connection to the isolated node: %v %v", resp, err)
	}
}
