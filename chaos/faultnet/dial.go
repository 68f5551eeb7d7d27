package faultnet

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// DialFunc dials like net.Dialer.DialContext.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns a dial function for node `from` that applies the network's
// rules to connections to registered nodes and passes other dials to base
// unchanged (see the package documentation). base nil means
// (&net.Dialer{}).DialContext. Errors of base are returned unchanged; a dial
// refused by faultnet returns a *net.OpError wrapping a *BlockedError.
func (n *Network) Dialer(from string, base DialFunc) DialFunc {
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return n.dial(ctx, from, network, addr, func(ctx context.Context) (net.Conn, error) {
			return base(ctx, network, addr)
		})
	}
}

// StreamLayer wraps inner, the stream layer of node `from`, for
// raft.NewNetworkTransport: Dial goes through the network's rules like
// Dialer, while Accept, Close and Addr are inner's. When inner has a method
// DialContext(ctx, addr string) (net.Conn, error), like TCPStreamLayer, it
// is used so the dial's deadline carries over exactly.
func (n *Network) StreamLayer(from string, inner raft.StreamLayer) raft.StreamLayer {
	return &streamLayer{StreamLayer: inner, n: n, from: from}
}

type streamLayer struct {
	raft.StreamLayer
	n    *Network
	from string
}

type contextDialer interface {
	DialContext(ctx context.Context, addr string) (net.Conn, error)
}

// Dial implements raft.StreamLayer. A zero timeout means no timeout.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return s.n.dial(ctx, s.from, "tcp", string(address), func(ctx context.Context) (net.Conn, error) {
		if d, ok := s.StreamLayer.(contextDialer); ok {
			return d.DialContext(ctx, string(address))
		}
		left := timeout
		if dl, ok := ctx.Deadline(); ok {
			if left = time.Until(dl); left <= 0 {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr{"tcp", string(address)}, Err: context.DeadlineExceeded}
			}
		}
		return s.StreamLayer.Dial(address, left)
	})
}

// dial runs the handshake rules for a dial from `from` to addr, then base,
// and wraps the connection.
func (n *Network) dial(ctx context.Context, from, network, addr string, base func(context.Context) (net.Conn, error)) (net.Conn, error) {
	to, ok := n.target(from, network, addr)
	if !ok {
		return base(ctx)
	}
	link := Link{From: from, To: to}
	if err := n.handshake(ctx, link); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: stringAddr{network, addr}, Err: err}
	}
	inner, err := base(ctx)
	if err != nil {
		return nil, err
	}
	n.log.Debug("connected", "from", from, "to", to, "addr", addr)
	return newConn(n, link, inner), nil
}

// handshake waits out the rules a TCP handshake over link meets: both
// directions must be open (or the dial is refused, or waits with
// WithStallingDials), and the SYN / SYN-ACK exchange takes one round trip.
func (n *Network) handshake(ctx context.Context, link Link) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	stalled, waited := false, false
	for {
		blocked, isBlocked, changed := n.handshakeBlocked(link)
		if isBlocked {
			if !n.opts.stallDials {
				n.counter(link).refusedDials.Add(1)
				n.log.Debug("dial refused", "from", link.From, "to", link.To, "blocked", blocked.String())
				return &BlockedError{Link: blocked}
			}
			if !stalled {
				stalled = true
				n.log.Debug("dial stalled", "from", link.From, "to", link.To, "blocked", blocked.String())
			}
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				n.counter(link).refusedDials.Add(1)
				return &BlockedError{Link: blocked, Err: ctx.Err()}
			}
		}
		if waited {
			return nil
		}
		rtt := n.latency(link) + n.latency(link.Reverse())
		waited = true
		if rtt <= 0 {
			return nil
		}
		timer = time.NewTimer(rtt)
		select {
		case <-timer.C:
			// Check again: the link may have been cut during the handshake.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stringAddr is a net.Addr for an address known only as a string.
type stringAddr struct{ network, addr string }

func (a stringAddr) Network() string { return a.network }
func (a stringAddr) String() string  { return a.addr }

var _ raft.StreamLayer = (*streamLayer)(nil)
