package sessionedge

import (
	"context"

	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/gateway/sessionwire"
)

// readPage is the number of events read per catch-up page.
const readPage = 256

// deliverer turns pushes into client messages, in seq order and exactly once
// per connection. through is the stream version up to which everything meant
// for this participant has been delivered (or was before the connection's
// start); a push is delivered only when its prev_seq is covered by through,
// otherwise the missing part is read from the log first.
func (c *conn) deliverer(start uint64) {
	through := start
	for {
		var m proto.Message
		select {
		case <-c.ctx.Done():
			return
		case m = <-c.inbox:
		case <-c.kick:
		}
		if c.overflow.Swap(false) {
			// Pushes were dropped: read whatever the stream holds by now
			// and tell the client stream frames may be missing.
			var ok bool
			if through, ok = c.catchUp(through, 0); !ok {
				return
			}
			if !c.sendControl(sessionwire.Control{Type: sessionwire.TypeGap}) {
				return
			}
		}
		if m == nil {
			continue
		}
		switch m := m.(type) {
		case *sessionpb.Deliver:
			if m.GetSeq() <= through {
				c.e.m.duplicates.Inc()
				continue
			}
			if m.GetPrevSeq() > through {
				var ok bool
				if through, ok = c.catchUp(through, m.GetSeq()-1); !ok {
					return
				}
				if m.GetSeq() <= through {
					continue
				}
			}
			if !c.deliver(m.GetSeq(), m.GetFrom(), m.GetPayload(), m.GetNotice()) {
				return
			}
			through = m.GetSeq()
		case *sessionpb.Sync:
			if m.GetHead() > through {
				var ok bool
				if through, ok = c.catchUp(through, m.GetHead()); !ok {
					return
				}
			}
			if m.GetGap() && !c.sendControl(sessionwire.Control{Type: sessionwire.TypeGap}) {
				return
			}
		case *sessionpb.Gap:
			if !c.sendControl(sessionwire.Control{Type: sessionwire.TypeGap, From: m.GetFrom()}) {
				return
			}
		case *sessionpb.StreamDeliver:
			b, err := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindDeliverStream, From: m.GetFrom(), Payload: m.GetPayload()})
			if err != nil {
				continue
			}
			select {
			case c.out <- outMsg{binary: true, data: b}:
				c.e.m.outStream.Inc()
			default:
				// The client is slower than the stream: drop, and say so.
				c.e.m.streamDrops.Inc()
				c.overflow.Store(true)
				select {
				case c.kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// deliver sends one durable message (a frame, or a notice when n is set).
func (c *conn) deliver(seq uint64, from string, payload []byte, n *sessionpb.Notice) bool {
	prev := c.lastSeq.Load()
	var m outMsg
	if n != nil {
		m.data = sessionwire.EncodeControl(sessionwire.Control{Type: sessionwire.TypeEvent, Seq: seq, PrevSeq: prev,
			Event: n.GetEvent(), Participant: n.GetParticipant(), Name: n.GetName(), Role: n.GetRole(), Reason: n.GetReason()})
	} else {
		b, err := sessionwire.AppendFrame(nil, sessionwire.Frame{Kind: sessionwire.KindDeliverDurable, Seq: seq, PrevSeq: prev, From: from, Payload: payload})
		if err != nil {
			return true
		}
		m = outMsg{binary: true, data: b}
	}
	if !c.send(m) {
		return false
	}
	c.lastSeq.Store(seq)
	if n != nil && n.GetEvent() == "ended" {
		c.left.Store(true) // nothing to detach from any more
		c.send(outMsg{closeCode: websocket.StatusNormalClosure, reason: "session ended"})
		return false
	}
	if n == nil {
		c.e.m.outDurable.Inc()
	}
	return true
}

// catchUp reads the session's stream after version through, up to version
// upTo (0 = to its end), with a consistent read, and delivers the events
// meant for this participant. It returns the new through, or false when the
// connection should end (the client then resumes elsewhere).
func (c *conn) catchUp(through, upTo uint64) (uint64, bool) {
	c.e.m.catchUps.Inc()
	stream := entity.StreamName(session.Kind, c.code)
	backoff := 20 * time.Millisecond
	deadline := time.Now().Add(c.e.cfg.CallTimeout)
	for upTo == 0 || through < upTo {
		ctx, cancel := context.WithTimeout(c.ctx, c.e.cfg.CallTimeout)
		evs, err := c.e.node.ReadStream(ctx, stream, through+1, readPage, true)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return through, false
			}
			if time.Now().After(deadline) {
				c.log.Warn("cannot read the session stream; closing so the client resumes elsewhere", "err", err)
				c.send(outMsg{closeCode: websocket.StatusTryAgainLater, reason: "log unavailable"})
				return through, false
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 500*time.Millisecond)
			continue
		}
		if len(evs) == 0 {
			if upTo != 0 {
				// A push named a seq the log does not have yet on a
				// consistent read: impossible unless the log lost it.
				c.log.Error("session stream ends before a pushed seq", "through", through, "want", upTo)
				c.send(outMsg{closeCode: websocket.StatusInternalError, reason: "internal"})
				return through, false
			}
			return through, true
		}
		for _, re := range evs {
			if upTo != 0 && re.Version > upTo {
				return through, true
			}
			ev, err := entity.DecodeEvent(re.Type, re.Data)
			if err != nil {
				c.log.Error("undecodable event in session stream", "version", re.Version, "err", err)
				c.send(outMsg{closeCode: websocket.StatusInternalError, reason: "internal"})
				return through, false
			}
			if d, ok := session.DeliverFor(c.code, c.participant, re.Version, 0, ev); ok {
				if !c.deliver(d.GetSeq(), d.GetFrom(), d.GetPayload(), d.GetNotice()) {
					return re.Version, false
				}
			}
			through = re.Version
			if session.LastFor(ev, c.participant) {
				// The participant left, the session ended, or the code was
				// reopened: nothing further in the stream is for this
				// connection.
				c.left.Store(true)
				c.send(outMsg{closeCode: websocket.StatusNormalClosure, reason: "session over for this participant"})
				return through, false
			}
		}
		if upTo == 0 && len(evs) < readPage {
			return through, true
		}
	}
	return through, true
}
