package faultnet

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// readChunk is the most one read of the underlying connection takes.
const readChunk = 16 << 10

// conn is the dialing end of a connection between two registered nodes. Its
// Writes queue segments on out, which writeLoop hands to the socket when they
// are due and link is open; readLoop reads the socket into in, from which
// Read delivers segments when they are due and rev is open.
type conn struct {
	n     *Network
	inner net.Conn
	link  Link // dialer -> target: governs Write
	rev   Link // target -> dialer: governs Read
	fwd   *counters
	back  *counters

	out lane // filled by Write, drained by writeLoop
	in  lane // filled by readLoop, drained by Read

	// rmu and wmu serialise Reads and Writes, as a socket does. A call
	// waiting on them needs no deadline of its own: the holder waits on the
	// same deadline and close, so it returns first.
	rmu, wmu sync.Mutex
	rd, wd   deadline

	done     chan struct{} // closed by Close or reset: calls fail with doneErr
	doneOnce sync.Once
	doneErr  error // written before done is closed

	abort     chan struct{} // closed when the pumps must stop at once
	abortOnce sync.Once
	innerOnce sync.Once
	closeOnce sync.Once
	pumps     atomic.Int32 // pumps still running; the last one forgets c
}

// segment is a chunk of data and when it may be delivered.
type segment struct {
	data []byte
	due  time.Time
	err  error // receive side only: the error ending the stream, after data
}

// lane is a FIFO of segments with a byte budget, shared by one producer and
// one consumer. Delivery times never decrease along the lane, so data keeps
// its order whatever delays the segments drew.
type lane struct {
	mu      sync.Mutex
	segs    []segment
	size    int
	max     int
	lastDue time.Time
	wake    chan struct{} // closed and replaced whenever segs changes

	// Send side only.
	err     error       // sticky error of the underlying Write
	closing bool        // Close was called: drain, then close the socket
	exited  bool        // writeLoop has returned
	linger  *time.Timer // resets the connection if draining takes too long
}

func newLane(max int) lane { return lane{max: max, wake: make(chan struct{})} }

// signalLocked wakes the lane's waiters. l.mu must be held.
func (l *lane) signalLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// dueLocked returns the delivery time of a segment sent now with latency d.
// l.mu must be held.
func (l *lane) dueLocked(d time.Duration) time.Time {
	due := time.Now().Add(d)
	if due.Before(l.lastDue) {
		due = l.lastDue
	}
	l.lastDue = due
	return due
}

// hasRoom reports whether the lane has room (or a sticky error to report).
func (l *lane) hasRoom() (bool, <-chan struct{}, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size < l.max || l.err != nil, l.wake, time.Time{}
}

// enqueue copies as much of p as the lane has room for into a new segment
// with latency d, and returns how much it took.
func (l *lane) enqueue(p []byte, d time.Duration) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	k := min(len(p), l.max-l.size)
	if k <= 0 {
		return 0, nil
	}
	l.segs = append(l.segs, segment{data: bytes.Clone(p[:k]), due: l.dueLocked(d)})
	l.size += k
	l.signalLocked()
	return k, nil
}

// deliver appends what one read of the socket returned, with latency d.
func (l *lane) deliver(data []byte, err error, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.segs = append(l.segs, segment{data: data, err: err, due: l.dueLocked(d)})
	l.size += len(data)
	l.signalLocked()
}

// head returns the first segment, if any, or a channel closed when one
// arrives.
func (l *lane) head() (segment, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return segment{}, false, l.wake
	}
	return l.segs[0], true, nil
}

// popLocked removes the first segment. l.mu must be held.
func (l *lane) popLocked() {
	l.size -= len(l.segs[0].data)
	l.segs[0] = segment{}
	l.segs = l.segs[1:]
	l.signalLocked()
}

// take copies the first segment's data into p, or returns its error once its
// data is gone (the error stays, as a socket keeps returning it).
func (l *lane) take(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.segs[0]
	if len(s.data) == 0 {
		return 0, s.err
	}
	k := copy(p, s.data)
	s.data = s.data[k:]
	l.size -= k
	if len(s.data) == 0 && s.err == nil {
		l.popLocked()
	} else {
		l.signalLocked()
	}
	return k, nil
}

// deadline is a settable point in time whose changes wake waiters.
type deadline struct {
	mu      sync.Mutex
	t       time.Time
	changed chan struct{} // closed and replaced by set
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.changed != nil {
		close(d.changed)
	}
	d.changed = make(chan struct{})
}

// get returns the deadline (zero: none) and a channel closed when it
// changes. A nil deadline never passes.
func (d *deadline) get() (time.Time, <-chan struct{}) {
	if d == nil {
		return time.Time{}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.t, d.changed
}

// condition reports whether a waiter may go on. When it may not, it returns
// a channel closed once the answer may have changed and/or a time at which
// to ask again (nil and zero: only stop or the deadline end the wait).
type condition func() (ok bool, wake <-chan struct{}, at time.Time)

// wait blocks until cond holds, stop is closed (errStopped) or dl passes
// (os.ErrDeadlineExceeded), checked in that order.
func wait(stop <-chan struct{}, dl *deadline, cond condition) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-stop:
			return errStopped
		default:
		}
		until, dlChanged := dl.get()
		if !until.IsZero() && !time.Now().Before(until) {
			return os.ErrDeadlineExceeded
		}
		ok, wake, at := cond()
		if ok {
			return nil
		}
		next := until
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next))
			}
			tick = timer.C
		}
		select {
		case <-stop:
		case <-dlChanged:
		case <-wake:
		case <-tick:
		}
	}
}

func newConn(n *Network, link Link, inner net.Conn) *conn {
	c := &conn{
		n:     n,
		inner: inner,
		link:  link,
		rev:   link.Reverse(),
		fwd:   n.counter(link),
		back:  n.counter(link.Reverse()),
		out:   newLane(n.opts.bufferSize),
		in:    newLane(n.opts.bufferSize),
		done:  make(chan struct{}),
		abort: make(chan struct{}),
	}
	c.pumps.Store(2)
	n.track(c)
	go c.writeLoop()
	go c.readLoop()
	return c
}

// Read implements net.Conn. It returns data only once it is due and rev is
// open; see the package documentation.
func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	stalled := false
	err := wait(c.done, &c.rd, func() (bool, <-chan struct{}, time.Time) {
		if len(p) == 0 {
			return true, nil, time.Time{}
		}
		s, ok, wake := c.in.head()
		if !ok {
			return false, wake, time.Time{}
		}
		if time.Now().Before(s.due) {
			return false, nil, s.due
		}
		open, changed := c.n.linkOpen(c.rev)
		if !open {
			if !stalled {
				stalled = true
				c.back.stalledReads.Add(1)
				c.n.log.Debug("read stalled", "from", c.rev.From, "to", c.rev.To)
			}
			return false, changed, time.Time{}
		}
		return true, nil, time.Time{}
	})
	if err != nil {
		return 0, c.waitError("read", err, c.rev)
	}
	if len(p) == 0 {
		return 0, nil
	}
	k, err := c.in.take(p)
	c.back.bytes.Add(int64(k))
	return k, err
}

// Write implements net.Conn. It returns once all of p is queued (or fails);
// see the package documentation for when it stalls.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	stalled := false
	cond := func() (bool, <-chan struct{}, time.Time) {
		open, changed := c.n.linkOpen(c.link)
		if !open {
			if !stalled {
				stalled = true
				c.fwd.stalledWrites.Add(1)
				c.n.log.Debug("write stalled", "from", c.link.From, "to", c.link.To)
			}
			return false, changed, time.Time{}
		}
		return c.out.hasRoom()
	}
	if len(p) == 0 {
		cond = func() (bool, <-chan struct{}, time.Time) { return true, nil, time.Time{} }
	}
	written := 0
	for {
		if err := wait(c.done, &c.wd, cond); err != nil {
			return written, c.waitError("write", err, c.link)
		}
		k, err := c.out.enqueue(p[written:], c.n.latency(c.link))
		written += k
		if err != nil || written == len(p) {
			return written, err
		}
	}
}

// waitError turns the error of wait into what the caller returns.
func (c *conn) waitError(op string, err error, l Link) error {
	if errors.Is(err, errStopped) {
		return c.opError(op, c.doneErr)
	}
	if open, _ := c.n.linkOpen(l); !open {
		err = &BlockedError{Link: l, Err: err}
	}
	return c.opError(op, err)
}

func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.inner.LocalAddr().Network(), Source: c.inner.LocalAddr(), Addr: c.inner.RemoteAddr(), Err: err}
}

// Close implements net.Conn. It returns at once; see the package
// documentation for what happens to data already written. Calls after the
// first return an error matching net.ErrClosed.
func (c *conn) Close() error {
	first := false
	c.closeOnce.Do(func() { first = true })
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	c.stop(net.ErrClosed)
	l := &c.out
	l.mu.Lock()
	l.closing = true
	idle := l.exited || len(l.segs) == 0
	if !idle {
		l.linger = time.AfterFunc(c.n.opts.linger, func() {
			c.n.log.Debug("linger expired, resetting", "from", c.link.From, "to", c.link.To)
			c.kill()
		})
	}
	l.signalLocked()
	l.mu.Unlock()
	c.n.log.Debug("closed", "from", c.link.From, "to", c.link.To, "flushing", !idle)
	if idle {
		return c.closeInner(false)
	}
	return nil
}

// reset closes c abortively (ResetConnections).
func (c *conn) reset() {
	c.stop(ErrReset)
	c.fwd.resets.Add(1)
	c.kill()
	c.n.log.Debug("connection reset", "from", c.link.From, "to", c.link.To)
}

// stop fails the calls waiting on c, and later ones, with err.
func (c *conn) stop(err error) {
	c.doneOnce.Do(func() {
		c.doneErr = err
		close(c.done)
	})
}

// kill closes the socket abortively, dropping queued data, and stops the
// pumps. The socket is closed first so that a pump woken by abort cannot
// close it gracefully instead.
func (c *conn) kill() {
	if err := c.closeInner(true); err != nil {
		c.n.log.Debug("close after reset", "from", c.link.From, "to", c.link.To, "err", err)
	}
	c.abortOnce.Do(func() { close(c.abort) })
}

// closeInner closes the socket once; abortive sets SO_LINGER 0 first so that
// the peer sees an RST.
func (c *conn) closeInner(abortive bool) error {
	var err error
	c.innerOnce.Do(func() {
		if abortive {
			if lerr := setLingerZero(c.inner); lerr != nil {
				c.n.log.Debug("set linger", "from", c.link.From, "to", c.link.To, "err", lerr)
			}
		}
		err = c.inner.Close()
	})
	return err
}

// setLingerZero sets SO_LINGER 0 on the TCP connection under c, looking
// through wrappers such as *tls.Conn.
func setLingerZero(c net.Conn) error {
	for {
		switch v := c.(type) {
		case interface{ SetLinger(int) error }:
			return v.SetLinger(0)
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// writeLoop hands queued segments to the socket when they are due and the
// link is open. After Close it drains the lane, then closes the socket.
func (c *conn) writeLoop() {
	defer c.pumpDone()
	for {
		var s segment
		err := wait(c.abort, nil, func() (bool, <-chan struct{}, time.Time) {
			l := &c.out
			l.mu.Lock()
			defer l.mu.Unlock()
			switch {
			case len(l.segs) > 0:
				s = l.segs[0]
				return true, nil, time.Time{}
			case l.closing:
				return true, nil, time.Time{} // drained: s stays empty
			}
			return false, l.wake, time.Time{}
		})
		if err != nil || s.data == nil {
			c.writeLoopExit(nil)
			return
		}
		err = wait(c.abort, nil, func() (bool, <-chan struct{}, time.Time) {
			if time.Now().Before(s.due) {
				return false, nil, s.due
			}
			open, changed := c.n.linkOpen(c.link)
			return open, changed, time.Time{}
		})
		if err != nil {
			c.writeLoopExit(nil)
			return
		}
		if _, err := c.inner.Write(s.data); err != nil {
			c.writeLoopExit(err)
			return
		}
		c.fwd.bytes.Add(int64(len(s.data)))
		c.out.mu.Lock()
		c.out.popLocked()
		c.out.mu.Unlock()
	}
}

// writeLoopExit records why writeLoop ends and, if Close was called, closes
// the socket (Close leaves that to writeLoop while data is queued).
func (c *conn) writeLoopExit(err error) {
	l := &c.out
	l.mu.Lock()
	l.exited = true
	if err != nil {
		l.err = err
		l.signalLocked()
	}
	closing, linger := l.closing, l.linger
	l.mu.Unlock()
	if err != nil {
		c.n.log.Debug("write failed", "from", c.link.From, "to", c.link.To, "err", err)
	}
	if !closing {
		return
	}
	if linger != nil {
		linger.Stop()
	}
	if err := c.closeInner(false); err != nil {
		c.n.log.Debug("close after flush", "from", c.link.From, "to", c.link.To, "err", err)
	}
}

// readLoop reads the socket into the receive lane while it has room. It ends
// at the first read error, which it queues for Read, or when c is closed.
func (c *conn) readLoop() {
	defer c.pumpDone()
	buf := make([]byte, readChunk)
	for {
		if err := wait(c.done, nil, c.in.hasRoom); err != nil {
			return
		}
		k, err := c.inner.Read(buf)
		if k > 0 || err != nil {
			var data []byte
			if k > 0 {
				data = bytes.Clone(buf[:k])
			}
			c.in.deliver(data, err, c.n.latency(c.rev))
		}
		if err != nil {
			return
		}
	}
}

// pumpDone forgets c once both pumps have returned.
func (c *conn) pumpDone() {
	if c.pumps.Add(-1) == 0 {
		c.n.forget(c)
	}
}

// LocalAddr implements net.Conn.
func (c *conn) LocalAddr() net.Addr { return c.inner.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *conn) RemoteAddr() net.Addr { return c.inner.RemoteAddr() }

// SetDeadline implements net.Conn. A new deadline applies to calls already
// waiting, as on a socket.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.checkOpen("set deadline"); err != nil {
		return err
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *conn) SetReadDeadline(t time.Time) error {
	if err := c.checkOpen("set read deadline"); err != nil {
		return err
	}
	c.rd.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if err := c.checkOpen("set write deadline"); err != nil {
		return err
	}
	c.wd.set(t)
	return nil
}

func (c *conn) checkOpen(op string) error {
	select {
	case <-c.done:
		return c.opError(op, c.doneErr)
	default:
		return nil
	}
}

var _ net.Conn = (*conn)(nil)
