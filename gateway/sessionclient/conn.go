package sessionclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-io/switchboard/gateway/burstconn"
	"github.com/switchboard-io/switchboard/gateway/sessionwire"
)

const (
	textMessage   = websocket.MessageText
	binaryMessage = websocket.MessageBinary
)

// conn is one WebSocket connection of a Session. Its reader and writer
// goroutines run until either fails; the supervisor (Session.run) then
// replaces it.
type conn struct {
	ws *websocket.Conn
	// bc is the connection under ws when the session's own transport
	// dialled it (nil with a custom Config.Dialer): the writer sends a burst
	// of messages with one write.
	bc     *burstconn.Conn
	wbuf   []byte // the writer's encoding buffer (burst)
	node   int    // index in Session.urls
	ctx    context.Context
	cancel context.CancelFunc

	writeTimeout  time.Duration
	lastRecv      atomic.Int64 // unix nanos
	lastSent      atomic.Int64
	readerBlocked atomic.Bool // waiting for room in the receive queue
}

func (c *conn) write(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.writeTimeout)
	defer cancel()
	return c.writeCtx(ctx, typ, b)
}

// writeCtx is write under ctx, for a burst of writes that share one
// deadline.
func (c *conn) writeCtx(ctx context.Context, typ websocket.MessageType, b []byte) error {
	if err := c.ws.Write(ctx, typ, b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	c.lastSent.Store(time.Now().UnixNano())
	return nil
}

// burst writes the acknowledgements and frames the writer took with one
// write to the connection when it can (burstconn), all under one deadline.
// Only the writer goroutine calls it (it encodes into c.wbuf).
func (c *conn) burst(ctrls []sessionwire.Control, frames []sessionwire.Frame) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.writeTimeout)
	defer cancel()
	c.bc.Hold()
	err := func() error {
		for _, m := range ctrls {
			if err := c.writeCtx(ctx, textMessage, sessionwire.EncodeControl(m)); err != nil {
				return err
			}
		}
		for _, f := range frames {
			c.wbuf, _ = sessionwire.AppendFrame(c.wbuf[:0], f)
			if err := c.writeCtx(ctx, binaryMessage, c.wbuf); err != nil {
				return err
			}
		}
		return nil
	}()
	if rerr := c.bc.Release(); rerr != nil && err == nil {
		err = fmt.Errorf("write: %w", rerr)
	}
	return err
}

// closeGracefully sends a normal close and waits briefly for the answer.
func (c *conn) closeGracefully() {
	done := make(chan struct{})
	go func() {
		_ = c.ws.Close(websocket.StatusNormalClosure, "client closed")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		_ = c.ws.CloseNow()
	}
}

// terminalError marks a connection error that ends the session for this
// client (no resume).
type terminalError struct{ err error }

func (e terminalError) Error() string { return e.err.Error() }
func (e terminalError) Unwrap() error { return e.err }

// errHeartbeat: the connection went silent.
var errHeartbeat = errors.New("heartbeat timeout: nothing received for 3 × heartbeat_s")

// errUnresponsive: a probe ping got no answer.
var errUnresponsive = errors.New("node unresponsive: nothing received within the probe timeout of a ping")

// errUnconfirmed: durable frames went unconfirmed for Config.ConfirmTimeout.
var errUnconfirmed = errors.New("durable frames unconfirmed on a node that answers")

// probeWhileWaiting: with written durable frames unconfirmed, the client
// probes after this long without receiving anything (when shorter than
// Config.ProbeInterval).
const probeWhileWaiting = time.Second

// connect dials the nodes round robin starting at first until one answers
// hello with a welcome. A fatal error other than unavailable/internal is
// returned at once (as *Error); so is ctx's end or Config.GiveUpAfter
// (wrapped ErrUnavailable).
func (s *Session) connect(ctx context.Context, first int, hello func() sessionwire.Control) (*conn, sessionwire.Control, error) {
	begin := time.Now()
	var lastErr error
	for round := 0; ; round++ {
		certErrors := 0
		for i := range s.urls {
			idx := (first + i) % len(s.urls)
			if s.ctx.Err() != nil {
				return nil, sessionwire.Control{}, ErrClosed
			}
			if err := ctx.Err(); err != nil {
				return nil, sessionwire.Control{}, fmt.Errorf("%w (last error: %v)", err, lastErr)
			}
			if time.Since(begin) > s.cfg.GiveUpAfter {
				return nil, sessionwire.Control{}, fmt.Errorf("%w: no node answered within %v (last error: %v)", ErrUnavailable, s.cfg.GiveUpAfter, lastErr)
			}
			c, w, err := s.attempt(ctx, idx, hello())
			if err == nil {
				return c, w, nil
			}
			var se *Error
			if errors.As(err, &se) && !retryable(se.Code) {
				return nil, sessionwire.Control{}, se
			}
			s.log.Debug("session connect attempt failed", "node", s.urls[idx], "err", err)
			lastErr = err
			var ce *tls.CertificateVerificationError
			if errors.As(err, &ce) {
				certErrors++
			}
		}
		if certErrors == len(s.urls) {
			// Every node presented a certificate we do not trust: waiting
			// will not change that.
			return nil, sessionwire.Control{}, fmt.Errorf("no node has a trusted certificate: %w", lastErr)
		}
		d := min(s.cfg.MaxBackoff, s.cfg.MinBackoff<<min(round, 20))
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-s.ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// attempt is one try on one node: dial, hello, welcome.
func (s *Session) attempt(ctx context.Context, idx int, hello sessionwire.Control) (*conn, sessionwire.Control, error) {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	// The dial has a shorter bound of its own (Config.DialTimeout); the
	// connection it returns outlives dctx (coder/websocket only uses the
	// context for the upgrade).
	dctx, dcancel := context.WithTimeout(hctx, min(s.cfg.DialTimeout, s.cfg.HandshakeTimeout))
	var dialed atomic.Pointer[burstconn.Conn] // set by the transport's dial (burstDialer)
	dctx = context.WithValue(dctx, dialedKey{}, &dialed)
	ws, resp, err := s.cfg.Dialer(dctx, s.urls[idx], &websocket.DialOptions{HTTPClient: s.httpClient})
	dcancel()
	if err != nil {
		if resp != nil && resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			return nil, sessionwire.Control{}, fmt.Errorf("dial %s: HTTP %d %s: %w", s.urls[idx], resp.StatusCode, body, err)
		}
		return nil, sessionwire.Control{}, fmt.Errorf("dial %s: %w", s.urls[idx], err)
	}
	ws.SetReadLimit(1 << 20)
	fail := func(err error) (*conn, sessionwire.Control, error) {
		_ = ws.CloseNow()
		return nil, sessionwire.Control{}, err
	}
	if err := ws.Write(hctx, websocket.MessageText, sessionwire.EncodeControl(hello)); err != nil {
		return fail(fmt.Errorf("send %s to %s: %w", hello.Type, s.urls[idx], err))
	}
	typ, b, err := ws.Read(hctx)
	if err != nil {
		return fail(fmt.Errorf("await welcome from %s: %w", s.urls[idx], err))
	}
	if typ != websocket.MessageText {
		return fail(fmt.Errorf("%s answered %s with a binary message", s.urls[idx], hello.Type))
	}
	w, err := sessionwire.DecodeControl(b)
	if err != nil {
		return fail(fmt.Errorf("%s answered %s: %w", s.urls[idx], hello.Type, err))
	}
	switch w.Type {
	case sessionwire.TypeWelcome:
	case sessionwire.TypeError:
		return fail(&Error{Code: w.Code, Message: w.Message})
	default:
		return fail(fmt.Errorf("%s answered %s with %q", s.urls[idx], hello.Type, w.Type))
	}
	limit := int64(1 << 20)
	if w.Limits != nil && int64(w.Limits.MaxFrameBytes)+4096 > limit {
		limit = int64(w.Limits.MaxFrameBytes) + 4096
	}
	ws.SetReadLimit(limit)
	hb := time.Duration(max(w.HeartbeatS, 1)) * time.Second
	c := &conn{ws: ws, bc: dialed.Load(), node: idx, writeTimeout: 3 * hb}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	// The reader's Read runs without a context (coder/websocket registers a
	// read context's cancellation anew on every Read, a tenth of a busy
	// client's CPU): the end of c.ctx closes the connection once, here,
	// which ends a Read in progress as a cancelled read context would.
	context.AfterFunc(c.ctx, func() { _ = ws.CloseNow() })
	now := time.Now().UnixNano()
	c.lastRecv.Store(now)
	c.lastSent.Store(now)
	return c, w, nil
}

// run supervises the connections of the session until it is over.
func (s *Session) run(c *conn) {
	defer close(s.done)
	for {
		err := s.serve(c)
		var te terminalError
		if errors.As(err, &te) {
			s.setTerminal(te.err)
			return
		}
		if s.ctx.Err() != nil || s.terminalErr() != nil {
			return
		}
		failed := time.Now()
		s.mu.Lock()
		s.stats.Reconnects++
		s.mu.Unlock()
		s.log.Debug("session connection lost; resuming on another node", "session", s.Code(), "node", s.urls[c.node], "err", err)
		var lastSeq uint64
		var w sessionwire.Control
		c, w, err = s.connect(s.ctx, c.node+1, func() sessionwire.Control {
			s.mu.Lock()
			defer s.mu.Unlock()
			lastSeq = s.processed
			return sessionwire.Control{Type: sessionwire.TypeResume, V: sessionwire.Version, Session: s.code,
				Participant: s.participant, ResumeToken: s.resumeToken, LastSeq: lastSeq}
		})
		if err != nil {
			s.setTerminal(s.resumeFailure(err))
			return
		}
		took := time.Since(failed)
		s.mu.Lock()
		s.applyWelcomeLocked(w)
		s.acked = max(s.acked, lastSeq)
		resend := len(s.pending)
		if s.leaving {
			s.ctrl = append(s.ctrl, sessionwire.Control{Type: sessionwire.TypeLeave})
		}
		if s.ending {
			s.ctrl = append(s.ctrl, sessionwire.Control{Type: sessionwire.TypeEnd, Reason: s.endReason})
		}
		s.stats.Resumes++
		s.stats.LastResumeDuration = took
		s.mu.Unlock()
		s.log.Info("session resumed", "session", w.Session, "participant", w.Participant, "node", s.urls[c.node],
			"took", took, "last_seq", lastSeq, "resending", resend)
	}
}

// resumeFailure turns the error of a failed resume into what the
// application sees.
func (s *Session) resumeFailure(err error) error {
	s.mu.Lock()
	leaving, ending, reason := s.leaving, s.ending, s.endReason
	s.mu.Unlock()
	switch {
	case errors.Is(err, ErrClosed):
		return ErrClosed
	case leaving && errors.Is(err, ErrUnknownParticipant):
		return ErrClosed // the leave took effect before the connection died
	case ending && errors.Is(err, ErrSessionEnded):
		return &EndedError{Reason: reason}
	}
	return err
}

// serve runs c's reader and writer until one of them fails.
func (s *Session) serve(c *conn) error {
	s.mu.Lock()
	if s.terminal != nil {
		s.mu.Unlock()
		_ = c.ws.CloseNow()
		return terminalError{s.terminal}
	}
	s.cur = c
	s.mu.Unlock()
	s.kickWriter()
	errc := make(chan error, 2)
	go func() { errc <- s.readLoop(c) }()
	go func() { errc <- s.writeLoop(c) }()
	err := <-errc
	c.cancel()
	_ = c.ws.CloseNow()
	<-errc
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	return err
}

func (s *Session) readLoop(c *conn) error {
	for {
		typ, b, err := c.ws.Read(context.Background()) // c.ctx's end closes ws (attempt)
		if err != nil {
			return s.readFailure(c, err)
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if typ == websocket.MessageBinary {
			f, err := sessionwire.DecodeFrame(b)
			if err != nil {
				s.log.Warn("session: undecodable frame from server", "node", s.urls[c.node], "err", err)
				continue
			}
			switch f.Kind {
			case sessionwire.KindDeliverDurable:
				if err := s.enqueue(c, Message{Kind: Durable, Seq: f.Seq, From: f.From, Payload: f.Payload}, f.PrevSeq); err != nil {
					return err
				}
			case sessionwire.KindDeliverStream:
				if err := s.enqueue(c, Message{Kind: Stream, From: f.From, Payload: f.Payload}, 0); err != nil {
					return err
				}
			default:
				s.log.Warn("session: server sent a client frame kind", "kind", f.Kind)
			}
			continue
		}
		m, err := sessionwire.DecodeControl(b)
		if err != nil {
			s.log.Warn("session: undecodable control message from server", "node", s.urls[c.node], "err", err)
			continue
		}
		switch m.Type {
		case sessionwire.TypeSent:
			s.mu.Lock()
			s.confirmLocked(m.CSeq)
			s.mu.Unlock()
		case sessionwire.TypeEvent:
			if m.Event == "ended" {
				s.mu.Lock()
				dup := m.Seq != 0 && m.Seq <= s.lastQueued
				s.mu.Unlock()
				if !dup {
					return terminalError{&EndedError{Reason: m.Reason}}
				}
				continue
			}
			msg := Message{Kind: Notice, Seq: m.Seq, Event: m.Event, Participant: m.Participant, Name: m.Name, Role: m.Role, Reason: m.Reason}
			if err := s.enqueue(c, msg, m.PrevSeq); err != nil {
				return err
			}
		case sessionwire.TypeGap:
			if err := s.enqueue(c, Message{Kind: Gap, From: m.From}, 0); err != nil {
				return err
			}
		case sessionwire.TypePing:
			s.mu.Lock()
			s.ctrl = append(s.ctrl, sessionwire.Control{Type: sessionwire.TypePong, T: m.T})
			s.mu.Unlock()
			s.kickWriter()
		case sessionwire.TypePong:
		case sessionwire.TypeError:
			if err := s.serverError(c, m); err != nil {
				return err
			}
		default:
			s.log.Warn("session: unexpected control message from server", "type", m.Type)
		}
	}
}

// readFailure classifies the error that ended a read.
func (s *Session) readFailure(c *conn, err error) error {
	status := websocket.CloseStatus(err)
	if status == websocket.StatusNormalClosure {
		s.mu.Lock()
		leaving := s.leaving
		s.mu.Unlock()
		if leaving {
			return terminalError{ErrClosed}
		}
	}
	if status != -1 {
		return fmt.Errorf("connection to %s closed with %d: %w", s.urls[c.node], status, err)
	}
	return fmt.Errorf("read from %s: %w", s.urls[c.node], err)
}

// enqueue adds a received message for Recv, dropping durable duplicates, and
// waits while the queue is full.
func (s *Session) enqueue(c *conn, m Message, prevSeq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Kind == Durable || m.Kind == Notice {
		if m.Seq <= s.lastQueued {
			s.stats.DuplicatesDropped++
			return nil
		}
		if prevSeq > s.lastQueued {
			// The server says a message meant for us came before this one
			// and we never saw it: resume from what we processed, which
			// replays it. Only once per message, so that a server whose
			// prev_seq is wrong cannot make us reconnect forever.
			if s.prevRetrySeq != m.Seq {
				s.prevRetrySeq = m.Seq
				return fmt.Errorf("message %d follows %d but the last one received is %d", m.Seq, prevSeq, s.lastQueued)
			}
			s.log.Warn("session: server's prev_seq names a message never delivered", "seq", m.Seq, "prev_seq", prevSeq, "last_received", s.lastQueued)
		}
	}
	for len(s.queue)-s.qhead >= maxQueueMessages || (s.qbytes >= maxQueueBytes && len(s.queue) > s.qhead) {
		if s.terminal != nil {
			return terminalError{s.terminal}
		}
		ch := s.roomSig.wait()
		c.readerBlocked.Store(true)
		s.mu.Unlock()
		select {
		case <-c.ctx.Done():
			s.mu.Lock()
			c.readerBlocked.Store(false)
			return c.ctx.Err()
		case <-ch:
		}
		s.mu.Lock()
		c.readerBlocked.Store(false)
		c.lastRecv.Store(time.Now().UnixNano())
	}
	if m.Kind == Durable || m.Kind == Notice {
		s.lastQueued = m.Seq
	}
	s.queue = append(s.queue, m)
	s.qbytes += len(m.Payload)
	s.recvSig.broadcast()
	return nil
}

// serverError handles an error message after the handshake.
func (s *Session) serverError(c *conn, m sessionwire.Control) error {
	e := &Error{Code: m.Code, Message: m.Message}
	if m.Fatal {
		if retryable(m.Code) {
			return fmt.Errorf("fatal from %s: %w", s.urls[c.node], e)
		}
		if err := s.resumeFailure(e); err != e {
			return terminalError{err}
		}
		return terminalError{e}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m.Code {
	case "rate_limited":
		if m.CSeq != 0 {
			s.rewindLocked(m.CSeq, max(20*time.Millisecond, time.Duration(2*float64(time.Second)/float64(s.limits.FramesPerSecond))))
		}
	case "bad_sequence":
		s.rewindLocked(m.CSeq, 0)
	case "unavailable":
		if m.CSeq != 0 {
			s.rewindLocked(m.CSeq, 50*time.Millisecond)
		}
	case "frame_too_large":
		if m.CSeq != 0 && m.CSeq > s.confirmed {
			// Send checks the size, so the server's limit differs from the
			// one it announced; the frame can never be written and every
			// later cseq would be refused.
			return terminalError{e}
		}
	case "not_host":
		if s.ending {
			s.endErr = e
			s.confSig.broadcast()
		}
	default:
		s.log.Warn("session: server refused a message", "code", m.Code, "message", m.Message, "cseq", m.CSeq)
	}
	return nil
}

// probe sends a probe ping when one is due and reports errUnresponsive when
// the last one went unanswered for Config.ProbeTimeout. *sent is when the
// outstanding probe was sent (zero: none); lastRecv when c last received
// anything.
func (s *Session) probe(c *conn, sent *time.Time, lastRecv time.Time) error {
	if s.cfg.ProbeInterval < 0 || c.readerBlocked.Load() {
		// A reader waiting for room in the receive queue receives nothing
		// by choice: silence then says nothing about the node.
		*sent = time.Time{}
		return nil
	}
	now := time.Now()
	if !sent.IsZero() {
		if lastRecv.After(*sent) {
			*sent = time.Time{} // answered (by the pong or anything else)
		} else if now.Sub(*sent) > s.cfg.ProbeTimeout {
			return fmt.Errorf("%w (%v)", errUnresponsive, s.cfg.ProbeTimeout)
		} else {
			return nil
		}
	}
	silent := now.Sub(lastRecv)
	due := silent >= s.cfg.ProbeInterval
	if !due && silent >= min(probeWhileWaiting, s.cfg.ProbeInterval) {
		s.mu.Lock()
		due = s.writeFrom > s.confirmed+1 // written frames await their confirmation
		s.mu.Unlock()
	}
	if !due {
		return nil
	}
	if err := c.write(textMessage, sessionwire.EncodeControl(sessionwire.Control{Type: sessionwire.TypePing, T: now.UnixMilli()})); err != nil {
		return err
	}
	*sent = now
	return nil
}

// writeLoop writes acknowledgements, control messages and durable frames
// for c, sends heartbeats and detects a silent connection.
func (s *Session) writeLoop(c *conn) error {
	s.mu.Lock()
	hb := s.heartbeat
	s.mu.Unlock()
	tick := time.NewTicker(min(50*time.Millisecond, hb/4))
	defer tick.Stop()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var probe time.Time // when an unanswered probe ping was sent (zero: none)
	started := time.Now()
	var frames []sessionwire.Frame
	for {
		now := time.Now()
		s.mu.Lock()
		var ctrls []sessionwire.Control
		if s.processed > s.acked && (now.Sub(s.lastAckAt) >= ackEvery || s.processed-s.acked >= ackAfterMessages || s.leaving) {
			ctrls = append(ctrls, sessionwire.Control{Type: sessionwire.TypeAck, Seq: s.processed})
			s.acked, s.lastAckAt = s.processed, now
		}
		ctrls = append(ctrls, s.ctrl...)
		s.ctrl = s.ctrl[:0]
		frames = frames[:0]
		if waiting := s.awaitingSince; s.cfg.ConfirmTimeout > 0 && !waiting.IsZero() {
			// Counted on this connection only: what waited before it
			// gets a full timeout here.
			if waiting.Before(started) {
				waiting = started
			}
			if d := now.Sub(waiting); d > s.cfg.ConfirmTimeout {
				s.stats.ConfirmTimeouts++
				n := len(s.pending)
				s.mu.Unlock()
				return fmt.Errorf("%w: %d frames, none confirmed for %v", errUnconfirmed, n, d.Round(time.Millisecond))
			}
		}
		var wait time.Duration
		if len(s.pending) > 0 && s.writeFrom == s.nextCSeq && now.Sub(s.lastProgress) > resendAfter {
			// Everything was written and nothing confirmed for a while: a
			// `sent` may have been lost. Re-sending is always safe.
			s.writeFrom = s.confirmed + 1
			s.lastProgress = now
		}
		if s.writeFrom < s.nextCSeq && now.Before(s.pauseUntil) {
			wait = s.pauseUntil.Sub(now)
		}
		for wait == 0 && s.writeFrom < s.nextCSeq && len(frames) < 64 {
			if w := s.bucket.take(now); w > 0 {
				wait = w
				break
			}
			f := &s.pending[s.writeFrom-s.confirmed-1]
			if f.writes > 0 {
				s.stats.Resends++
			}
			f.writes++
			frames = append(frames, sessionwire.Frame{Kind: sessionwire.KindDurable, CSeq: f.cseq, Payload: f.payload})
			s.writeFrom++
			s.lastProgress = now
		}
		s.mu.Unlock()

		if len(ctrls) > 0 || len(frames) > 0 {
			if err := c.burst(ctrls, frames); err != nil {
				return err
			}
			continue
		}

		lastRecv := time.Unix(0, c.lastRecv.Load())
		if !c.readerBlocked.Load() && time.Since(lastRecv) > 3*hb {
			return errHeartbeat
		}
		if err := s.probe(c, &probe, lastRecv); err != nil {
			return err
		}
		if time.Since(time.Unix(0, c.lastSent.Load())) >= hb {
			if err := c.write(textMessage, sessionwire.EncodeControl(sessionwire.Control{Type: sessionwire.TypePing, T: time.Now().UnixMilli()})); err != nil {
				return err
			}
		}
		var timerC <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-s.kick:
		case <-tick.C:
		case <-timerC:
		}
	}
}
