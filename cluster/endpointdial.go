package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/metadata"
)

// remotingReceive is the one RPC protoactor's remote layer makes: a stream
// per peer address, opened by that address's endpoint writer.
const remotingReceive = "/remote.Remoting/Receive"

// DefaultEndpointPatience bounds how long an endpoint writer waits for a
// peer address to accept its stream (see patientEndpoints).
const DefaultEndpointPatience = 3 * time.Second

// endpointDialOptions are the gRPC dial options of the actor system's
// connections to its peers, on top of the transport credentials.
//
// Why: protoactor's endpoint writer (the pinned commit) connects once when it
// starts and, when that fails, sleeps a fixed 2 s before it gives up and
// lets a new writer be made; messages to the address wait in its mailbox
// meanwhile and are then dropped. A node that was frozen long enough to be
// declared dead comes back at the same address with a new actor system:
// the writers its peers had started towards it while it was frozen fail
// against the old system's closing listener, and for those 2 s every reply
// to the new system — its grain activation requests above all — is lost
// (docs/chaos.md). patientEndpoints makes the writer's one connection
// attempt wait for the address instead, up to patience, so that it connects
// to whichever actor system listens there once it does. The reconnect
// backoff is shortened to match: gRPC's default first retry is after 1 s.
func endpointDialOptions(patience time.Duration) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainStreamInterceptor(patientEndpoints(patience)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
}

// patientEndpoints returns a stream interceptor for protoactor's Remoting
// Receive stream. Contract: until the first message from the peer (its
// connect response) has been received, a failure to open the stream or to
// receive that message is retried — a new stream on the same connection,
// waiting for the connection to be ready, with the first message the writer
// sent (its connect request, which names the sender, not the peer) sent
// again — until patience has passed since the stream was asked for; then
// the last error is returned, as without the interceptor. Once the first
// message has arrived the stream is passed through untouched. Other methods
// are not intercepted.
func patientEndpoints(patience time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != remotingReceive || patience <= 0 {
			return streamer(ctx, desc, cc, method, opts...)
		}
		p := &patientStream{
			parent: ctx, desc: desc, cc: cc, method: method, streamer: streamer,
			opts:     append(append([]grpc.CallOption(nil), opts...), grpc.WaitForReady(true)),
			deadline: time.Now().Add(patience),
		}
		if err := p.open(); err != nil {
			return nil, err
		}
		return p, nil
	}
}

// patientStream is a client stream that re-opens itself until its first
// message arrives. SendMsg and RecvMsg follow grpc.ClientStream's rules
// (one sender, one receiver); before the first message arrives protoactor
// calls both from one goroutine, and cur is replaced only then.
type patientStream struct {
	parent   context.Context
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	deadline time.Time

	cur         grpc.ClientStream
	cancel      context.CancelFunc // cancels cur's context
	expire      *time.Timer        // cancels cur's context at the deadline while not established
	first       any                // the first message sent, re-sent on a new stream
	established bool
}

// open opens a new underlying stream, waiting for the connection to be
// ready until the deadline.
func (p *patientStream) open() error {
	var lastErr error
	for {
		left := time.Until(p.deadline)
		if left <= 0 {
			if lastErr == nil {
				lastErr = errors.New("no ready connection")
			}
			return fmt.Errorf("open %s within its patience: %w", p.method, lastErr)
		}
		ctx, cancel := context.WithCancel(p.parent)
		expire := time.AfterFunc(left, cancel)
		s, err := p.streamer(ctx, p.desc, p.cc, p.method, p.opts...)
		if err != nil {
			expire.Stop()
			cancel()
			lastErr = err
			if p.parent.Err() != nil {
				return err
			}
			continue
		}
		if p.cancel != nil {
			p.expire.Stop()
			p.cancel()
		}
		p.cur, p.cancel, p.expire = s, cancel, expire
		return nil
	}
}

func (p *patientStream) SendMsg(m any) error {
	if p.established {
		return p.cur.SendMsg(m)
	}
	if p.first == nil {
		p.first = m
	}
	// A failed send means the stream broke: RecvMsg learns why and
	// re-opens it, so the failure is not the caller's.
	_ = p.cur.SendMsg(m)
	return nil
}

func (p *patientStream) RecvMsg(m any) error {
	if p.established {
		return p.cur.RecvMsg(m)
	}
	for {
		err := p.cur.RecvMsg(m)
		if err == nil {
			p.established = true
			p.expire.Stop()
			return nil
		}
		if p.parent.Err() != nil || time.Now().After(p.deadline) {
			return err
		}
		if oerr := p.open(); oerr != nil {
			return err
		}
		if p.first != nil {
			_ = p.cur.SendMsg(p.first) // a failure shows in the next RecvMsg
		}
	}
}

func (p *patientStream) Header() (metadata.MD, error) { return p.cur.Header() }
func (p *patientStream) Trailer() metadata.MD         { return p.cur.Trailer() }
func (p *patientStream) CloseSend() error             { return p.cur.CloseSend() }
func (p *patientStream) Context() context.Context     { return p.cur.Context() }
