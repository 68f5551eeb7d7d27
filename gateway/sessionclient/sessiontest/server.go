// Package sessiontest is an in-memory reference server of the session
// protocol (docs/protocol.md) for tests of clients: several "nodes" (TLS
// listeners built on httptest) share one in-process state, so a client can
// lose its node and resume on another. It implements sessions, durable
// seqs, resume with replay and gap, `sent` confirmations, events, every
// error code, rate and size limits, and heartbeats, plus fault knobs: kill
// connections abruptly, stop and restart nodes, drop `sent` messages,
// freeze a connection, reject handshakes with a chosen code.
//
// It is not the real edge (gateway/sessionedge): nothing is replicated and
// one mutex serializes everything.
package sessiontest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/switchboard-io/switchboard/gateway/sessionwire"
)

// Options configure a Server.
type Options struct {
	Nodes      int      // listeners sharing the state (default 1)
	HostTokens []string // accepted host tokens (default "host-token")
	HeartbeatS int      // announced heartbeat_s (default 15)
	Plaintext  bool     // ws:// instead of wss://
	Logger     *slog.Logger
}

// DefaultHostToken is the host token accepted when Options.HostTokens is empty.
const DefaultHostToken = "host-token"

// Server is the reference server.
type Server struct {
	opts    Options
	log     *slog.Logger
	cert    tls.Certificate
	certPEM []byte
	pool    *x509.CertPool

	mu       sync.Mutex
	nodes    []*node
	sessions map[string]*session
	dropSent int
	refuse   []string
	reject   []string
	closed   bool
	written  int // durable frames written, all sessions
	dupes    int // duplicate durable frames confirmed
}

type node struct {
	idx   int
	addr  string
	srv   *httptest.Server
	conns map[*sconn]struct{}
	up    bool
}

type session struct {
	code, secret string
	limits       sessionwire.Limits
	log          []entry // seq = index + 1
	parts        []*participant
	ended        bool
}

type entry struct {
	from    string // sender of a frame, or subject of an event ("" for ended)
	frame   bool
	payload []byte
	event   string
	name    string
	role    string
	reason  string
}

type participant struct {
	id, role, name, token string
	joinSeq               uint64
	lastMeant             uint64 // newest seq meant for it
	delivered             uint64 // newest seq pushed to any of its connections
	lastCSeq              uint64
	lastCSeqSeq           uint64 // seq of lastCSeq
	acked                 uint64
	left                  bool
	conn                  *sconn
	lose                  int // durable messages to lose on the way to it
}

// New starts a server with opts.Nodes listeners on 127.0.0.1.
func New(opts Options) (*Server, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if len(opts.HostTokens) == 0 {
		opts.HostTokens = []string{DefaultHostToken}
	}
	if opts.HeartbeatS <= 0 {
		opts.HeartbeatS = 15
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "sessiontest"), sessions: map[string]*session{}}
	if err := s.makeCert(); err != nil {
		return nil, err
	}
	for i := 0; i < opts.Nodes; i++ {
		n := &node{idx: i, conns: map[*sconn]struct{}{}}
		s.nodes = append(s.nodes, n)
		if err := s.startNode(n, "127.0.0.1:0"); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("sessiontest: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "sessiontest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("sessiontest: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("sessiontest: certificate: %w", err)
	}
	s.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	s.pool = x509.NewCertPool()
	s.pool.AddCert(leaf)
	return nil
}

// startNode listens on addr and serves n there.
func (s *Server) startNode(n *node, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sessiontest: node %d: listen %s: %w", n.idx, addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveHTTP(n, w, r) }))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut by kills are expected
	if s.opts.Plaintext {
		srv.Start()
	} else {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
	}
	s.mu.Lock()
	n.srv, n.addr, n.up = srv, ln.Addr().String(), true
	s.mu.Unlock()
	return nil
}

// URLs returns the session endpoint of every node.
func (s *Server) URLs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "wss"
	if s.opts.Plaintext {
		scheme = "ws"
	}
	var out []string
	for _, n := range s.nodes {
		out = append(out, scheme+"://"+n.addr+"/v1/session")
	}
	return out
}

// CertPEM returns the PEM certificate the nodes serve (self-signed, a CA,
// valid for localhost and 127.0.0.1): trust it as the cluster CA.
func (s *Server) CertPEM() []byte { return s.certPEM }

// ClientTLS returns a client TLS configuration that trusts the nodes.
func (s *Server) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
}

// Close stops every node.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	nodes := append([]*node(nil), s.nodes...)
	s.mu.Unlock()
	for _, n := range nodes {
		s.StopNode(n.idx)
	}
}

// KillAll closes every connection abruptly (no close frame: the client sees
// 1006), as when a node dies.
func (s *Server) KillAll() int {
	n := 0
	for i := range s.nodes {
		n += s.KillNode(i)
	}
	return n
}

// KillNode closes every connection of node i abruptly and returns how many.
func (s *Server) KillNode(i int) int {
	s.mu.Lock()
	var cs []*sconn
	for c := range s.nodes[i].conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.kill()
	}
	return len(cs)
}

// KillParticipant closes the connection of participant pid of session code
// abruptly; it reports whether there was one.
func (s *Server) KillParticipant(code, pid string) bool {
	s.mu.Lock()
	c := s.connOf(code, pid)
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.kill()
	return true
}

// Freeze makes the current connection of participant pid silent: it sends
// nothing more (no pongs, no pings, no frames) and ignores what it reads,
// like a half-dead network path. It reports whether there was one.
func (s *Server) Freeze(code, pid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connOf(code, pid)
	if c == nil {
		return false
	}
	c.frozen.Store(true)
	return true
}

// NodeOf returns the node index participant pid is connected to, or -1.
func (s *Server) NodeOf(code, pid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.connOf(code, pid); c != nil {
		return c.node.idx
	}
	return -1
}

func (s *Server) connOf(code, pid string) *sconn {
	if ss := s.sessions[code]; ss != nil {
		if p := ss.part(pid); p != nil {
			return p.conn
		}
	}
	return nil
}

// StopNode stops node i: its listener closes (dials are refused) and its
// connections die abruptly.
func (s *Server) StopNode(i int) {
	s.mu.Lock()
	n := s.nodes[i]
	up := n.up
	n.up = false
	srv := n.srv
	s.mu.Unlock()
	if !up {
		return
	}
	srv.Listener.Close()
	s.KillNode(i)
	srv.Close()
}

// StartNode restarts a stopped node i on its old address.
func (s *Server) StartNode(i int) error {
	s.mu.Lock()
	n := s.nodes[i]
	up, addr := n.up, n.addr
	s.mu.Unlock()
	if up {
		return nil
	}
	var err error
	for try := 0; try < 50; try++ { // the port may linger briefly
		if err = s.startNode(n, addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// DropSent makes the server silently drop the next k `sent` confirmations
// (the frames are still written); DropSent(0) stops dropping.
func (s *Server) DropSent(k int) {
	s.mu.Lock()
	s.dropSent = k
	s.mu.Unlock()
}

// RefuseFrames makes the server refuse the next k durable frames (from
// anyone) with the non-fatal error code, e.g. rate_limited or unavailable,
// without writing them.
func (s *Server) RefuseFrames(code string, k int) {
	s.mu.Lock()
	for range k {
		s.refuse = append(s.refuse, code)
	}
	s.mu.Unlock()
}

// LoseNext makes the server lose the next k durable messages on their way
// to participant pid's connection, as a buggy relay would: the client can
// tell from the next message's prev_seq.
func (s *Server) LoseNext(code, pid string, k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[code]; ss != nil {
		if p := ss.part(pid); p != nil {
			p.lose = k
		}
	}
}

// RejectNext makes the next handshake (open, join or resume, on any node)
// fail with the fatal error code.
func (s *Server) RejectNext(code string) {
	s.mu.Lock()
	s.reject = append(s.reject, code)
	s.mu.Unlock()
}

// EndSession ends session code as an administrator would.
func (s *Server) EndSession(code, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[code]
	if ss == nil {
		return errors.New("sessiontest: no such session")
	}
	if !ss.ended {
		s.endLocked(ss, reason)
	}
	return nil
}

// Stats are counters for tests.
type Stats struct {
	Written    int // durable frames written
	Duplicates int // durable frames confirmed as duplicates
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Written: s.written, Duplicates: s.dupes}
}

// Acked returns the highest seq participant pid of session code
// acknowledged.
func (s *Server) Acked(code, pid string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[code]; ss != nil {
		if p := ss.part(pid); p != nil {
			return p.acked
		}
	}
	return 0
}

// Participants returns the ids of session code's participants that have
// not left.
func (s *Server) Participants(code string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if ss := s.sessions[code]; ss != nil {
		for _, p := range ss.parts {
			if !p.left {
				out = append(out, p.id)
			}
		}
	}
	return out
}

func (ss *session) part(id string) *participant {
	for _, p := range ss.parts {
		if p.id == id {
			return p
		}
	}
	return nil
}

// meant reports whether entry e at seq is delivered to p.
func (e *entry) meant(seq uint64, p *participant) bool {
	return seq > p.joinSeq && e.from != p.id
}

// appendLocked writes e and pushes it to every participant it is meant for.
func (s *Server) appendLocked(ss *session, e entry) uint64 {
	ss.log = append(ss.log, e)
	seq := uint64(len(ss.log))
	for _, p := range ss.parts {
		if p.left || !e.meant(seq, p) {
			continue
		}
		prev := p.lastMeant
		p.lastMeant = seq
		if p.conn != nil {
			if p.lose > 0 {
				p.lose--
			} else {
				p.conn.push(encodeEntry(&ss.log[seq-1], seq, prev))
			}
			p.delivered = seq
		}
	}
	return seq
}

func encodeEntry(e *entry, seq, prev uint64) outMsg {
	if e.frame {
		b, _ := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindDeliverDurable, Seq: seq, PrevSeq: prev, From: e.from, Payload: e.payload})
		return outMsg{typ: websocket.MessageBinary, b: b}
	}
	return ctl(sessionwire.Control{Type: sessionwire.TypeEvent, Seq: seq, PrevSeq: prev, Event: e.event,
		Participant: e.from, Name: e.name, Role: e.role, Reason: e.reason})
}

func (s *Server) endLocked(ss *session, reason string) {
	ss.ended = true
	s.appendLocked(ss, entry{event: "ended", reason: reason})
	for _, p := range ss.parts {
		if p.conn != nil {
			p.conn.push(outMsg{closeCode: websocket.StatusNormalClosure, closeReason: "session ended"})
			p.conn.p = nil
			p.conn = nil
		}
	}
}

// --- connections ---

type outMsg struct {
	typ         websocket.MessageType
	b           []byte
	closeCode   websocket.StatusCode // non-zero: close after the earlier messages
	closeReason string
}

func ctl(c sessionwire.Control) outMsg {
	return outMsg{typ: websocket.MessageText, b: sessionwire.EncodeControl(c)}
}

func fatal(code, msg string) []outMsg {
	return []outMsg{
		ctl(sessionwire.Control{Type: sessionwire.TypeError, Code: code, Message: msg, Fatal: true}),
		{closeCode: websocket.StatusCode(sessionwire.CloseCode(code)), closeReason: code},
	}
}

type sconn struct {
	srv  *Server
	node *node
	ws   *websocket.Conn
	ctx  context.Context
	stop context.CancelFunc

	// guarded by Server.mu
	out    []outMsg
	sig    chan struct{}
	p      *participant
	ss     *session
	bucket bucket
	ctlBkt bucket

	frozen   atomic.Bool
	lastRecv atomic.Int64
	lastSent atomic.Int64
}

func (c *sconn) kill() {
	c.stop()
	_ = c.ws.CloseNow()
}

// push queues messages for the writer (Server.mu held).
func (c *sconn) push(ms ...outMsg) {
	c.out = append(c.out, ms...)
	select {
	case c.sig <- struct{}{}:
	default:
	}
}

func (s *Server) serveHTTP(n *node, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/session" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Origin") != "" {
		http.Error(w, "origin_not_allowed", http.StatusForbidden)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(4096)
	c := &sconn{srv: s, node: n, ws: ws, sig: make(chan struct{}, 1)}
	c.ctx, c.stop = context.WithCancel(context.Background())
	now := time.Now().UnixNano()
	c.lastRecv.Store(now)
	c.lastSent.Store(now)
	s.mu.Lock()
	if !n.up || s.closed {
		s.mu.Unlock()
		_ = ws.CloseNow()
		return
	}
	n.conns[c] = struct{}{}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { c.writeLoop(); close(done) }()
	c.readLoop()
	c.stop()
	_ = ws.CloseNow()
	<-done
	s.mu.Lock()
	delete(n.conns, c)
	if c.p != nil && c.p.conn == c {
		c.p.conn = nil
	}
	s.mu.Unlock()
}

func (c *sconn) writeLoop() {
	hb := time.Duration(c.srv.opts.HeartbeatS) * time.Second
	tick := time.NewTicker(min(hb/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		c.srv.mu.Lock()
		out := c.out
		c.out = nil
		c.srv.mu.Unlock()
		for _, m := range out {
			if c.frozen.Load() {
				continue
			}
			if m.closeCode != 0 {
				_ = c.ws.Close(m.closeCode, m.closeReason)
				c.stop()
				return
			}
			ctx, cancel := context.WithTimeout(c.ctx, 3*hb)
			err := c.ws.Write(ctx, m.typ, m.b)
			cancel()
			if err != nil {
				c.stop()
				return
			}
			c.lastSent.Store(time.Now().UnixNano())
		}
		if len(out) > 0 {
			continue
		}
		if !c.frozen.Load() {
			if time.Since(time.Unix(0, c.lastRecv.Load())) > 3*hb {
				c.stop()
				_ = c.ws.CloseNow()
				return
			}
			if time.Since(time.Unix(0, c.lastSent.Load())) >= hb {
				c.srv.mu.Lock()
				c.push(ctl(sessionwire.Control{Type: sessionwire.TypePing, T: time.Now().UnixMilli()}))
				c.srv.mu.Unlock()
				continue
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.sig:
		case <-tick.C:
		}
	}
}

func (c *sconn) readLoop() {
	hctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	typ, b, err := c.ws.Read(hctx)
	cancel()
	if err != nil {
		return
	}
	c.lastRecv.Store(time.Now().UnixNano())
	if !c.handshake(typ, b) {
		// A fatal answer is queued; the writer closes the connection.
		<-c.ctx.Done()
		return
	}
	for {
		typ, b, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if c.frozen.Load() {
			continue
		}
		if typ == websocket.MessageBinary {
			c.frame(b)
		} else {
			c.control(b)
		}
	}
}

func validName(n string) bool {
	if len(n) < 1 || len(n) > 64 || !utf8.ValidString(n) {
		return false
	}
	return !strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomCode() string {
	v, _ := rand.Int(rand.Reader, big.NewInt(900_000_000))
	return fmt.Sprintf("%09d", v.Int64()+100_000_000)
}

// handshake answers the first message; false means a fatal error was queued.
func (c *sconn) handshake(typ websocket.MessageType, b []byte) bool {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(code, msg string) bool { c.push(fatal(code, msg)...); return false }
	if typ != websocket.MessageText {
		return fail("bad_request", "the first message must be open, join or resume")
	}
	h, err := sessionwire.DecodeControl(b)
	if err != nil {
		return fail("bad_request", err.Error())
	}
	if h.Type != sessionwire.TypeOpen && h.Type != sessionwire.TypeJoin && h.Type != sessionwire.TypeResume {
		return fail("bad_request", "the first message must be open, join or resume, not "+h.Type)
	}
	if len(s.reject) > 0 {
		code := s.reject[0]
		s.reject = s.reject[1:]
		return fail(code, "rejected by the test")
	}
	if h.V != sessionwire.Version {
		return fail("unsupported_version", fmt.Sprintf("v %d; this server speaks 1", h.V))
	}
	var ss *session
	var p *participant
	var replayFrom uint64
	resume := false
	switch h.Type {
	case sessionwire.TypeOpen:
		ok := false
		for _, t := range s.opts.HostTokens {
			ok = ok || (h.Token != "" && h.Token == t)
		}
		if !ok {
			return fail("unauthorized", "no valid host token")
		}
		if !validName(h.Name) {
			return fail("bad_request", "name: 1-64 bytes of UTF-8 without control characters")
		}
		lim := sessionwire.Limits{MaxParticipants: 10, MaxFrameBytes: 65536, FramesPerSecond: 200, IdleTimeoutS: 1800}
		if h.Limits != nil {
			l := *h.Limits
			if l.MaxParticipants != 0 {
				if l.MaxParticipants < 2 || l.MaxParticipants > 100 {
					return fail("bad_request", "limits.max_participants: 2-100")
				}
				lim.MaxParticipants = l.MaxParticipants
			}
			if l.MaxFrameBytes != 0 {
				if l.MaxFrameBytes > 524288 {
					return fail("bad_request", "limits.max_frame_bytes: 1-524288")
				}
				lim.MaxFrameBytes = l.MaxFrameBytes
			}
			if l.FramesPerSecond != 0 {
				if l.FramesPerSecond > 10000 {
					return fail("bad_request", "limits.frames_per_second: 1-10000")
				}
				lim.FramesPerSecond = l.FramesPerSecond
			}
			lim.Burst = l.Burst
			if l.IdleTimeoutS != 0 {
				lim.IdleTimeoutS = l.IdleTimeoutS
			}
			lim.ExpiresAtUnixMs = l.ExpiresAtUnixMs
		}
		if lim.Burst == 0 {
			lim.Burst = 2 * lim.FramesPerSecond
		}
		code := randomCode()
		for s.sessions[code] != nil {
			code = randomCode()
		}
		ss = &session{code: code, secret: randomHex(12), limits: lim}
		s.sessions[code] = ss
		p = &participant{id: "p1", role: "host", name: h.Name, token: randomHex(16)}
		ss.parts = append(ss.parts, p)
		p.joinSeq = s.appendLocked(ss, entry{from: p.id, event: "joined", name: p.name, role: p.role})
	case sessionwire.TypeJoin:
		ss = s.sessions[h.Session]
		switch {
		case ss == nil:
			return fail("unknown_session", "no session "+h.Session)
		case ss.ended:
			return fail("session_ended", "the session has ended")
		case h.Secret != ss.secret:
			return fail("bad_secret", "wrong join secret")
		case !validName(h.Name):
			return fail("bad_request", "name: 1-64 bytes of UTF-8 without control characters")
		}
		in := 0
		for _, q := range ss.parts {
			if !q.left {
				in++
			}
		}
		if in >= int(ss.limits.MaxParticipants) {
			return fail("session_full", fmt.Sprintf("%d participants", in))
		}
		p = &participant{id: fmt.Sprintf("p%d", len(ss.parts)+1), role: "guest", name: h.Name, token: randomHex(16)}
		ss.parts = append(ss.parts, p)
		p.joinSeq = s.appendLocked(ss, entry{from: p.id, event: "joined", name: p.name, role: p.role})
	case sessionwire.TypeResume:
		resume = true
		ss = s.sessions[h.Session]
		if ss == nil {
			return fail("unknown_session", "no session "+h.Session)
		}
		p = ss.part(h.Participant)
		if p == nil || p.left {
			return fail("unknown_participant", "no participant "+h.Participant)
		}
		if h.ResumeToken != p.token {
			return fail("bad_resume_token", "wrong resume token")
		}
		if h.LastSeq > p.delivered && h.LastSeq > p.joinSeq {
			return fail("resume_from_future", fmt.Sprintf("last_seq %d, newest delivered %d", h.LastSeq, p.delivered))
		}
		// A session that ended while the client was away can still be
		// resumed to read up to the end (docs/protocol.md); only a client
		// that has processed the end is refused.
		if ss.ended && h.LastSeq >= uint64(len(ss.log)) {
			return fail("session_ended", "the session has ended")
		}
		replayFrom = max(h.LastSeq, p.joinSeq)
		if old := p.conn; old != nil {
			old.p = nil
			go old.kill()
		}
	}
	c.p, c.ss = p, ss
	p.conn = c
	c.ws.SetReadLimit(int64(ss.limits.MaxFrameBytes) + 64)
	c.bucket = newBucket(float64(ss.limits.FramesPerSecond), float64(ss.limits.Burst))
	c.ctlBkt = newBucket(50, 100)
	w := sessionwire.Control{Type: sessionwire.TypeWelcome, Session: ss.code, Participant: p.id, Role: p.role,
		ResumeToken: p.token, Seq: p.joinSeq, LastCSeq: p.lastCSeq, HeartbeatS: s.opts.HeartbeatS,
		Node: fmt.Sprintf("n%d", c.node.idx+1)}
	lim := ss.limits
	w.Limits = &lim
	if p.role == "host" && !resume {
		w.JoinSecret = ss.secret
	}
	if resume {
		w.Seq = p.lastMeant
	}
	for _, q := range ss.parts {
		w.Participants = append(w.Participants, sessionwire.Participant{ID: q.id, Role: q.role, Name: q.name, Attached: q.conn != nil, Left: q.left})
	}
	c.push(ctl(w))
	if !resume {
		p.delivered = max(p.delivered, p.joinSeq)
		return true
	}
	var prev uint64
	for i := range ss.log {
		seq := uint64(i + 1)
		e := &ss.log[i]
		if !e.meant(seq, p) {
			continue
		}
		if seq > replayFrom {
			c.push(encodeEntry(e, seq, prev))
			p.delivered = max(p.delivered, seq)
		}
		prev = seq
	}
	if ss.ended {
		// Everything up to the end is sent: close as the end does.
		c.push(outMsg{closeCode: websocket.StatusNormalClosure, closeReason: "session ended"})
		c.p, p.conn = nil, nil
		return true
	}
	c.push(ctl(sessionwire.Control{Type: sessionwire.TypeGap}))
	return true
}

func (c *sconn) nonFatal(code, msg string, cseq uint64) {
	c.push(ctl(sessionwire.Control{Type: sessionwire.TypeError, Code: code, Message: msg, CSeq: cseq}))
}

func (c *sconn) frame(b []byte) {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ss := c.p, c.ss
	if p == nil || ss == nil || ss.ended {
		return
	}
	f, err := sessionwire.DecodeFrame(b)
	if err == nil && f.Kind != sessionwire.KindDurable && f.Kind != sessionwire.KindStream {
		err = fmt.Errorf("%w: 0x%02x is a server frame", sessionwire.ErrUnknownKind, f.Kind)
	}
	if err != nil {
		code := "bad_frame"
		if errors.Is(err, sessionwire.ErrUnknownKind) {
			code = "unknown_frame_kind"
		}
		c.nonFatal(code, err.Error(), 0)
		return
	}
	if !c.bucket.take(time.Now()) {
		c.nonFatal("rate_limited", "over frames_per_second", f.CSeq)
		return
	}
	if len(f.Payload) > int(ss.limits.MaxFrameBytes) {
		c.nonFatal("frame_too_large", fmt.Sprintf("%d bytes over %d", len(f.Payload), ss.limits.MaxFrameBytes), f.CSeq)
		return
	}
	if f.Kind == sessionwire.KindStream {
		out, _ := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindDeliverStream, From: p.id, Payload: f.Payload})
		for _, q := range ss.parts {
			if q != p && q.conn != nil {
				q.conn.push(outMsg{typ: websocket.MessageBinary, b: out})
			}
		}
		return
	}
	if len(s.refuse) > 0 {
		code := s.refuse[0]
		s.refuse = s.refuse[1:]
		c.nonFatal(code, "refused by the test", f.CSeq)
		return
	}
	sent := sessionwire.Control{Type: sessionwire.TypeSent, CSeq: f.CSeq}
	switch {
	case f.CSeq == 0 || f.CSeq > p.lastCSeq+1:
		c.nonFatal("bad_sequence", fmt.Sprintf("cseq %d, expected %d", f.CSeq, p.lastCSeq+1), f.CSeq)
		return
	case f.CSeq <= p.lastCSeq:
		sent.Duplicate = true
		if f.CSeq == p.lastCSeq {
			sent.Seq = p.lastCSeqSeq
		}
		s.dupes++
	default:
		seq := s.appendLocked(ss, entry{from: p.id, frame: true, payload: append([]byte(nil), f.Payload...)})
		p.lastCSeq, p.lastCSeqSeq = f.CSeq, seq
		sent.Seq = seq
		s.written++
	}
	if s.dropSent > 0 {
		s.dropSent--
		return
	}
	c.push(ctl(sent))
}

func (c *sconn) control(b []byte) {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ss := c.p, c.ss
	if p == nil || ss == nil {
		return
	}
	if !c.ctlBkt.take(time.Now()) {
		c.nonFatal("rate_limited", "over 50 control messages per second", 0)
		return
	}
	m, err := sessionwire.DecodeControl(b)
	if err != nil {
		c.nonFatal("bad_request", err.Error(), 0)
		return
	}
	switch m.Type {
	case sessionwire.TypeAck:
		if m.Seq > p.delivered {
			c.nonFatal("resume_from_future", fmt.Sprintf("ack %d, newest delivered %d", m.Seq, p.delivered), 0)
			return
		}
		p.acked = max(p.acked, m.Seq)
	case sessionwire.TypePing:
		c.push(ctl(sessionwire.Control{Type: sessionwire.TypePong, T: m.T}))
	case sessionwire.TypePong:
	case sessionwire.TypeLeave:
		p.left = true
		p.conn = nil
		c.p = nil
		s.appendLocked(ss, entry{from: p.id, event: "left", name: p.name, role: p.role})
		c.push(outMsg{closeCode: websocket.StatusNormalClosure, closeReason: "left"})
	case sessionwire.TypeEnd:
		if p.role != "host" {
			c.nonFatal("not_host", "only the host may end the session", 0)
			return
		}
		if len(m.Reason) > 256 {
			c.nonFatal("bad_request", "reason: at most 256 bytes", 0)
			return
		}
		reason := m.Reason
		if reason == "" {
			reason = "host"
		}
		s.endLocked(ss, reason)
	default:
		c.nonFatal("bad_request", "unexpected "+m.Type+" after the handshake", 0)
	}
}

// bucket is a token bucket.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64) bucket {
	return bucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
