package faultnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// TCPStreamLayer is a raft.StreamLayer over TCP, with optional TLS: it
// accepts on a listener the caller opened and dials with a net.Dialer (or a
// dial function such as Network.Dialer, see WithDialFunc). It is what a real
// node uses; tests wrap it with Network.StreamLayer. It is safe for
// concurrent use.
type TCPStreamLayer struct {
	ln        net.Listener // wrapped by tls.NewListener when TLS is on
	advertise net.Addr
	dial      DialFunc
	tls       *tls.Config // client side; nil: plain TCP
}

// TCPOption configures a TCPStreamLayer.
type TCPOption func(*tcpOptions)

type tcpOptions struct {
	localAddr net.Addr
	dial      DialFunc
}

// WithLocalAddr binds outgoing connections to addr (net.Dialer.LocalAddr),
// e.g. to 127.0.0.2 so that peers see a distinct source per node. It cannot
// be combined with WithDialFunc.
func WithLocalAddr(addr net.Addr) TCPOption {
	return func(o *tcpOptions) { o.localAddr = addr }
}

// WithDialFunc opens outgoing TCP connections with dial instead of a
// net.Dialer; TLS, if any, runs on top. Passing Network.Dialer puts faultnet
// under TLS, so faults hit the handshake and the encrypted stream.
func WithDialFunc(dial DialFunc) TCPOption {
	return func(o *tcpOptions) { o.dial = dial }
}

// NewTCPStreamLayer returns a stream layer accepting on l and advertising
// advertise, the host:port peers dial (empty: l's address). An advertised
// port 0 stands for l's port; an empty or unspecified host (0.0.0.0, ::) is
// an error, as peers cannot dial it. When tlsConfig is not nil both sides
// use it: the listener serves its certificate (and checks clients per its
// ClientAuth), and dials verify the peer against it, with ServerName
// defaulting to the host dialed. The layer owns l once this returns nil; on
// error, l is left open for the caller to close. Every problem with the
// arguments is reported at once.
func NewTCPStreamLayer(l net.Listener, advertise string, tlsConfig *tls.Config, opts ...TCPOption) (*TCPStreamLayer, error) {
	var o tcpOptions
	for _, opt := range opts {
		opt(&o)
	}
	var problems []error
	if l == nil {
		return nil, errors.New("faultnet: tcp stream layer: nil listener")
	}
	adv, err := advertiseAddr(l.Addr(), advertise)
	if err != nil {
		problems = append(problems, err)
	}
	if o.localAddr != nil && o.dial != nil {
		problems = append(problems, errors.New("WithLocalAddr and WithDialFunc cannot be combined: bind in the dial function"))
	}
	if tlsConfig != nil && len(tlsConfig.Certificates) == 0 && tlsConfig.GetCertificate == nil && tlsConfig.GetConfigForClient == nil {
		problems = append(problems, errors.New("tls config has no certificate for the listener (Certificates, GetCertificate or GetConfigForClient)"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("faultnet: tcp stream layer: %w", err)
	}
	t := &TCPStreamLayer{ln: l, advertise: adv, dial: o.dial}
	if t.dial == nil {
		t.dial = (&net.Dialer{LocalAddr: o.localAddr}).DialContext
	}
	if tlsConfig != nil {
		t.tls = tlsConfig.Clone()
		t.ln = tls.NewListener(l, tlsConfig.Clone())
	}
	return t, nil
}

// advertiseAddr checks and completes the advertised address.
func advertiseAddr(listen net.Addr, advertise string) (net.Addr, error) {
	if advertise == "" {
		advertise = listen.String()
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
	}
	if host == "" {
		return nil, fmt.Errorf("advertise address %q has no host", advertise)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("advertise address %q has an unspecified host that peers cannot dial", advertise)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: bad port: %w", advertise, err)
	}
	if p == 0 {
		ta, ok := listen.(*net.TCPAddr)
		if !ok || ta.Port == 0 {
			return nil, fmt.Errorf("advertise address %q has port 0 and the listener's port is unknown", advertise)
		}
		port = strconv.Itoa(ta.Port)
	}
	return stringAddr{"tcp", net.JoinHostPort(host, port)}, nil
}

// Accept implements net.Listener. With TLS the server's handshake runs in
// the connection's first Read or Write (so a slow client cannot hold up
// Accept); a dialer's Dial returns only once the accepting side has started
// reading, as raft's transport does at once.
func (t *TCPStreamLayer) Accept() (net.Conn, error) { return t.ln.Accept() }

// Close implements net.Listener: it closes the listener, not the
// connections already made.
func (t *TCPStreamLayer) Close() error { return t.ln.Close() }

// Addr implements net.Listener: it returns the advertised address.
func (t *TCPStreamLayer) Addr() net.Addr { return t.advertise }

// Dial implements raft.StreamLayer. A zero timeout means no timeout.
func (t *TCPStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return t.DialContext(ctx, string(address))
}

// DialContext connects to addr and, with TLS, completes the handshake before
// ctx ends. Errors of the dial are returned unchanged; handshake errors are
// wrapped.
func (t *TCPStreamLayer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	raw, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if t.tls == nil {
		return raw, nil
	}
	cfg := t.tls
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if cerr := raw.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("faultnet: tls handshake with %s: %w", addr, err)
	}
	return tc, nil
}

var _ raft.StreamLayer = (*TCPStreamLayer)(nil)
