package sessionedge

import (
	"net"
	"sync"

	"github.com/switchboard-io/switchboard/gateway/burstconn"
)

// Listener wraps the session endpoint's listener (after TLS, so that one
// flush is one TLS record train) so that a connection's writer can send a
// burst of WebSocket messages with one write (package burstconn). Serve the
// edge's Handler on it.
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
	fc := &flushConn{Conn: burstconn.New(c), reg: &l.e.flushConns, key: c.RemoteAddr().String()}
	l.e.flushConns.Store(fc.key, fc)
	return fc, nil
}

// flushConn is a burstconn.Conn registered by remote address, so that the
// handler of a request served through Listener finds its connection.
type flushConn struct {
	*burstconn.Conn
	reg *sync.Map
	key string
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
