package sessionedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/gateway/sessionwire"
)

// handshakeReadLimit bounds WebSocket messages before the welcome.
const handshakeReadLimit = 4096

// frameOverhead is what a client→server binary message may add to a payload.
const frameOverhead = 64

// outMsg is one message for the writer.
type outMsg struct {
	binary bool
	data   []byte
	// closeCode, when non-zero, closes the connection after data (if any).
	closeCode websocket.StatusCode
	reason    string
}

// protoError is a protocol error for the client.
type protoError struct {
	code, msg string
	fatal     bool
	cseq      uint64
}

func (p *protoError) Error() string { return p.code + ": " + p.msg }

func perr(code string, fatal bool, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...), fatal: fatal}
}

// conn is one client connection.
type conn struct {
	e    *Edge
	ws   *websocket.Conn
	id   string
	addr string
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	// Set once by the handshake, read-only afterwards.
	mu          sync.Mutex
	code        string
	participant string
	role        string
	resumeToken string
	limits      *sessionpb.Limits
	pid         *actor.PID
	// startSeq is where delivery starts: the participant's head after
	// open/join, the client's last_seq after resume.
	startSeq uint64

	attachedOnce atomic.Bool
	// lastPush is when the grain last pushed anything to this connection
	// (unix nanos); resync and resyncEvery drive the idle re-attachment
	// (Edge.resyncIdle).
	lastPush    atomic.Int64
	resyncing   atomic.Bool
	resyncEvery atomic.Int64 // nanos
	out         chan outMsg
	inbox       chan proto.Message
	kick        chan struct{}
	overflow    atomic.Bool
	sendQ       chan sessionwire.Frame
	lastRecv    atomic.Int64
	// lastSeq is the seq of the last durable message sent to the client.
	lastSeq atomic.Uint64
	acked   atomic.Uint64
	left    atomic.Bool
	done    chan struct{}

	// sentLatest is the newest durable-frame confirmation not yet written;
	// the writer writes only the newest of several (a `sent` for cseq c
	// confirms every cseq up to c), woken by sentKick.
	sentMu     sync.Mutex
	sentLatest *sessionwire.Control
	sentKick   chan struct{}
	// topology is signalled when the cluster's membership changes.
	topology chan struct{}
	// fc, when the edge serves through its Listener, lets the writer send a
	// burst of messages with one write.
	fc *flushConn
}

func newConn(e *Edge, ws *websocket.Conn, addr string, fc *flushConn) *conn {
	c := &conn{
		e: e, ws: ws, id: newConnID(), addr: addr, fc: fc,
		out:      make(chan outMsg, e.cfg.SendQueue),
		inbox:    make(chan proto.Message, e.cfg.SendQueue),
		kick:     make(chan struct{}, 1),
		sentKick: make(chan struct{}, 1),
		topology: make(chan struct{}, 1),
		sendQ:    make(chan sessionwire.Frame, 256),
		done:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(e.ctx)
	// The reader's Read runs without a context (coder/websocket registers a
	// read context's cancellation anew on every Read): the end of c.ctx
	// closes the connection once, here, which ends a Read in progress as a
	// cancelled read context would.
	context.AfterFunc(c.ctx, func() { _ = ws.CloseNow() })
	c.log = e.log.With("conn", c.id, "remote", addr)
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

func (c *conn) sessionCode() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}

func (c *conn) connRef() *sessionpb.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &sessionpb.Conn{Address: c.pid.GetAddress(), Id: c.pid.GetId(), Node: c.e.cfg.NodeID}
}

func (c *conn) actorPID() *actor.PID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid
}

// spawn (re)creates the connection's actor on cluster cl.
func (c *conn) spawn(cl *pcluster.Cluster) error {
	pid, err := spawnActor(cl.ActorSystem, c)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.pid = pid
	c.mu.Unlock()
	return nil
}

// push queues a message from the session grain; when the queue is full the
// message is dropped and the deliverer catches up from the log.
func (c *conn) push(m proto.Message) {
	c.lastPush.Store(time.Now().UnixNano())
	c.resyncEvery.Store(int64(resyncMin))
	select {
	case c.inbox <- m:
	default:
		c.overflow.Store(true)
		c.e.m.pushDrops.Inc()
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// run serves the connection until it ends.
func (c *conn) run() {
	defer c.cleanup()
	c.ws.SetReadLimit(handshakeReadLimit)
	start := time.Now()
	w, kind, err := c.handshake()
	if err != nil {
		var pe *protoError
		if !errors.As(err, &pe) {
			pe = perr("internal", true, "%v", err)
		}
		c.e.m.handshakes.WithLabelValues(kind, pe.code).Inc()
		c.log.Debug("handshake refused", "kind", kind, "code", pe.code, "err", pe.msg)
		c.writeNow(sessionwire.Control{Type: sessionwire.TypeError, Code: pe.code, Message: pe.msg, Fatal: true})
		_ = c.ws.Close(websocket.StatusCode(sessionwire.CloseCode(pe.code)), pe.code)
		return
	}
	c.e.m.handshakes.WithLabelValues(kind, "ok").Inc()
	c.e.m.handshakeSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	c.ws.SetReadLimit(int64(c.limits.GetMaxFrameBytes()) + frameOverhead)
	c.e.m.connections.Inc()
	defer c.e.m.connections.Dec()
	if err := c.writeNow(w); err != nil {
		return
	}
	c.lastPush.Store(time.Now().UnixNano())
	c.resyncEvery.Store(int64(resyncMin))
	c.attachedOnce.Store(true)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.writer() }()
	c.lastSeq.Store(c.startSeq)
	go func() { defer wg.Done(); c.deliverer(c.startSeq) }()
	go func() { defer wg.Done(); c.sender() }()
	c.reader()
	c.cancel()
	wg.Wait()
}

// writeNow writes one control message synchronously (before the writer runs).
func (c *conn) writeNow(m sessionwire.Control) error {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, sessionwire.EncodeControl(m))
}

// cleanup detaches the participant (it may resume) and releases everything.
func (c *conn) cleanup() {
	c.cancel()
	c.e.unregister(c)
	c.mu.Lock()
	pid, code, p := c.pid, c.code, c.participant
	c.mu.Unlock()
	if code != "" && p != "" && !c.left.Load() && c.attachedOnce.Load() {
		cl := c.e.node.Cluster()
		ref := &sessionpb.Conn{Address: pid.GetAddress(), Id: pid.GetId(), Node: c.e.cfg.NodeID}
		if a := c.acked.Load(); a > 0 {
			c.e.tell(cl, code, &sessionpb.Ack{Participant: p, Seq: a}, nil)
		}
		c.e.tell(cl, code, &sessionpb.Detach{Participant: p, Conn: ref}, nil)
	}
	if pid != nil {
		if cl := c.e.node.Cluster(); cl != nil {
			cl.ActorSystem.Root.Stop(pid)
		}
	}
	_ = c.ws.CloseNow()
	close(c.done)
}

// closeWith asks the writer to close the connection.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	select {
	case c.out <- outMsg{closeCode: code, reason: reason}:
	default:
		_ = c.ws.Close(code, reason)
	}
	// A connection still in its handshake has no writer yet.
	go func() {
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
			_ = c.ws.CloseNow()
		}
	}()
}

// ---- handshake ----

func (c *conn) handshake() (sessionwire.Control, string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.HandshakeTimeout)
	defer cancel()
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			_ = c.ws.Close(websocket.StatusPolicyViolation, "handshake timeout")
		}
		return sessionwire.Control{}, "none", fmt.Errorf("read first message: %w", err)
	}
	if typ != websocket.MessageText {
		return sessionwire.Control{}, "none", perr("bad_request", true, "the first message must be a text message open, join or resume")
	}
	m, err := sessionwire.DecodeControl(data)
	if err != nil {
		return sessionwire.Control{}, "none", perr("bad_request", true, "%v", err)
	}
	switch m.Type {
	case sessionwire.TypeOpen, sessionwire.TypeJoin, sessionwire.TypeResume:
	default:
		return sessionwire.Control{}, "none", perr("bad_request", true, "the first message must be open, join or resume, not %q", m.Type)
	}
	if m.V != sessionwire.Version {
		return sessionwire.Control{}, m.Type, perr("unsupported_version", true, "protocol version %d is not supported (this node speaks 1)", m.V)
	}
	if err := c.e.register(c); err != nil {
		return sessionwire.Control{}, m.Type, perr("unavailable", true, "%v", err)
	}
	var w sessionwire.Control
	switch m.Type {
	case sessionwire.TypeOpen:
		w, err = c.open(ctx, m)
	case sessionwire.TypeJoin:
		w, err = c.join(ctx, m)
	default:
		w, err = c.resume(ctx, m)
	}
	return w, m.Type, err
}

func checkName(field, s string) error {
	if s == "" || len(s) > 64 || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return perr("bad_request", true, "%s must be 1..64 bytes of UTF-8 without control characters", field)
	}
	return nil
}

func (c *conn) open(ctx context.Context, m sessionwire.Control) (sessionwire.Control, error) {
	user, ok := c.e.cfg.HostTokens.Check(m.Token)
	tenant := ""
	if !ok && m.Token != "" && c.e.cfg.Accounts != nil {
		user, tenant, ok = c.e.cfg.Accounts.AuthenticateHost(ctx, m.Token)
	}
	if m.Token == "" || !ok {
		return sessionwire.Control{}, perr("unauthorized", true, "open needs a valid host token or supporter credentials")
	}
	if err := checkName("name", m.Name); err != nil {
		return sessionwire.Control{}, err
	}
	var lim *sessionpb.Limits
	if l := m.Limits; l != nil {
		lim = &sessionpb.Limits{MaxParticipants: l.MaxParticipants, MaxFrameBytes: l.MaxFrameBytes, FramesPerSecond: l.FramesPerSecond,
			Burst: l.Burst, IdleTimeoutS: l.IdleTimeoutS, ExpiresAtUnixMs: l.ExpiresAtUnixMs}
	}
	for attempt := 0; attempt < 8; attempt++ {
		code, secret, token := session.NewCode(), session.NewSecret(), session.NewSecret()
		c.setIdentity(code, "p1", token)
		cmd := &sessionpb.Open{HostUser: user, Tenant: tenant, HostName: m.Name, HostAddr: c.addr,
			JoinSecretHash: session.HashSecret([]byte(secret)), ResumeTokenHash: session.HashSecret([]byte(token)),
			Limits: lim, Conn: c.connRef()}
		res, err := c.e.call(ctx, code, cmd, false)
		var ee *entity.Error
		switch {
		case err == nil:
		case errors.As(err, &ee) && ee.Reason == session.ReasonCodeInUse:
			continue
		case errors.Is(err, entity.ErrUnavailable):
			// The open may have taken effect: the host's resume token tells.
			res, err = c.e.call(ctx, code, &sessionpb.Attach{Participant: "p1", ResumeToken: []byte(token), Conn: c.connRef(), Addr: c.addr}, true)
			if err != nil {
				return sessionwire.Control{}, c.grainError(err, true)
			}
		default:
			return sessionwire.Control{}, c.grainError(err, true)
		}
		w, err := c.welcome(res, token)
		w.JoinSecret = secret
		return w, err
	}
	return sessionwire.Control{}, perr("unavailable", true, "no free session code found; try again")
}

func (c *conn) join(ctx context.Context, m sessionwire.Control) (sessionwire.Control, error) {
	if !session.ValidCode(m.Session) {
		return sessionwire.Control{}, perr("bad_request", true, "session must be a 9-digit code")
	}
	if m.Secret == "" {
		return sessionwire.Control{}, perr("bad_request", true, "secret is missing")
	}
	if err := checkName("name", m.Name); err != nil {
		return sessionwire.Control{}, err
	}
	token := session.NewSecret()
	c.setIdentity(m.Session, "", token)
	res, err := c.e.call(ctx, m.Session, &sessionpb.Join{Name: m.Name, Addr: c.addr, JoinSecret: []byte(m.Secret),
		ResumeTokenHash: session.HashSecret([]byte(token)), Conn: c.connRef()}, false)
	if err != nil {
		return sessionwire.Control{}, c.grainError(err, true)
	}
	return c.welcome(res, token)
}

func (c *conn) resume(ctx context.Context, m sessionwire.Control) (sessionwire.Control, error) {
	if !session.ValidCode(m.Session) {
		return sessionwire.Control{}, perr("bad_request", true, "session must be a 9-digit code")
	}
	if m.Participant == "" || m.ResumeToken == "" {
		return sessionwire.Control{}, perr("bad_request", true, "participant and resume_token are required")
	}
	c.setIdentity(m.Session, m.Participant, m.ResumeToken)
	res, err := c.e.call(ctx, m.Session, &sessionpb.Attach{Participant: m.Participant, ResumeToken: []byte(m.ResumeToken),
		LastSeq: m.LastSeq, Conn: c.connRef(), Addr: c.addr, Resumed: true}, true)
	if err != nil {
		return sessionwire.Control{}, c.grainError(err, true)
	}
	w, err := c.welcome(res, m.ResumeToken)
	if err != nil {
		return w, err
	}
	c.e.m.resumes.Inc()
	// The deliverer starts from the client's last_seq and catches up to the
	// head, then reports the gap in stream frames.
	c.startSeq = m.LastSeq
	c.push(&sessionpb.Sync{Session: m.Session, To: m.Participant, Head: w.Seq, Gap: true})
	return w, nil
}

func (c *conn) setIdentity(code, participant, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.code, c.participant, c.resumeToken = code, participant, token
}

func (c *conn) welcome(res proto.Message, token string) (sessionwire.Control, error) {
	w, ok := res.(*sessionpb.Welcome)
	if !ok {
		return sessionwire.Control{}, perr("internal", true, "session replied %T", res)
	}
	c.mu.Lock()
	c.participant, c.role, c.limits = w.GetParticipant(), w.GetRole(), w.GetLimits()
	c.mu.Unlock()
	if c.limits == nil {
		c.limits = session.DefaultLimits()
	}
	c.startSeq = w.GetHead()
	l := c.limits
	out := sessionwire.Control{Type: sessionwire.TypeWelcome, Session: w.GetSession(), Participant: w.GetParticipant(), Role: w.GetRole(),
		ResumeToken: token, Seq: w.GetHead(), LastCSeq: w.GetLastCseq(), HeartbeatS: int(c.e.cfg.Heartbeat / time.Second),
		Limits: &sessionwire.Limits{MaxParticipants: l.GetMaxParticipants(), MaxFrameBytes: l.GetMaxFrameBytes(),
			FramesPerSecond: l.GetFramesPerSecond(), Burst: l.GetBurst(), IdleTimeoutS: l.GetIdleTimeoutS(), ExpiresAtUnixMs: l.GetExpiresAtUnixMs()},
		Node: c.e.cfg.NodeID}
	for _, p := range w.GetParticipants() {
		out.Participants = append(out.Participants, sessionwire.Participant{ID: p.GetId(), Role: p.GetRole(), Name: p.GetName(), Attached: p.GetAttached(), Left: p.GetLeft()})
	}
	return out, nil
}

// grainError maps a session grain's error to a protocol error.
func (c *conn) grainError(err error, fatal bool) *protoError {
	var ee *entity.Error
	if errors.As(err, &ee) {
		switch {
		case ee.Code == entity.CodeRejected && ee.Reason != "":
			return perr(ee.Reason, fatal && fatalReason(ee.Reason), "%s", ee.Message)
		case ee.Code == entity.CodeTooLarge:
			return perr("frame_too_large", false, "%s", ee.Message)
		case errors.Is(err, entity.ErrUnavailable):
			return perr("unavailable", fatal, "the cluster did not answer in time: %s", ee.Message)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return perr("unavailable", fatal, "the cluster did not answer in time")
	}
	c.log.Warn("unexpected error from session grain", "err", err)
	return perr("internal", true, "%v", err)
}

// fatalReason says whether a rejection ends the connection once the
// handshake is done (docs/protocol.md, Errors).
func fatalReason(r string) bool {
	switch r {
	case session.ReasonNotHost, session.ReasonFrameTooLarge, session.ReasonBadSequence, session.ReasonResumeFromFuture, session.ReasonBadRequest:
		return false
	}
	return true
}

// ---- after the handshake ----

// send queues a message for the writer; durable messages wait for room.
func (c *conn) send(m outMsg) bool {
	select {
	case c.out <- m:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func (c *conn) sendControl(m sessionwire.Control) bool {
	return c.send(outMsg{data: sessionwire.EncodeControl(m)})
}

func (c *conn) sendError(pe *protoError) {
	c.e.m.errors.WithLabelValues(pe.code).Inc()
	c.sendControl(sessionwire.Control{Type: sessionwire.TypeError, Code: pe.code, Message: pe.msg, Fatal: pe.fatal, CSeq: pe.cseq})
	if pe.fatal {
		c.send(outMsg{closeCode: websocket.StatusCode(sessionwire.CloseCode(pe.code)), reason: pe.code})
	}
}

// writer owns writes to the WebSocket, sends heartbeats and enforces the
// receive timeout; it also forwards the client's acks to the grain.
func (c *conn) writer() {
	hb := c.e.cfg.Heartbeat
	tick := time.NewTicker(hb / 3)
	defer tick.Stop()
	lastSent := time.Now()
	var ackSent uint64
	// write sends one WebSocket message; false ends the connection.
	write := func(typ websocket.MessageType, data []byte) bool {
		ctx, cancel := context.WithTimeout(c.ctx, 3*hb)
		err := c.ws.Write(ctx, typ, data)
		cancel()
		if err != nil {
			c.log.Debug("write failed", "err", err)
			c.cancel()
			_ = c.ws.CloseNow()
			return false
		}
		lastSent = time.Now()
		return true
	}
	// writeSent sends the newest pending confirmation (they are cumulative).
	writeSent := func() bool {
		c.sentMu.Lock()
		m := c.sentLatest
		c.sentLatest = nil
		c.sentMu.Unlock()
		return m == nil || write(websocket.MessageText, sessionwire.EncodeControl(*m))
	}
	// writeOut sends one queued message; false ends the connection.
	writeOut := func(m outMsg) bool {
		if m.data != nil {
			typ := websocket.MessageText
			if m.binary {
				typ = websocket.MessageBinary
			}
			if !write(typ, m.data) {
				return false
			}
		}
		if m.closeCode != 0 {
			if c.fc != nil {
				_ = c.fc.Release() // the close handshake needs what precedes it sent
			}
			_ = c.ws.Close(m.closeCode, m.reason)
			c.cancel()
			return false
		}
		return true
	}
	// burst writes what is queued with one flush (see burstconn).
	burst := func(first func() bool) bool {
		if c.fc != nil {
			c.fc.Hold()
		}
		ok := first()
		for n := 0; ok && n < 256; n++ {
			select {
			case m := <-c.out:
				ok = writeOut(m)
				continue
			case <-c.sentKick:
				ok = writeSent()
				continue
			default:
			}
			break
		}
		if c.fc != nil {
			if err := c.fc.Release(); err != nil && ok {
				c.cancel()
				_ = c.ws.CloseNow()
				return false
			}
		}
		return ok
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.sentKick:
			if !burst(writeSent) {
				return
			}
		case m := <-c.out:
			if !burst(func() bool { return writeOut(m) }) {
				return
			}
		case now := <-tick.C:
			if a := c.acked.Load(); a > ackSent {
				ackSent = a
				c.e.tell(c.e.node.Cluster(), c.code, &sessionpb.Ack{Participant: c.participant, Seq: a}, c.actorPID())
			}
			if now.Sub(time.Unix(0, c.lastRecv.Load())) > 3*hb {
				c.log.Debug("heartbeat timeout")
				_ = c.ws.Close(websocket.StatusGoingAway, "heartbeat timeout")
				c.cancel()
				return
			}
			if now.Sub(lastSent) >= hb {
				if !write(websocket.MessageText, sessionwire.EncodeControl(sessionwire.Control{Type: sessionwire.TypePing, T: now.UnixMilli()})) {
					return
				}
			}
		}
	}
}

// reader handles what the client sends.
func (c *conn) reader() {
	l := c.limits
	frames := newBucket(float64(l.GetFramesPerSecond()), float64(max(l.GetBurst(), 1)))
	controls := newBucket(c.e.cfg.ControlRate, c.e.cfg.ControlBurst)
	maxPayload := int(l.GetMaxFrameBytes())
	lastTouch := time.Now()
	for {
		typ, data, err := c.ws.Read(context.Background()) // c.ctx's end closes ws (newConn)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Debug("read ended", "err", err)
			}
			return
		}
		now := time.Now()
		c.lastRecv.Store(now.UnixNano())
		if typ == websocket.MessageBinary {
			var f sessionwire.Frame
			var err error
			if len(data) > 0 && data[0] != sessionwire.KindDurable && data[0] != sessionwire.KindStream {
				err = fmt.Errorf("%w: 0x%02x is not a client→server kind (0x01 durable, 0x02 stream)", sessionwire.ErrUnknownKind, data[0])
			} else {
				f, err = sessionwire.DecodeFrame(data)
			}
			if err != nil {
				code := "bad_frame"
				if errors.Is(err, sessionwire.ErrUnknownKind) {
					code = "unknown_frame_kind"
				}
				c.sendError(perr(code, false, "%v", err))
				continue
			}
			if !frames.take(now) {
				pe := perr("rate_limited", false, "over %d frames per second (burst %d)", l.GetFramesPerSecond(), l.GetBurst())
				pe.cseq = f.CSeq
				c.sendError(pe)
				continue
			}
			if len(f.Payload) > maxPayload {
				pe := perr("frame_too_large", false, "payload of %d bytes is over max_frame_bytes %d", len(f.Payload), maxPayload)
				pe.cseq = f.CSeq
				c.sendError(pe)
				continue
			}
			if f.Kind == sessionwire.KindStream {
				c.e.m.inStream.Inc()
				if now.Sub(lastTouch) >= session.TouchEvery {
					// Stream frames are not written; this keeps a session
					// used only for screen sharing from ending as idle.
					lastTouch = now
					c.e.tell(c.e.node.Cluster(), c.code, &sessionpb.Touch{Participant: c.participant}, c.actorPID())
				}
				c.e.tell(c.e.node.Cluster(), c.code, &sessionpb.StreamFrame{Participant: c.participant, Payload: append([]byte(nil), f.Payload...)}, c.actorPID())
				continue
			}
			if f.CSeq == 0 {
				c.sendError(perr("bad_request", false, "cseq starts at 1"))
				continue
			}
			f.Payload = append([]byte(nil), f.Payload...)
			select {
			case c.sendQ <- f:
			case <-c.ctx.Done():
				return
			}
			continue
		}
		if !controls.take(now) {
			c.sendError(perr("rate_limited", false, "over %.0f control messages per second", c.e.cfg.ControlRate))
			continue
		}
		m, err := sessionwire.DecodeControl(data)
		if err != nil {
			c.sendError(perr("bad_request", false, "%v", err))
			continue
		}
		if !c.control(m) {
			return
		}
	}
}

// control handles one control message; false ends the connection.
func (c *conn) control(m sessionwire.Control) bool {
	switch m.Type {
	case sessionwire.TypeAck:
		if m.Seq > c.lastSeq.Load() {
			c.sendError(perr("resume_from_future", false, "ack %d is past the last seq delivered (%d)", m.Seq, c.lastSeq.Load()))
			return true
		}
		for {
			a := c.acked.Load()
			if m.Seq <= a || c.acked.CompareAndSwap(a, m.Seq) {
				break
			}
		}
	case sessionwire.TypePing:
		c.sendControl(sessionwire.Control{Type: sessionwire.TypePong, T: m.T})
	case sessionwire.TypePong:
	case sessionwire.TypeLeave:
		ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
		_, err := c.e.call(ctx, c.code, &sessionpb.Leave{Participant: c.participant}, true)
		cancel()
		if err != nil {
			pe := c.grainError(err, false)
			if pe.code != "unknown_participant" {
				c.sendError(pe)
				return true
			}
		}
		c.left.Store(true)
		c.send(outMsg{closeCode: websocket.StatusNormalClosure, reason: "left"})
		return false
	case sessionwire.TypeEnd:
		if len(m.Reason) > 256 {
			c.sendError(perr("bad_request", false, "reason is longer than 256 bytes"))
			return true
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
		_, err := c.e.call(ctx, c.code, &sessionpb.End{By: c.participant, Reason: m.Reason}, false)
		cancel()
		if err != nil {
			c.sendError(c.grainError(err, false))
		}
		// The "ended" notice arrives as a push like for everybody else.
	default:
		c.sendError(perr("bad_request", false, "%q is not allowed after the handshake", m.Type))
	}
	return true
}

// inflightFrames are durable frames sent to the grain in one command whose
// reply is awaited.
type inflightFrames struct {
	frames []sessionwire.Frame
	fut    *actor.Future // nil when no activation was cached
}

// pipelineTimeout bounds the wait for the reply to a pipelined command; its
// frames are then sent again. A node that dies is noticed sooner, by the
// membership change that interrupts the wait (await); the timeout only
// catches a reply lost between live nodes, so it is long enough not to fire
// when a loaded cluster is merely slow (with 1 s, commands queued behind
// three others timed out at saturation and their sessions fell back to the
// slow path for seconds).
const pipelineTimeout = 5 * time.Second

// Pipeline shape: up to pipelineDepth commands in flight per connection, each
// with up to framesPerCommand frames (the frames that queued up meanwhile),
// so that a busy connection sends few, large commands.
const (
	pipelineDepth    = 4
	framesPerCommand = 64
)

// sender sends the client's durable frames to the session grain in cseq
// order without waiting for each reply: the frames that queue up while
// commands are in flight go together in the next one (SendFrames), and the
// grain writes what arrives while its append is in flight with its next
// append. confirm awaits the replies in the same order.
func (c *conn) sender() {
	inflight := make(chan inflightFrames, pipelineDepth)
	done := make(chan struct{})
	go func() { defer close(done); c.confirm(inflight) }()
	defer func() { close(inflight); <-done }()
	for {
		var f sessionwire.Frame
		select {
		case <-c.ctx.Done():
			return
		case f = <-c.sendQ:
		}
		batch := []sessionwire.Frame{f}
	more:
		for len(batch) < framesPerCommand {
			select {
			case g := <-c.sendQ:
				batch = append(batch, g)
			default:
				break more
			}
		}
		var cmd proto.Message
		if len(batch) == 1 {
			cmd = &sessionpb.SendFrame{Participant: c.participant, Cseq: f.CSeq, Payload: f.Payload}
		} else {
			fs := make([]*sessionpb.SendFrame, len(batch))
			for i, b := range batch {
				fs[i] = &sessionpb.SendFrame{Cseq: b.CSeq, Payload: b.Payload}
			}
			cmd = &sessionpb.SendFrames{Participant: c.participant, Frames: fs}
		}
		// Only a cached activation is used here: finding (or waiting for) a
		// new one is confirm's job, so a dead grain never stalls reading.
		fut := c.e.requestCached(c.e.node.Cluster(), c.code, cmd, pipelineTimeout)
		select {
		case inflight <- inflightFrames{frames: batch, fut: fut}:
		case <-c.ctx.Done():
			return
		}
	}
}

// confirm turns the grain's replies into `sent` (or error) messages, in cseq
// order. Frames whose pipelined command failed in any way (the activation
// died or moved, the command arrived ahead of an earlier failed one) or that
// a SendFrames left out are sent again with retries, together in one
// SendFrames and then what that leaves out one by one: both commands are
// idempotent (the grain drops cseqs it has), so no frame is written twice,
// and a frame that cannot be written gets its own refusal.
func (c *conn) confirm(inflight <-chan inflightFrames) {
	broken := false
	for in := range inflight {
		if broken && len(inflight) == 0 {
			// Every command sent before the failure has been redone.
			broken = false
		}
		var accepted uint64 // frames up to this cseq are in
		ok := false
		if in.fut != nil && !broken {
			if r, err := c.await(in.fut); err == nil {
				if a, isAccepted := r.(*sessionpb.FrameAccepted); isAccepted {
					accepted, ok = a.GetCseq(), true
					if a.GetCseq() >= in.frames[0].CSeq {
						// Cumulative: confirms every frame up to it.
						c.confirmed(sessionwire.Control{Type: sessionwire.TypeSent, CSeq: a.GetCseq(), Seq: a.GetSeq(), Duplicate: a.GetDuplicate()})
					}
				}
			}
		}
		why := "left_out"
		if !ok {
			if c.ctx.Err() != nil {
				return
			}
			// The commands sent after this one went the same way: redo them
			// frame by frame too rather than wait for each reply to time out.
			broken = true
			why = "failed"
			if in.fut == nil {
				why = "no_activation"
			}
		}
		rest := in.frames
		for len(rest) > 0 && ok && rest[0].CSeq <= accepted {
			rest = rest[1:]
		}
		c.e.m.redone.WithLabelValues(why).Add(float64(len(rest)))
		if len(rest) > 1 {
			// Again in one command, with retries (SendFrames is idempotent:
			// the grain skips cseqs it has); what it leaves out is sent
			// alone below and gets its own refusal.
			var ok bool
			if rest, ok = c.sendMany(rest); !ok {
				return
			}
		}
		for _, f := range rest {
			if !c.sendOne(f) {
				return
			}
		}
		c.e.m.inDurable.Add(float64(len(in.frames)))
	}
}

// await waits for a pipelined reply, or until the cluster's membership
// changes: a request to a node that just died is usually neither answered nor
// bounced, and waiting out its timeout would delay the failover.
func (c *conn) await(fut *actor.Future) (any, error) {
	type result struct {
		r   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := fut.Result() // returns by the future's timeout at the latest
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-c.topology:
		return nil, errMembershipChanged
	case <-c.ctx.Done():
		return nil, c.ctx.Err()
	}
}

var errMembershipChanged = errors.New("cluster membership changed while waiting")

// membershipChanged interrupts a wait in await.
func (c *conn) membershipChanged() {
	select {
	case c.topology <- struct{}{}:
	default:
	}
}

// sendOne sends one durable frame with retries and reports the outcome to
// the client; false means the connection must end.
func (c *conn) sendOne(f sessionwire.Frame) bool {
	ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
	res, err := c.e.call(ctx, c.code, &sessionpb.SendFrame{Participant: c.participant, Cseq: f.CSeq, Payload: f.Payload}, true)
	cancel()
	if err != nil {
		if c.ctx.Err() != nil {
			return false
		}
		pe := c.grainError(err, false)
		pe.cseq = f.CSeq
		c.sendError(pe)
		return true
	}
	a, ok := res.(*sessionpb.FrameAccepted)
	if !ok {
		c.sendError(perr("internal", true, "session replied %T", res))
		return false
	}
	c.confirmed(sessionwire.Control{Type: sessionwire.TypeSent, CSeq: a.GetCseq(), Seq: a.GetSeq(), Duplicate: a.GetDuplicate()})
	return true
}

// sendMany sends frames (in cseq order) in one SendFrames command with
// retries, confirms what the grain accepted and returns the frames it did
// not (all of them when the call failed: sendOne then reports each one's
// error). false means the connection ends.
func (c *conn) sendMany(frames []sessionwire.Frame) ([]sessionwire.Frame, bool) {
	fs := make([]*sessionpb.SendFrame, len(frames))
	for i, f := range frames {
		fs[i] = &sessionpb.SendFrame{Cseq: f.CSeq, Payload: f.Payload}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
	res, err := c.e.call(ctx, c.code, &sessionpb.SendFrames{Participant: c.participant, Frames: fs}, true)
	cancel()
	if err != nil {
		return frames, c.ctx.Err() == nil
	}
	a, ok := res.(*sessionpb.FrameAccepted)
	if !ok {
		c.sendError(perr("internal", true, "session replied %T", res))
		return nil, false
	}
	if a.GetCseq() >= frames[0].CSeq {
		c.confirmed(sessionwire.Control{Type: sessionwire.TypeSent, CSeq: a.GetCseq(), Seq: a.GetSeq(), Duplicate: a.GetDuplicate()})
	}
	for len(frames) > 0 && frames[0].CSeq <= a.GetCseq() {
		frames = frames[1:]
	}
	return frames, true
}

// confirmed records a durable frame's confirmation for the writer.
func (c *conn) confirmed(m sessionwire.Control) {
	c.sentMu.Lock()
	if c.sentLatest == nil || m.CSeq >= c.sentLatest.CSeq {
		c.sentLatest = &m
	}
	c.sentMu.Unlock()
	select {
	case c.sentKick <- struct{}{}:
	default:
	}
}

// attachAgain tells the session grain where this connection is (after a
// membership change or a rejoin, and on the idle resync): the grain binds the
// participant to c again if it had lost that binding, and the welcome's
// head, pushed as a Sync, makes the deliverer read from the log whatever
// was not pushed. It reports "superseded" (c was closed: the participant
// is bound to a newer connection), "failed", "behind" (the head was past
// what c had delivered) or "current".
func (c *conn) attachAgain() string {
	if c.ctx.Err() != nil || c.left.Load() {
		return "failed"
	}
	before := c.lastSeq.Load()
	c.mu.Lock()
	code, p, token := c.code, c.participant, c.resumeToken
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
	defer cancel()
	res, err := c.e.call(ctx, code, &sessionpb.Attach{Participant: p, ResumeToken: []byte(token), Conn: c.connRef(), Addr: c.addr}, true)
	if err != nil {
		if c.closeIfSuperseded(err) {
			return "superseded"
		}
		pe := c.grainError(err, true)
		if pe.fatal && pe.code != "unavailable" && pe.code != "internal" {
			c.sendError(pe)
		}
		return "failed"
	}
	w, ok := res.(*sessionpb.Welcome)
	if !ok {
		return "failed"
	}
	outcome := "current"
	if w.GetHead() > before {
		outcome = "behind"
	}
	c.push(&sessionpb.Sync{Session: code, To: p, Head: w.GetHead()})
	return outcome
}

// closeIfSuperseded closes c when err says its participant resumed through
// a newer connection (the client left this one; its close has not arrived):
// c must neither take the participant back nor detach it.
func (c *conn) closeIfSuperseded(err error) bool {
	var ee *entity.Error
	if !errors.As(err, &ee) || ee.Code != entity.CodeRejected || ee.Reason != session.ReasonSuperseded {
		return false
	}
	c.log.Info("closing a connection superseded by a newer one of its participant", "session", c.sessionCode())
	c.left.Store(true) // no Detach: the participant is bound elsewhere
	c.send(outMsg{closeCode: websocket.StatusTryAgainLater, reason: "superseded by a newer connection"})
	return true
}

// Idle re-attachment: a connection that the grain pushed nothing to for
// resyncMin re-attaches (reattach: the grain binds it again if it had lost
// it, and the welcome's head makes the deliverer read whatever was not
// pushed). An idle session's connections back off to resyncMax; any push
// and any resync that finds the connection behind reset the interval. This
// is anti-entropy, not the delivery path: it bounds how long a receiver can
// miss frames the log holds when pushes went astray, as chaos runs of
// partitions between five nodes showed (docs/chaos.md).
const (
	resyncMin = 5 * time.Second
	resyncMax = 60 * time.Second
)

// resync re-attaches c if it is due at now; it runs in its own goroutine.
func (c *conn) resync() {
	defer c.resyncing.Store(false)
	before := c.lastSeq.Load()
	outcome := c.attachAgain()
	c.e.m.resyncs.WithLabelValues(outcome).Inc()
	next := int64(resyncMin)
	switch outcome {
	case "behind":
		c.log.Warn("connection was behind its session: messages meant for it had not been pushed; reading them from the log",
			"session", c.sessionCode(), "delivered_through", before)
	case "current":
		next = min(2*c.resyncEvery.Load(), int64(resyncMax))
	}
	// After attachAgain's push, which resets both.
	c.lastPush.Store(time.Now().UnixNano())
	c.resyncEvery.Store(next)
}
