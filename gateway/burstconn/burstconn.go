// Package burstconn sends a burst of WebSocket messages with one write.
//
// coder/websocket flushes every message it writes: over TLS that is one TLS
// record and one write system call per message, the largest single cost of
// relaying small frames. A Conn wraps the connection the WebSocket runs on
// (above TLS, so that one flush is also one train of full TLS records): the
// writer of a burst calls Hold, writes its messages, and calls Release, which
// sends everything collected in one write. Both ends use it: the session
// edge for what it pushes to clients, the client library for what it sends.
package burstconn

import (
	"net"
	"sync"
	"sync/atomic"
)

// MaxHeld bounds what a hold collects before it writes anyway.
const MaxHeld = 64 << 10

// Conn passes writes through, except between Hold and Release, when it
// collects them and sends them together at Release. Writes from other
// goroutines meanwhile (a library's pongs and close frames) are collected
// too and go out at Release, which the holder calls right after its burst.
// After a failed write every later write fails with the same error. A nil
// *Conn's Hold and Release do nothing, for callers whose connection could
// not be wrapped.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     []byte
	err     error
	writes  atomic.Uint64
}

// Writes returns how many writes reached the wrapped connection.
func (c *Conn) Writes() uint64 { return c.writes.Load() }

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		c.writes.Add(1)
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= MaxHeld {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Hold starts collecting writes.
func (c *Conn) Hold() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// Release writes what was collected and ends the hold.
func (c *Conn) Release() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *Conn) flushLocked() error {
	if len(c.buf) == 0 || c.err != nil {
		return c.err
	}
	c.writes.Add(1)
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
	}
	return err
}
