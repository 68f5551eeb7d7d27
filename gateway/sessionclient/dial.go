package sessionclient

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/switchboard-io/switchboard/gateway/burstconn"
)

// dialedKey is the context key under which an attempt passes the slot
// (*atomic.Pointer[burstconn.Conn]) that the transport's dial fills with
// the connection it made.
type dialedKey struct{}

// burstDialer dials for a Session's HTTP transport and wraps every
// connection in a burstconn.Conn, handed to the attempt that asked through
// the dial context, so that the writer can send a burst of messages with one
// write. For https (not through a proxy) it does the TLS handshake itself,
// so that the burst sits above TLS and becomes full TLS records.
type burstDialer struct {
	net net.Dialer
	tls *tls.Config // Config.TLS; nil: the system's roots
}

func (d *burstDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return d.wrap(ctx, c), nil
}

func (d *burstDialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := d.tls.Clone()
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"} // a WebSocket upgrade is HTTP/1.1
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return d.wrap(ctx, tc), nil
}

func (d *burstDialer) wrap(ctx context.Context, c net.Conn) net.Conn {
	bc := burstconn.New(c)
	if slot, ok := ctx.Value(dialedKey{}).(*atomic.Pointer[burstconn.Conn]); ok {
		slot.Store(bc)
	}
	return bc
}
