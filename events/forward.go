package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/fsm"
)

// forwardedKey marks a request forwarded by another node: the receiver must
// not forward it again (no forwarding loops while leadership moves); it
// answers UNAVAILABLE instead and the original node retries.
const forwardedKey = "x-switchboard-forwarded"

var errForwardTransport = errors.New("events: forwarding failed")

// forwarder sends commands to the leader's Log API over one Submit stream
// per leader address: what concurrent callers queue while a message is being
// sent goes out together, and each caller gets its result as soon as the
// leader has it, so the per-request cost of gRPC on both nodes is paid once
// per batch and no command waits for another's. A leader that does not serve
// Submit (an older build, during a rolling upgrade) gets unary Forward calls
// instead, packed the same way, a few in flight.
type forwarder struct {
	n       *Node
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	streams map[string]*SubmitClient
	unary   map[string]time.Time      // when a leader answered Submit with UNIMPLEMENTED
	queues  map[string]chan *proposal // unary Forward senders
}

// Forwarding batch bounds and pipelining depth.
const (
	forwardMaxCommands = 512
	forwardMaxBytes    = 4 << 20
	forwardInFlight    = 4
)

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, conns: map[string]*grpc.ClientConn{}, streams: map[string]*SubmitClient{},
		unary: map[string]time.Time{}, queues: map[string]chan *proposal{}}
}

// unaryFor is how long (ns) a leader that answered Submit with
// UNIMPLEMENTED gets unary Forward calls before a stream is tried again (it
// may have been upgraded in place): a minute; tests shorten it.
var unaryFor atomic.Int64

func init() { unaryFor.Store(int64(time.Minute)) }

// stream returns the working Submit stream to addr, opening one if needed,
// or nil while addr gets unary Forward calls.
func (f *forwarder) stream(addr string) (*SubmitClient, error) {
	f.mu.Lock()
	sc, since := f.streams[addr], f.unary[addr]
	f.mu.Unlock()
	if !since.IsZero() && time.Since(since) < time.Duration(unaryFor.Load()) {
		return nil, nil
	}
	if sc != nil && sc.Err() == nil {
		return sc, nil
	}
	c, err := f.client(addr)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if sc := f.streams[addr]; sc != nil && sc.Err() == nil {
		return sc, nil
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), forwardedKey, f.n.cfg.NodeID)
	sc, err = openSubmit(ctx, c,
		func(msg string) error { return fmt.Errorf("%w: %s: %s", errForwardTransport, addr, msg) },
		func(err error) error {
			if status.Code(err) == codes.Unimplemented {
				f.mu.Lock()
				f.unary[addr] = time.Now()
				f.mu.Unlock()
			}
			// Every command carries an id: whatever broke the stream, the
			// caller retries (at the same or a new leader).
			return fmt.Errorf("%w: submit stream to %s: %w", errForwardTransport, addr, err)
		})
	if err != nil {
		return nil, err
	}
	f.streams[addr] = sc
	return sc, nil
}

// dropStream ends the stream to addr (leadership moved away from it): its
// commands in flight fail and their callers retry at the new leader.
func (f *forwarder) dropStream(addr string) {
	f.mu.Lock()
	sc := f.streams[addr]
	delete(f.streams, addr)
	f.mu.Unlock()
	if sc != nil {
		sc.Close()
	}
}

// queue returns the queue feeding Forward calls to addr, starting its
// sender on first use.
func (f *forwarder) queue(addr string) (chan *proposal, error) {
	f.mu.Lock()
	q, ok := f.queues[addr]
	f.mu.Unlock()
	if ok {
		return q, nil
	}
	c, err := f.client(addr)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if q, ok := f.queues[addr]; ok {
		return q, nil
	}
	q = make(chan *proposal, 4096)
	f.queues[addr] = q
	f.n.wg.Add(1)
	go f.send(addr, c, q)
	return q, nil
}

// send drains q into Forward calls until the node closes.
func (f *forwarder) send(addr string, c eventspb.LogClient, q chan *proposal) {
	defer f.n.wg.Done()
	sem := make(chan struct{}, forwardInFlight)
	var calls sync.WaitGroup
	defer calls.Wait()
	for {
		// Take a slot first: while every slot is busy, callers keep queueing
		// and the next call carries all of them.
		select {
		case sem <- struct{}{}:
		case <-f.n.closed:
			return
		}
		var first *proposal
		select {
		case first = <-q:
		case <-f.n.closed:
			return
		}
		props := fillBatch(first, q, forwardMaxCommands, forwardMaxBytes)
		calls.Add(1)
		go func() {
			defer func() { <-sem; calls.Done() }()
			f.call(addr, c, props)
		}()
	}
}

// call sends one Forward and hands each proposal its result.
func (f *forwarder) call(addr string, c eventspb.LogClient, props []*proposal) {
	req := &eventspb.ForwardRequest{Commands: make([]*eventspb.Command, len(props))}
	for i, p := range props {
		req.Commands[i] = commandToProto(p.cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.n.cfg.ApplyTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, f.n.cfg.NodeID)
	f.n.metrics.forwarded.Add(float64(len(props)))
	resp, err := c.Forward(ctx, req)
	if err != nil {
		fail(props, transportErr(addr, err))
		return
	}
	if len(resp.Results) != len(props) {
		fail(props, fmt.Errorf("%w: %s answered %d results for %d commands", errForwardTransport, addr, len(resp.Results), len(props)))
		return
	}
	for i, p := range props {
		r := resp.Results[i]
		if r.GetCode() == eventspb.Code_CODE_UNAVAILABLE {
			p.out <- proposalResult{err: fmt.Errorf("%w: %s: %s", errForwardTransport, addr, r.GetMessage())}
			continue
		}
		p.out <- proposalResult{res: ResultFromAppendResponse(r)}
	}
}

func commandToProto(c fsm.Command) *eventspb.Command {
	if c.Claim != nil {
		return &eventspb.Command{Command: &eventspb.Command_Claim{Claim: &eventspb.ClaimRequest{Stream: c.Claim.Stream, ClaimId: idBytes(c.Claim.ID)}}}
	}
	return &eventspb.Command{Command: &eventspb.Command_Append{Append: AppendToProto(c.Append)}}
}

func commandFromProto(c *eventspb.Command) (fsm.Command, error) {
	switch x := c.GetCommand().(type) {
	case *eventspb.Command_Append:
		a, err := AppendFromProto(x.Append)
		if err != nil {
			return fsm.Command{}, err
		}
		return fsm.Command{Append: &a}, nil
	case *eventspb.Command_Claim:
		id, err := idFromBytes(x.Claim.GetClaimId())
		if err != nil {
			return fsm.Command{}, err
		}
		return fsm.Command{Claim: &fsm.Claim{Stream: x.Claim.GetStream(), ID: id}}, nil
	}
	return fsm.Command{}, fmt.Errorf("%w: empty command", ErrInvalid)
}

func (f *forwarder) client(addr string) (eventspb.LogClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.n.closed:
		// close has run or will run: a new connection would leak.
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	default:
	}
	if c, ok := f.conns[addr]; ok {
		return eventspb.NewLogClient(c), nil
	}
	opts := f.n.cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", errForwardTransport, addr, err)
	}
	f.conns[addr] = c
	return eventspb.NewLogClient(c), nil
}

// close closes the connections; the senders stop when the node closes.
func (f *forwarder) close() {
	f.mu.Lock()
	streams := f.streams
	f.streams = map[string]*SubmitClient{}
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = map[string]*grpc.ClientConn{}
	f.mu.Unlock()
	for _, sc := range streams {
		sc.Close()
	}
}

// forward gets cmd applied by the leader at addr, packed with the commands
// of concurrent callers. The command must carry an id (retries are safe).
func (f *forwarder) forward(ctx context.Context, addr string, cmd fsm.Command) (fsm.Result, error) {
	p := &proposal{cmd: cmd, size: commandSize(cmd), out: make(chan proposalResult, 1)}
	sc, err := f.stream(addr)
	if err != nil {
		return fsm.Result{}, err
	}
	if sc != nil {
		if err := sc.enqueue(ctx, p); err != nil {
			return fsm.Result{}, err
		}
		f.n.metrics.forwarded.Inc()
	} else {
		q, err := f.queue(addr)
		if err != nil {
			return fsm.Result{}, err
		}
		select {
		case q <- p:
		case <-ctx.Done():
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-f.n.closed:
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		}
	}
	for {
		moved := f.n.leaderWait()
		if cur, ok := f.n.leaderAPI(); !ok || cur != addr {
			// The leader at addr is gone or deposed (often unreachable: a
			// one-way partition leaves the call hanging until its deadline).
			// The command carries an id, so the caller's retry at the new
			// leader is applied at most once whether or not this copy
			// commits; waiting here stalled a session grain for the whole
			// apply timeout (5 s) after the leader had moved.
			f.n.metrics.forwardsAbandoned.Inc()
			f.dropStream(addr)
			return fsm.Result{}, fmt.Errorf("%w: forwarded to %s: %w; retrying at the new leader", errForwardTransport, addr, errLeaderMoved)
		}
		select {
		case r := <-p.out:
			return r.res, r.err
		case <-ctx.Done():
			return fsm.Result{}, fmt.Errorf("%w: forwarded to %s: outcome unknown: %w", ErrUnavailable, addr, ctx.Err())
		case <-f.n.closed:
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		case <-moved:
		}
	}
}

func (f *forwarder) readIndex(ctx context.Context, addr string) (uint64, error) {
	c, err := f.client(addr)
	if err != nil {
		return 0, err
	}
	// A read has no effect to lose: when leadership moves away from addr
	// the call is dropped and retried at the new leader at once (a leader
	// that hears nothing any more would hold it until the caller's
	// deadline).
	watched, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		for {
			moved := f.n.leaderWait()
			if cur, ok := f.n.leaderAPI(); !ok || cur != addr {
				cancel(errLeaderMoved)
				return
			}
			select {
			case <-watched.Done():
				return
			case <-moved:
			}
		}
	}()
	resp, err := c.ReadIndex(metadata.AppendToOutgoingContext(watched, forwardedKey, f.n.cfg.NodeID), &eventspb.ReadIndexRequest{})
	if err != nil {
		if errors.Is(context.Cause(watched), errLeaderMoved) {
			return 0, fmt.Errorf("%w: read index from %s: %w", errForwardTransport, addr, errLeaderMoved)
		}
		return 0, transportErr(addr, err)
	}
	return resp.Index, nil
}

var errLeaderMoved = errors.New("leadership moved to another node")

// transportErr classifies a gRPC error from a forwarded call: anything but an
// invalid-argument answer is retryable (the command carries an id, so a retry
// is never applied twice).
func transportErr(addr string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ErrInvalid, st.Message())
	case codes.Canceled, codes.DeadlineExceeded:
		return fmt.Errorf("%w: forwarded to %s: outcome unknown: %w", ErrUnavailable, addr, err)
	}
	return fmt.Errorf("%w: %s: %w", errForwardTransport, addr, err)
}

func idBytes(id fsm.AppendID) []byte {
	if id.IsZero() {
		return nil
	}
	b := id
	return b[:]
}

func idFromBytes(b []byte) (fsm.AppendID, error) {
	var id fsm.AppendID
	switch len(b) {
	case 0:
		return id, nil
	case len(id):
		copy(id[:], b)
		return id, nil
	}
	return id, fmt.Errorf("%w: append id is %d bytes, want 16 or none", ErrInvalid, len(b))
}

// AppendToProto converts an append to its wire form.
func AppendToProto(a *fsm.Append) *eventspb.AppendRequest {
	req := &eventspb.AppendRequest{
		Stream:          a.Stream,
		ExpectedKind:    eventspb.ExpectedKind(a.Expected.Kind),
		ExpectedVersion: a.Expected.Version,
		Epoch:           a.Epoch,
		AppendId:        idBytes(a.ID),
		Events:          make([]*eventspb.Event, len(a.Events)),
	}
	for i, e := range a.Events {
		req.Events[i] = &eventspb.Event{Type: e.Type, Data: e.Data, Meta: e.Meta}
	}
	return req
}

// AppendFromProto converts the wire form of an append, rejecting malformed
// fields (the remaining rules are checked by fsm.ValidateCommand).
func AppendFromProto(req *eventspb.AppendRequest) (fsm.Append, error) {
	id, err := idFromBytes(req.GetAppendId())
	if err != nil {
		return fsm.Append{}, err
	}
	a := fsm.Append{
		Stream:   req.GetStream(),
		Expected: fsm.Expected{Kind: fsm.ExpectedKind(req.GetExpectedKind()), Version: req.GetExpectedVersion()},
		Epoch:    req.GetEpoch(),
		ID:       id,
		Events:   make([]fsm.Event, len(req.GetEvents())),
	}
	if int32(req.GetExpectedKind()) < 0 || int32(req.GetExpectedKind()) > 255 {
		return fsm.Append{}, fmt.Errorf("%w: unknown expected-version form %d", ErrInvalid, req.GetExpectedKind())
	}
	for i, e := range req.GetEvents() {
		a.Events[i] = fsm.Event{Type: e.GetType(), Data: e.GetData(), Meta: e.GetMeta()}
	}
	return a, nil
}

// ResultFromAppendResponse converts a wire response to a result.
func ResultFromAppendResponse(r *eventspb.AppendResponse) fsm.Result {
	return fsm.Result{
		Code: fsm.Code(r.GetCode()), Message: r.GetMessage(), Version: r.GetVersion(), Epoch: r.GetEpoch(),
		FirstPosition: r.GetFirstPosition(), LastPosition: r.GetLastPosition(), Duplicate: r.GetDuplicate(),
	}
}

func appendResponse(r fsm.Result) *eventspb.AppendResponse {
	return &eventspb.AppendResponse{
		Code: eventspb.Code(r.Code), Message: r.Message, Version: r.Version, Epoch: r.Epoch,
		FirstPosition: r.FirstPosition, LastPosition: r.LastPosition, Duplicate: r.Duplicate,
	}
}

// API serves the Log gRPC service for a node. Register it on the node's
// gRPC server with eventspb.RegisterLogServer(s, node.API()).
type API struct {
	eventspb.UnimplementedLogServer
	n *Node
}

// API returns the node's Log gRPC service.
func (n *Node) API() *API { return &API{n: n} }

func forwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// statusErr maps node errors to gRPC status for transport-level failures.
func statusErr(err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrTooLarge):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// run returns the result of a command a remote caller sent: proposed
// locally when this node leads, else (for first-hop requests) forwarded.
// fromNode says the caller is another node forwarding (see forwarded).
func (s *API) run(ctx context.Context, cmd fsm.Command, fromNode bool) (fsm.Result, error) {
	if fromNode {
		// Second hop: only the leader may answer; never forward again.
		if err := fsm.ValidateCommand(cmd, s.n.cfg.Limits); err != nil {
			return fsm.Result{}, err
		}
		if !s.n.IsLeader() {
			return fsm.Result{}, errNotLeader
		}
		return s.n.batcher.submit(ctx, cmd)
	}
	return s.n.propose(ctx, cmd)
}

// Append implements eventspb.LogServer.
func (s *API) Append(ctx context.Context, req *eventspb.AppendRequest) (*eventspb.AppendResponse, error) {
	a, err := AppendFromProto(req)
	if err != nil {
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: err.Error()}, nil
	}
	return s.answer(ctx, fsm.Command{Append: &a}, forwarded(ctx))
}

// answer runs a command a remote caller sent (Append, Claim, a command of
// a Submit stream): a missing id is picked here, business outcomes come back
// as the response, anything else as a gRPC status.
func (s *API) answer(ctx context.Context, cmd fsm.Command, fromNode bool) (*eventspb.AppendResponse, error) {
	switch {
	case cmd.Append != nil && cmd.Append.ID.IsZero():
		cmd.Append.ID = NewAppendID()
	case cmd.Claim != nil && cmd.Claim.ID.IsZero():
		cmd.Claim.ID = NewAppendID()
	}
	start := time.Now()
	res, err := s.run(ctx, cmd, fromNode)
	if cmd.Append != nil {
		s.n.metrics.observeAppend(start, err)
	}
	if err != nil {
		return businessOrStatus(err)
	}
	return appendResponse(res), nil
}

// businessOrStatus turns validation failures into a business answer
// (status OK, code INVALID / TOO_LARGE) and everything else into a status.
func businessOrStatus(err error) (*eventspb.AppendResponse, error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_TOO_LARGE, Message: err.Error()}, nil
	case errors.Is(err, ErrInvalid):
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: err.Error()}, nil
	}
	return nil, statusErr(err)
}

// Claim implements eventspb.LogServer.
func (s *API) Claim(ctx context.Context, req *eventspb.ClaimRequest) (*eventspb.ClaimResponse, error) {
	id, err := idFromBytes(req.GetClaimId())
	if err != nil {
		return &eventspb.ClaimResponse{Code: eventspb.Code_CODE_INVALID, Message: err.Error()}, nil
	}
	r, err := s.answer(ctx, fsm.Command{Claim: &fsm.Claim{Stream: req.GetStream(), ID: id}}, forwarded(ctx))
	if err != nil {
		return nil, err
	}
	return &eventspb.ClaimResponse{Code: r.Code, Message: r.Message, Epoch: r.Epoch, Version: r.Version}, nil
}

// Forward implements eventspb.LogServer: commands forwarded by another node,
// proposed together by this leader.
func (s *API) Forward(ctx context.Context, req *eventspb.ForwardRequest) (*eventspb.ForwardResponse, error) {
	if !s.n.IsLeader() {
		return nil, statusErr(errNotLeader)
	}
	out := &eventspb.ForwardResponse{Results: make([]*eventspb.AppendResponse, len(req.GetCommands()))}
	cmds := make([]fsm.Command, 0, len(req.GetCommands()))
	slots := make([]int, 0, len(req.GetCommands()))
	for i, c := range req.GetCommands() {
		cmd, err := commandFromProto(c)
		if err == nil {
			err = fsm.ValidateCommand(cmd, s.n.cfg.Limits)
		}
		if err != nil {
			r, _ := businessOrStatus(err)
			if r == nil {
				r = &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: err.Error()}
			}
			out.Results[i] = r
			continue
		}
		cmds = append(cmds, cmd)
		slots = append(slots, i)
	}
	for j, r := range s.n.batcher.submitMany(ctx, cmds) {
		if r.err != nil {
			out.Results[slots[j]] = &eventspb.AppendResponse{Code: eventspb.Code_CODE_UNAVAILABLE, Message: r.err.Error()}
			continue
		}
		out.Results[slots[j]] = appendResponse(r.res)
	}
	return out, nil
}

// ReadIndex implements eventspb.LogServer.
func (s *API) ReadIndex(ctx context.Context, _ *eventspb.ReadIndexRequest) (*eventspb.ReadIndexResponse, error) {
	if forwarded(ctx) {
		if !s.n.IsLeader() {
			return nil, statusErr(errNotLeader)
		}
		idx, err := s.n.leaderReadIndex()
		if err != nil {
			return nil, statusErr(err)
		}
		return &eventspb.ReadIndexResponse{Index: idx}, nil
	}
	idx, err := s.n.ReadIndex(ctx)
	if err != nil {
		return nil, statusErr(err)
	}
	return &eventspb.ReadIndexResponse{Index: idx}, nil
}

// ReadStream implements eventspb.LogServer.
func (s *API) ReadStream(ctx context.Context, req *eventspb.ReadStreamRequest) (*eventspb.ReadStreamResponse, error) {
	max := int(req.GetMax())
	if max <= 0 || max > 10000 {
		max = 10000
	}
	evs, err := s.n.ReadStream(ctx, req.GetStream(), req.GetFromVersion(), max, req.GetConsistent())
	if err != nil {
		return nil, statusErr(err)
	}
	out := &eventspb.ReadStreamResponse{Events: make([]*eventspb.RecordedEvent, len(evs))}
	for i, e := range evs {
		out.Events[i] = &eventspb.RecordedEvent{
			Stream: e.Stream, Version: e.Version, Position: e.Position, Epoch: e.Epoch,
			TimeUnixNano: e.Time, Type: e.Type, Data: e.Data, Meta: e.Meta,
		}
	}
	return out, nil
}
