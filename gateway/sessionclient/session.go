// Package sessionclient is the Go client of the session protocol
// (docs/protocol.md): a host opens a session, guests join it, and all of them
// exchange durable frames (exactly once, in order) and stream frames (best
// effort) through any node of a Switchboard cluster.
//
// A Session hides node failures: when its connection fails for any reason
// (the node died, a close code other than a final one, a heartbeat timeout, a
// fatal `unavailable` or `internal`) it reconnects to another node of
// Config.Nodes with jittered backoff, resumes with its resume token and the
// last seq it processed, re-sends every durable frame the server had not
// confirmed and drops the duplicates the resume may deliver. The application
// sees only real errors: the session ended (ErrEnded), a rejection (*Error),
// or no node reachable for Config.GiveUpAfter (ErrUnavailable).
//
// Concurrency: every method may be called from any goroutine; Recv is meant
// to be called by one goroutine at a time. The application must keep calling
// Recv: the library buffers a bounded number of received messages and stops
// reading from the connection while that buffer is full.
package sessionclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionwire"
)

// Limits of a session (docs/protocol.md, "open").
type Limits = sessionwire.Limits

// Participant as the server lists it.
type Participant = sessionwire.Participant

// Kind says what a Message is.
type Kind int

// Message kinds.
const (
	// Durable: a durable frame from another participant (Seq, From, Payload).
	Durable Kind = iota + 1
	// Stream: a stream frame from another participant (From, Payload).
	Stream
	// Notice: someone joined or left (Seq, Event, Participant, Name, Role,
	// Reason). The end of the session is not a Notice: Recv returns ErrEnded.
	Notice
	// Gap: stream frames from From (anyone when empty) may have been lost.
	Gap
)

func (k Kind) String() string {
	switch k {
	case Durable:
		return "durable"
	case Stream:
		return "stream"
	case Notice:
		return "notice"
	case Gap:
		return "gap"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Message is what Recv returns. Which fields are set depends on Kind.
type Message struct {
	Kind    Kind
	Seq     uint64 // Durable, Notice
	From    string // Durable, Stream, Gap: the sender's participant id
	Payload []byte // Durable, Stream: owned by the caller
	// Notice fields.
	Event       string // "joined" or "left"
	Participant string
	Name        string
	Role        string
	Reason      string
}

// OpenParams are the host's part of Open.
type OpenParams struct {
	Token  string // the supporter's host token
	Name   string // display name, 1–64 bytes
	Limits Limits // zero fields take the server's defaults
}

// JoinParams are the guest's part of Join.
type JoinParams struct {
	Session string // the 9-digit code
	Secret  string // the join secret
	Name    string // display name, 1–64 bytes
}

// Stats counts what the library did to hide failures (benchmarks, tests).
type Stats struct {
	Reconnects         uint64        // connections lost and replaced
	Resumes            uint64        // successful resumes
	LastResumeDuration time.Duration // from noticing the failure to the welcome of the resume
	Resends            uint64        // durable frames written more than once
	ConfirmTimeouts    uint64        // connections given up for want of confirmations (Config.ConfirmTimeout)
	DuplicatesDropped  uint64        // durable messages dropped because their seq was already processed
	StreamDropped      uint64        // stream frames SendStream dropped while disconnected
}

const (
	maxQueueMessages = 4096
	maxQueueBytes    = 16 << 20
	ackEvery         = 200 * time.Millisecond
	ackAfterMessages = 64
	// resendAfter: when every unconfirmed frame was written and no `sent`
	// arrived for this long, re-send them (a lost `sent` would otherwise
	// leave Flush waiting until the next reconnect).
	resendAfter = time.Second
)

type outFrame struct {
	cseq    uint64
	payload []byte
	writes  int
}

// Session is one participant's membership in a session. Create it with Open
// or Join; release it with Leave, End or Close.
type Session struct {
	cfg        Config
	log        *slog.Logger
	urls       []string
	httpClient *http.Client

	ctx    context.Context // cancelled when the session is over for this client
	cancel context.CancelFunc
	done   chan struct{} // closed when the supervisor goroutine exits
	kick   chan struct{} // wakes the current connection's writer

	mu sync.Mutex
	// Identity, from the first welcome.
	code, participant, role, resumeToken, joinSecret string
	node                                             string // the node of the latest welcome
	limits                                           Limits
	heartbeat                                        time.Duration
	participants                                     []Participant

	cur *conn // the connection in use; nil while reconnecting

	// Outbound durable frames: pending holds cseq confirmed+1 … nextCSeq-1.
	nextCSeq     uint64
	confirmed    uint64
	pending      []outFrame
	writeFrom    uint64    // next cseq to write on cur
	pauseUntil   time.Time // no durable writes before (rate_limited, unavailable)
	lastProgress time.Time // last confirmation or durable write
	// awaitingSince is when the oldest unconfirmed frame started waiting:
	// its Send, or the last confirmation (zero: nothing unconfirmed).
	awaitingSince time.Time
	bucket        tokenBucket
	ctrl          []sessionwire.Control // control messages waiting for the writer

	// Inbound: queue[qhead:] are received, not yet returned by Recv.
	queue      []Message
	qhead      int
	qbytes     int
	lastQueued uint64 // highest durable seq queued
	processed  uint64 // highest durable seq returned by Recv
	acked      uint64 // highest seq the server knows we processed
	lastAckAt  time.Time
	// prevRetrySeq: the message whose prev_seq last made us resume.
	prevRetrySeq uint64

	leaving   bool
	ending    bool
	endReason string
	endErr    error // not_host answering End
	closed    bool
	terminal  error // set once: why the session is over for this client
	stats     Stats

	recvSig signal // queue non-empty or terminal
	roomSig signal // queue has room
	confSig signal // confirmations, terminal, End's answer
}

// Open opens a new session as its host and returns once a node welcomed it.
// It tries the nodes in order until one answers, for at most ctx's deadline
// and Config.GiveUpAfter. If a connection fails after `open` was sent but
// before the welcome, the retry may leave an orphaned empty session behind
// (it expires when idle).
func Open(ctx context.Context, cfg Config, p OpenParams) (*Session, error) {
	hello := sessionwire.Control{Type: sessionwire.TypeOpen, V: sessionwire.Version, Token: p.Token, Name: p.Name}
	if p.Limits != (Limits{}) {
		l := p.Limits
		hello.Limits = &l
	}
	return start(ctx, cfg, hello)
}

// Join joins an existing session as a guest; see Open for how nodes are
// tried.
func Join(ctx context.Context, cfg Config, p JoinParams) (*Session, error) {
	hello := sessionwire.Control{Type: sessionwire.TypeJoin, V: sessionwire.Version, Session: p.Session, Secret: p.Secret, Name: p.Name}
	return start(ctx, cfg, hello)
}

func start(ctx context.Context, cfg Config, hello sessionwire.Control) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Session{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "sessionclient"),
		done: make(chan struct{}),
		kick: make(chan struct{}, 1),
	}
	for _, n := range cfg.Nodes {
		u, _ := NodeURL(n) // validated above
		s.urls = append(s.urls, u)
	}
	d := &burstDialer{net: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, tls: cfg.TLS}
	s.httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS, Proxy: http.ProxyFromEnvironment,
		DialContext: d.dial, DialTLSContext: d.dialTLS}}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	c, w, err := s.connect(ctx, 0, func() sessionwire.Control { return hello })
	if err != nil {
		s.cancel()
		close(s.done)
		return nil, err
	}
	s.mu.Lock()
	s.code, s.participant, s.role = w.Session, w.Participant, w.Role
	s.resumeToken, s.joinSecret = w.ResumeToken, w.JoinSecret
	s.processed, s.acked, s.lastQueued = w.Seq, w.Seq, w.Seq
	s.confirmed = w.LastCSeq
	s.nextCSeq = w.LastCSeq + 1
	s.applyWelcomeLocked(w)
	s.mu.Unlock()
	s.log.Debug("session started", "session", w.Session, "participant", w.Participant, "role", w.Role, "node", s.urls[c.node])
	go s.run(c)
	return s, nil
}

// applyWelcomeLocked takes what every welcome says: limits, heartbeat,
// participants, the last accepted cseq.
func (s *Session) applyWelcomeLocked(w sessionwire.Control) {
	if w.Limits != nil {
		s.limits = *w.Limits
	}
	if s.limits.MaxFrameBytes == 0 {
		s.limits.MaxFrameBytes = 65536
	}
	if s.limits.FramesPerSecond == 0 {
		s.limits.FramesPerSecond = 200
	}
	if s.limits.Burst == 0 {
		s.limits.Burst = 2 * s.limits.FramesPerSecond
	}
	s.heartbeat = time.Duration(w.HeartbeatS) * time.Second
	if s.heartbeat <= 0 {
		s.heartbeat = 15 * time.Second
	}
	if w.Participants != nil {
		s.participants = append([]Participant(nil), w.Participants...)
	}
	s.node = w.Node
	// Pace our own frames below the server's limit: the server counts per
	// connection, so a new connection starts with a full bucket.
	s.bucket = newTokenBucket(float64(s.limits.FramesPerSecond), float64(max(1, s.limits.Burst/2)))
	s.confirmLocked(w.LastCSeq)
	s.writeFrom = s.confirmed + 1
	s.lastProgress = time.Now()
}

// Node returns the id of the node the session is connected to (or was
// connected to last), as its welcome said.
func (s *Session) Node() string { s.mu.Lock(); defer s.mu.Unlock(); return s.node }

// Code returns the session's 9-digit code.
func (s *Session) Code() string { s.mu.Lock(); defer s.mu.Unlock(); return s.code }

// JoinSecret returns the join secret (the host's session only; empty for a
// guest).
func (s *Session) JoinSecret() string { s.mu.Lock(); defer s.mu.Unlock(); return s.joinSecret }

// Participant returns this participant's id (p1 for the host).
func (s *Session) Participant() string { s.mu.Lock(); defer s.mu.Unlock(); return s.participant }

// Role returns "host" or "guest".
func (s *Session) Role() string { s.mu.Lock(); defer s.mu.Unlock(); return s.role }

// Limits returns the session's limits as the server announced them.
func (s *Session) Limits() Limits { s.mu.Lock(); defer s.mu.Unlock(); return s.limits }

// Participants returns the participants as of the last welcome, updated by
// the notices Recv has returned since.
func (s *Session) Participants() []Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Participant(nil), s.participants...)
}

// Stats returns counters of what the library did to hide failures.
func (s *Session) Stats() Stats { s.mu.Lock(); defer s.mu.Unlock(); return s.stats }

// Send queues a durable frame. It returns once the frame is queued (the
// library numbers it and keeps it until the server confirms it, re-sending
// it after a resume); it blocks while Config.Window frames are unconfirmed.
// A payload over the session's max_frame_bytes is refused with an *Error
// matching ErrFrameTooLarge. Send does not retain payload.
func (s *Session) Send(ctx context.Context, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(payload) > int(s.limits.MaxFrameBytes) {
		return &Error{Code: "frame_too_large", Message: fmt.Sprintf("payload of %d bytes, the session allows %d", len(payload), s.limits.MaxFrameBytes)}
	}
	for {
		if s.terminal != nil {
			return s.terminal
		}
		if len(s.pending) < s.cfg.Window {
			break
		}
		if err := s.waitConfirmedLocked(ctx); err != nil {
			return err
		}
	}
	if len(s.pending) == 0 {
		s.awaitingSince = time.Now()
	}
	s.pending = append(s.pending, outFrame{cseq: s.nextCSeq, payload: append([]byte(nil), payload...)})
	s.nextCSeq++
	s.kickWriter()
	return nil
}

// Flush waits until the server confirmed every durable frame sent so far.
func (s *Session) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if len(s.pending) == 0 {
			return nil
		}
		if s.terminal != nil {
			return fmt.Errorf("%d durable frames unconfirmed: %w", len(s.pending), s.terminal)
		}
		if err := s.waitConfirmedLocked(ctx); err != nil {
			return err
		}
	}
}

// waitConfirmedLocked waits (releasing s.mu meanwhile) until the server
// confirms more frames or ctx ends.
func (s *Session) waitConfirmedLocked(ctx context.Context) error {
	ch := s.confSig.wait()
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}

// SendStream sends a stream frame, best effort: while the session is
// reconnecting the frame is dropped (counted in Stats.StreamDropped) and
// SendStream returns nil. It waits for the session's frame rate (ctx bounds
// that wait) and for the connection to take the frame.
func (s *Session) SendStream(ctx context.Context, payload []byte) error {
	s.mu.Lock()
	if s.terminal != nil {
		s.mu.Unlock()
		return s.terminal
	}
	if len(payload) > int(s.limits.MaxFrameBytes) {
		s.mu.Unlock()
		return &Error{Code: "frame_too_large", Message: fmt.Sprintf("payload of %d bytes, the session allows %d", len(payload), s.limits.MaxFrameBytes)}
	}
	for {
		c := s.cur
		if c == nil {
			s.stats.StreamDropped++
			s.mu.Unlock()
			return nil
		}
		wait := s.bucket.take(time.Now())
		if wait == 0 {
			s.mu.Unlock()
			b, _ := sessionwire.AppendFrame(make([]byte, 0, 1+len(payload)), sessionwire.Frame{Kind: sessionwire.KindStream, Payload: payload})
			if err := c.write(binaryMessage, b); err != nil {
				s.mu.Lock()
				s.stats.StreamDropped++
				s.mu.Unlock()
			}
			return nil
		}
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		s.mu.Lock()
	}
}

// Recv returns the next message: durable frames and notices in seq order,
// each exactly once across reconnects, stream frames and gap notices as
// they come. A returned durable message or notice counts as processed and
// is acknowledged (coalesced). Once the session ended, Recv returns every
// message received before the end, then an *EndedError (errors.Is ErrEnded).
func (s *Session) Recv(ctx context.Context) (Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.qhead < len(s.queue) {
			m := s.queue[s.qhead]
			s.queue[s.qhead] = Message{}
			s.qhead++
			s.qbytes -= len(m.Payload)
			if s.qhead == len(s.queue) {
				s.queue, s.qhead = s.queue[:0], 0
			} else if s.qhead > 1024 && s.qhead*2 > len(s.queue) {
				n := copy(s.queue, s.queue[s.qhead:])
				clear(s.queue[n:])
				s.queue, s.qhead = s.queue[:n], 0
			}
			s.roomSig.broadcast()
			if m.Kind == Durable || m.Kind == Notice {
				s.processed = m.Seq
				if m.Kind == Notice {
					s.noteParticipantLocked(m)
				}
				if s.processed-s.acked >= ackAfterMessages {
					s.kickWriter()
				}
			}
			return m, nil
		}
		if s.terminal != nil {
			return Message{}, s.terminal
		}
		ch := s.recvSig.wait()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			s.mu.Lock()
			return Message{}, ctx.Err()
		case <-ch:
		}
		s.mu.Lock()
	}
}

func (s *Session) noteParticipantLocked(m Message) {
	for i := range s.participants {
		if s.participants[i].ID == m.Participant {
			switch m.Event {
			case "left":
				s.participants[i].Left, s.participants[i].Attached = true, false
			case "joined":
				s.participants[i].Left, s.participants[i].Attached = false, true
			}
			return
		}
	}
	if m.Event == "joined" {
		s.participants = append(s.participants, Participant{ID: m.Participant, Role: m.Role, Name: m.Name, Attached: true})
	}
}

// Leave waits until every durable frame is confirmed (Flush), then leaves
// the session for good and releases the Session. Messages still buffered
// remain readable with Recv, which then returns ErrClosed.
func (s *Session) Leave(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		if errors.Is(err, ErrEnded) {
			return nil
		}
		return err
	}
	s.mu.Lock()
	if s.terminal != nil {
		err := s.terminal
		s.mu.Unlock()
		if errors.Is(err, ErrEnded) || errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	s.leaving = true
	s.ctrl = append(s.ctrl, sessionwire.Control{Type: sessionwire.TypeLeave})
	s.kickWriter()
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
	s.mu.Lock()
	err := s.terminal
	s.mu.Unlock()
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrEnded) {
		return nil
	}
	return err
}

// End ends the session for everybody (host only; a guest gets an *Error
// matching ErrNotHost). It first waits until every durable frame is
// confirmed, then returns once the server reported the end. Recv still
// returns the messages received before the end, then ErrEnded.
func (s *Session) End(ctx context.Context, reason string) error {
	if s.Role() != "host" {
		return &Error{Code: "not_host", Message: "only the host may end the session"}
	}
	if err := s.Flush(ctx); err != nil {
		if errors.Is(err, ErrEnded) {
			return nil
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending, s.endReason, s.endErr = true, reason, nil
	s.ctrl = append(s.ctrl, sessionwire.Control{Type: sessionwire.TypeEnd, Reason: reason})
	s.kickWriter()
	for {
		if s.endErr != nil {
			s.ending = false
			return s.endErr
		}
		if s.terminal != nil {
			if errors.Is(s.terminal, ErrEnded) {
				return nil
			}
			return s.terminal
		}
		ch := s.confSig.wait()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		case <-ch:
		}
		s.mu.Lock()
	}
}

// Close releases the Session without leaving: the participant stays in the
// session, detached, as after a network failure. It sends a last
// acknowledgement when connected. Unconfirmed durable frames are abandoned
// (call Flush first to avoid that). Close is idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	c := s.cur
	live := s.terminal == nil
	var ack []byte
	if c != nil && live && s.processed > s.acked {
		ack = sessionwire.EncodeControl(sessionwire.Control{Type: sessionwire.TypeAck, Seq: s.processed})
		s.acked = s.processed
	}
	if live {
		// Set before closing the connection so the supervisor does not
		// take the close for a failure and resume.
		s.terminal = ErrClosed
		s.recvSig.broadcast()
		s.roomSig.broadcast()
		s.confSig.broadcast()
	}
	s.mu.Unlock()
	if c != nil && live {
		if ack != nil {
			_ = c.write(textMessage, ack)
		}
		c.closeGracefully()
	}
	s.setTerminal(ErrClosed)
	<-s.done
	return nil
}

func (s *Session) terminalErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.terminal
}

// setTerminal records why the session is over (the first reason wins),
// wakes every waiter and stops the connection.
func (s *Session) setTerminal(err error) {
	s.mu.Lock()
	if s.terminal == nil {
		s.terminal = err
	}
	s.recvSig.broadcast()
	s.roomSig.broadcast()
	s.confSig.broadcast()
	s.mu.Unlock()
	s.cancel()
}

// kickWriter wakes the writer of the current connection (s.mu held or not).
func (s *Session) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// confirmLocked records that the server accepted every frame up to cseq
// (the server accepts frames only in cseq order, so a `sent` confirms every
// earlier frame too).
func (s *Session) confirmLocked(cseq uint64) {
	if cseq <= s.confirmed {
		return
	}
	if cseq >= s.nextCSeq {
		if s.nextCSeq > 0 {
			s.log.Warn("server confirmed a durable frame never sent", "cseq", cseq, "last_sent", s.nextCSeq-1)
		}
		cseq = s.nextCSeq - 1
		if cseq <= s.confirmed {
			return
		}
	}
	n := int(cseq - s.confirmed)
	clear(s.pending[:n])
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil
	}
	s.confirmed = cseq
	if s.writeFrom <= cseq {
		s.writeFrom = cseq + 1
	}
	s.lastProgress = time.Now()
	s.awaitingSince = s.lastProgress
	if len(s.pending) == 0 {
		s.awaitingSince = time.Time{}
	}
	s.confSig.broadcast()
}

// rewindLocked makes the writer re-send from the first unconfirmed frame,
// in answer to an error about frame cseq. An error about a frame not
// written again since the last rewind is stale and ignored.
func (s *Session) rewindLocked(cseq uint64, pause time.Duration) {
	if cseq <= s.confirmed || cseq >= s.writeFrom {
		return
	}
	s.writeFrom = s.confirmed + 1
	if until := time.Now().Add(pause); until.After(s.pauseUntil) {
		s.pauseUntil = until
	}
	s.kickWriter()
}

// signal is a broadcast condition usable with select; guarded by Session.mu.
type signal struct{ ch chan struct{} }

func (c *signal) wait() <-chan struct{} {
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *signal) broadcast() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// tokenBucket paces frames like the server's per-connection rate limit.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate, burst float64) tokenBucket {
	return tokenBucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// take takes a token and returns 0, or returns how long until one is there.
func (b *tokenBucket) take(now time.Time) time.Duration {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}
