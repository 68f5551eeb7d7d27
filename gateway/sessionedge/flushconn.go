package sessionedge

import (
	"net"
	"sync"
)

// Listener wraps the session endpoint's listener (after TLS, so that one
// flush is one TLS record train) so that a connection's writer can send a
// burst of WebSocket messages with one write: coder/websocket flushes every
// message, which costs a TLS record and a system call each, the largest
// single cost of relaying frames. Serve the edge's Handler on it.
func (e *Edge) Listener(l net.Listener) net.Listener {
	return &flushListener{Listener: l, e: e}
}

type flushListener struct {
	net.Listener
	e *Edge
}

func (l *flushListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &flushConn{Conn: c, reg: &l.e.flushConns, key: c.RemoteAddr().String()}
	l.e.flushConns.Store(fc.key, fc)
	return fc, nil
}

// flushConn passes writes through, except between hold and release, when it
// collects them and sends them together at release. Writes from other
// goroutines meanwhile (the library's pongs and close frames) are collected
// too and go out at release, which the holder calls right after its burst.
type flushConn struct {
	net.Conn
	reg *sync.Map
	key string

	mu      sync.Mutex
	holding bool
	buf     []byte
	err     error
}

// maxHeld bounds what a hold collects before it writes anyway.
const maxHeld = 64 << 10

func (c *flushConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= maxHeld {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *flushConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// release writes what was collected and ends the hold.
func (c *flushConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *flushConn) flushLocked() error {
	if len(c.buf) == 0 || c.err != nil {
		return c.err
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
	}
	return err
}

func (c *flushConn) Close() error {
	c.reg.CompareAndDelete(c.key, c)
	return c.Conn.Close()
}

// flushConnFor finds the connection of a request served through Listener.
func (e *Edge) flushConnFor(remoteAddr string) *flushConn {
	if v, ok := e.flushConns.Load(remoteAddr); ok {
		return v.(*flushConn)
	}
	return nil
}
