package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// remotingReceive is the one RPC protoactor's remote layer makes: a stream
// per peer address, opened by that address's endpoint writer.
const remotingReceive = "/remote.Remoting/Receive"

// DefaultEndpointPatience bounds how long an endpoint writer waits for a
// peer address that refuses or drops its connections; see patientEndpoints.
const DefaultEndpointPatience = 3 * time.Second

// frozenPatience bounds how long an endpoint writer waits for a peer address
// whose kernel accepted the TCP connection but which never completes the
// handshake: a frozen process (SIGSTOP, a VM pause, a long GC), which comes
// back — at the latest after it was declared dead, as a new actor system at
// the same address. gRPC's connection attempt is given as long.
const frozenPatience = 15 * time.Second

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
// attempt wait for the address instead, so that it connects to whichever
// actor system listens there once it does. The reconnect backoff is
// shortened to match: gRPC's default first retry is after 1 s.
func endpointDialOptions(patience time.Duration) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainStreamInterceptor(patientEndpoints(patience, frozenPatience)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: frozenPatience,
		}),
	}
}

// patientEndpoints returns a stream interceptor for protoactor's Remoting
// Receive stream. Contract: until the first message from the peer (its
// connect response) has been received, a failure to open the stream or to
// receive that message is retried — a new stream on the same connection,
// waiting for the connection to be ready, with the first message the writer
// sent (its connect request, which names the sender, not the peer) sent
// again. It gives up, returning the last error as without the interceptor,
// once the connection has spent patience failing or backing off between
// attempts (counted in 25 ms samples), or once frozen has passed in all: a
// peer that refuses connections gets patience, one whose kernel accepted
// the connection and which does not answer (frozen) — the connection stays
// in its attempt — gets up to frozen. Once the first message has arrived the
// stream is passed through, except that its end through the writer closing
// its own connection is reported as a clean end of stream (io.EOF; see
// RecvMsg). Other methods are not intercepted.
func patientEndpoints(patience, frozen time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != remotingReceive || patience <= 0 {
			return streamer(ctx, desc, cc, method, opts...)
		}
		p := &patientStream{
			parent: ctx, desc: desc, cc: cc, method: method, streamer: streamer,
			opts:     append(append([]grpc.CallOption(nil), opts...), grpc.WaitForReady(true)),
			start:    time.Now(),
			patience: patience, frozen: max(frozen, patience),
			watching: make(chan struct{}),
		}
		go p.watch()
		if err := p.open(); err != nil {
			p.stopWatching()
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
	parent           context.Context
	desc             *grpc.StreamDesc
	cc               *grpc.ClientConn
	method           string
	streamer         grpc.Streamer
	opts             []grpc.CallOption
	start            time.Time
	patience, frozen time.Duration
	watching         chan struct{} // closed (stopWatching) when the stream is established or given up
	stopOnce         sync.Once

	mu      sync.Mutex
	cancel  context.CancelFunc // cancels the current attempt's context
	settled bool               // established or given up: the watcher must not cancel

	cur         grpc.ClientStream
	first       any // the first message sent, re-sent on a new stream
	established bool
	sendFailed  atomic.Bool  // a send failed after the stream was established
	refused     atomic.Int64 // time.Duration the connection spent failing or backing off (watch)
}

// givenUp reports whether the attempt has run out of patience: the
// connection spent patience outside connection attempts (refused, reset,
// backing off), or frozen passed in all.
func (p *patientStream) givenUp() bool {
	return time.Since(p.start) >= p.frozen || time.Duration(p.refused.Load()) >= p.patience
}

// watchTick is how often the watcher samples the connection's state.
const watchTick = 25 * time.Millisecond

// watch adds up the time the connection is not in a connection attempt and
// cancels the current attempt once givenUp, until the stream is
// established.
func (p *patientStream) watch() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for {
		select {
		case <-p.watching:
			return
		case <-t.C:
		}
		if s := p.cc.GetState(); s != connectivity.Connecting && s != connectivity.Ready {
			p.refused.Add(int64(watchTick))
		}
		if p.givenUp() {
			p.mu.Lock()
			if p.cancel != nil && !p.settled {
				p.cancel()
			}
			p.mu.Unlock()
			return
		}
	}
}

// stopWatching ends the watcher; after it, the current attempt's context
// is the stream's for good.
func (p *patientStream) stopWatching() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.settled = true
		p.mu.Unlock()
		close(p.watching)
	})
}

// open opens a new underlying stream, waiting for the connection to be
// ready until givenUp.
func (p *patientStream) open() error {
	var lastErr error
	for {
		if p.givenUp() {
			if lastErr == nil {
				lastErr = errors.New("no ready connection")
			}
			return fmt.Errorf("open %s within its patience: %w", p.method, lastErr)
		}
		ctx, cancel := context.WithCancel(p.parent)
		p.mu.Lock()
		old := p.cancel
		p.cancel = cancel
		p.mu.Unlock()
		if old != nil {
			old() // the broken stream before this one
		}
		s, err := p.streamer(ctx, p.desc, p.cc, p.method, p.opts...)
		if err != nil {
			lastErr = err
			if p.parent.Err() != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond) // a stream that fails at once must not spin
			continue
		}
		p.cur = s
		return nil
	}
}

func (p *patientStream) SendMsg(m any) error {
	if p.established {
		err := p.cur.SendMsg(m)
		if err != nil {
			p.sendFailed.Store(true)
		}
		return err
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
		err := p.cur.RecvMsg(m)
		if err != nil && p.closedByWriter(err) {
			// Protoactor closed this writer's connection itself: the
			// writer was stopped because its endpoint was removed (or the
			// actor system stops). Its stream reader would publish an
			// EndpointTerminatedEvent for the address, and the endpoint
			// manager, which keys endpoints by address alone, would
			// remove the endpoint that replaced this one — whose writer,
			// stopping, would do the same to the next (chains of such
			// removals showed in chaos runs after rejoins). A clean end
			// of stream publishes nothing.
			return io.EOF
		}
		return err
	}
	for {
		err := p.cur.RecvMsg(m)
		if err == nil {
			p.established = true
			p.stopWatching()
			return nil
		}
		if p.parent.Err() != nil || p.givenUp() {
			p.stopWatching()
			return err
		}
		if oerr := p.open(); oerr != nil {
			p.stopWatching()
			return err
		}
		if p.first != nil {
			_ = p.cur.SendMsg(p.first) // a failure shows in the next RecvMsg
		}
	}
}

// closedByWriter tells whether err ended the stream because its own client
// connection was closed (protoactor's closeClientConn), not because the
// peer went away. A writer whose send failed stops itself the same way
// while still being the address's endpoint: its end must be reported.
func (p *patientStream) closedByWriter(err error) bool {
	return status.Code(err) == codes.Canceled && p.cc.GetState() == connectivity.Shutdown && !p.sendFailed.Load()
}

func (p *patientStream) Header() (metadata.MD, error) { return p.cur.Header() }
func (p *patientStream) Trailer() metadata.MD         { return p.cur.Trailer() }
func (p *patientStream) CloseSend() error             { return p.cur.CloseSend() }
func (p *patientStream) Context() context.Context     { return p.cur.Context() }
