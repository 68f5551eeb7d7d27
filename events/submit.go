package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/fsm"
)

// The Submit stream (eventspb.Log/Submit): many commands in flight over one
// gRPC stream, each under a tag, answered in completion order. A unary call
// per append pays for an HTTP/2 stream, its headers and trailers and a
// handler goroutine on both ends; on the stream an append is a tagged entry
// in a message that usually carries others, and a response message carries
// the results of everything that completed meanwhile. Nodes forward to the
// leader over it; clients with many writes in flight use SubmitClient.

// Bounds of one Submit stream.
const (
	// SubmitMaxInFlight is the most commands a node keeps in flight for one
	// stream: it stops reading the stream until results have gone out (a
	// client must read results while it sends).
	SubmitMaxInFlight = 4096
	// submitMaxBatch bounds the commands or results packed into one message.
	submitMaxBatch = 512
	// submitMaxBytes bounds the bytes of commands packed into one message,
	// unless one command alone is larger: a node receives messages up to its
	// largest append plus 1 MiB (serve.go), gRPC's default 4 MiB elsewhere.
	submitMaxBytes = 3 << 20
)

// Submit implements eventspb.LogServer. Commands of a client stream are
// handled as Append and Claim are (validated, proposed or forwarded, retried
// while there is no leader, each bounded by the node's apply timeout);
// commands of a stream opened by another node are proposed by this node only
// if it leads, and never forwarded again.
func (s *API) Submit(stream eventspb.Log_SubmitServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	fromNode := forwarded(ctx) // a property of the stream: read its metadata once
	if fromNode && !s.n.IsLeader() {
		return statusErr(errNotLeader)
	}
	var (
		slots   = make(chan struct{}, SubmitMaxInFlight)
		results = make(chan *eventspb.TaggedResult, SubmitMaxInFlight) // a push never blocks: one slot each
		mu      sync.Mutex
		tags    = map[uint64]struct{}{} // in flight
		running sync.WaitGroup
		sendErr error
		sent    = make(chan struct{})
	)
	go func() {
		defer close(sent)
		sendErr = sendResults(stream, results, slots)
		if sendErr != nil {
			cancel()
		}
	}()
	finish := func(err error) error {
		if err != nil {
			cancel()
		}
		running.Wait()
		close(results)
		<-sent
		if err == nil {
			err = sendErr
		}
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return finish(nil) // half-closed: answer what is in flight
		}
		if err != nil {
			return finish(err)
		}
		for _, tc := range req.GetCommands() {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return finish(status.FromContextError(ctx.Err()).Err())
			}
			tag := tc.GetTag()
			mu.Lock()
			_, dup := tags[tag]
			tags[tag] = struct{}{}
			mu.Unlock()
			if dup {
				<-slots
				return finish(status.Errorf(codes.InvalidArgument, "submit: tag %d is already in flight on this stream", tag))
			}
			running.Add(1)
			go func(c *eventspb.Command) {
				defer running.Done()
				r := s.submitOne(ctx, c, fromNode)
				mu.Lock()
				delete(tags, tag)
				mu.Unlock()
				results <- &eventspb.TaggedResult{Tag: tag, Result: r}
			}(tc.GetCommand())
		}
	}
}

// sendResults sends results as they come, packing whatever is ready into
// one message, and frees a slot per result sent. After a failed send it
// keeps draining (the stream is over) and returns the error once results is
// closed.
func sendResults(stream eventspb.Log_SubmitServer, results <-chan *eventspb.TaggedResult, slots <-chan struct{}) error {
	var err error
	for r := range results {
		batch := []*eventspb.TaggedResult{r}
	fill:
		for len(batch) < submitMaxBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if err == nil {
			err = stream.Send(&eventspb.SubmitResponse{Results: batch})
		}
		for range batch {
			<-slots
		}
	}
	return err
}

// submitOne runs one command of a Submit stream and returns its answer
// (what would be a gRPC status for Append is CODE_UNAVAILABLE here: the
// stream carries on).
func (s *API) submitOne(ctx context.Context, c *eventspb.Command, fromNode bool) *eventspb.AppendResponse {
	cmd, err := commandFromProto(c)
	if err != nil {
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.n.cfg.ApplyTimeout)
	defer cancel()
	r, err := s.answer(ctx, cmd, fromNode)
	if err != nil {
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_UNAVAILABLE, Message: status.Convert(err).Message()}
	}
	return r
}

// SubmitClient sends commands over one Log/Submit stream and hands each
// caller its own result: any number of goroutines may call Append and Claim
// at once; what they queue while a message is being sent goes out together
// in the next one.
//
// A command whose outcome is unknown (the stream broke, the node answered
// CODE_UNAVAILABLE, the caller's context ended first) returns an error
// wrapping ErrUnavailable: retry it with the same id, on this client if Err
// is nil, else on a new one. Once the stream has failed, Err reports why and
// every call fails at once. Close ends the stream; calls in flight then fail.
type SubmitClient struct {
	stream eventspb.Log_SubmitClient
	cancel context.CancelFunc
	queue  chan taggedProposal
	// unavailable turns a CODE_UNAVAILABLE answer into an error and failed
	// the stream's failure (the forwarder wants errors its caller retries;
	// users want ErrUnavailable).
	unavailable func(msg string) error
	failed      func(err error) error

	mu      sync.Mutex
	pending map[uint64]*proposal
	next    uint64
	err     error
	done    chan struct{}
}

type taggedProposal struct {
	tag uint64
	p   *proposal
}

// NewSubmitClient opens a Submit stream on conn (a connection to any node's
// Log API). The stream lives until Close, a failure, or the end of ctx.
func NewSubmitClient(ctx context.Context, conn grpc.ClientConnInterface) (*SubmitClient, error) {
	return openSubmit(ctx, eventspb.NewLogClient(conn),
		func(msg string) error { return fmt.Errorf("%w: %s", ErrUnavailable, msg) },
		func(err error) error { return fmt.Errorf("%w: submit stream: %w", ErrUnavailable, err) })
}

func openSubmit(ctx context.Context, c eventspb.LogClient, unavailable func(string) error, failed func(error) error) (*SubmitClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.Submit(ctx)
	if err != nil {
		cancel()
		return nil, failed(err)
	}
	sc := &SubmitClient{
		stream: st, cancel: cancel, queue: make(chan taggedProposal, SubmitMaxInFlight),
		unavailable: unavailable, failed: failed,
		pending: map[uint64]*proposal{}, done: make(chan struct{}),
	}
	go sc.sendLoop()
	go sc.recvLoop()
	return sc, nil
}

// Append appends through the stream, with Node.Append's contract: business
// outcomes come back as the result and a typed error (a *ConflictError, a
// *FencedError, ErrTooLarge, ErrInvalid); an error wrapping ErrUnavailable
// means the outcome is unknown (retry with the same a.ID, which must then be
// set: a zero id gets one from the node, and its retry is a new append).
func (c *SubmitClient) Append(ctx context.Context, a fsm.Append) (fsm.Result, error) {
	res, err := c.do(ctx, fsm.Command{Append: &a})
	if err != nil {
		return fsm.Result{}, err
	}
	return res, res.Err(a.Stream, a.Expected, a.Epoch)
}

// Claim starts a new activation epoch on stream and returns it with the
// stream's version; id identifies the claim for retries (zero: the node
// picks one, and a retry claims again).
func (c *SubmitClient) Claim(ctx context.Context, stream string, id fsm.AppendID) (epoch, version uint64, err error) {
	res, err := c.do(ctx, fsm.Command{Claim: &fsm.Claim{Stream: stream, ID: id}})
	if err != nil {
		return 0, 0, err
	}
	if err := res.Err(stream, fsm.Expected{}, 0); err != nil {
		return 0, 0, err
	}
	return res.Epoch, res.Version, nil
}

func (c *SubmitClient) do(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	p := &proposal{cmd: cmd, size: commandSize(cmd), out: make(chan proposalResult, 1)}
	if err := c.enqueue(ctx, p); err != nil {
		return fsm.Result{}, err
	}
	select {
	case r := <-p.out:
		return r.res, r.err
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("%w: outcome unknown: %w", ErrUnavailable, ctx.Err())
	}
}

// enqueue registers p and queues it for the sender. From then on p gets
// exactly one result on p.out: its answer, or the stream's failure.
func (c *SubmitClient) enqueue(ctx context.Context, p *proposal) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	tag := c.next
	c.next++
	c.pending[tag] = p
	c.mu.Unlock()
	select {
	case c.queue <- taggedProposal{tag: tag, p: p}:
		return nil
	case <-c.done:
		return nil // failed: fail has answered p
	case <-ctx.Done():
		c.mu.Lock()
		_, still := c.pending[tag]
		delete(c.pending, tag)
		c.mu.Unlock()
		if !still {
			return nil // answered meanwhile
		}
		return fmt.Errorf("%w: not sent: %w", ErrUnavailable, ctx.Err())
	}
}

// Err returns why the stream ended, or nil while it works.
func (c *SubmitClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the stream; commands in flight fail with ErrUnavailable.
func (c *SubmitClient) Close() error {
	c.fail(errors.New("submit client closed"))
	return nil
}

func (c *SubmitClient) sendLoop() {
	var carry *taggedProposal // taken from the queue, did not fit the last message
	for {
		var first taggedProposal
		if carry != nil {
			first, carry = *carry, nil
		} else {
			select {
			case first = <-c.queue:
			case <-c.done:
				return
			}
		}
		// A new message each time: gRPC may keep a sent one (stats handlers).
		req := &eventspb.SubmitRequest{Commands: []*eventspb.TaggedCommand{{Tag: first.tag, Command: commandToProto(first.p.cmd)}}}
		size := first.p.size
	fill:
		for len(req.Commands) < submitMaxBatch {
			select {
			case tp := <-c.queue:
				if size+tp.p.size > submitMaxBytes {
					carry = &tp // a message stays within the node's receive limit
					break fill
				}
				req.Commands = append(req.Commands, &eventspb.TaggedCommand{Tag: tp.tag, Command: commandToProto(tp.p.cmd)})
				size += tp.p.size
			default:
				break fill
			}
		}
		if err := c.stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				return // the stream ended: recvLoop gets its status and fails it
			}
			c.fail(err)
			return
		}
	}
}

func (c *SubmitClient) recvLoop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the node ended the stream")
			}
			c.fail(err)
			return
		}
		for _, tr := range resp.GetResults() {
			c.mu.Lock()
			p := c.pending[tr.GetTag()]
			delete(c.pending, tr.GetTag())
			c.mu.Unlock()
			if p == nil {
				continue // its caller gave up before it was sent
			}
			r := tr.GetResult()
			if r.GetCode() == eventspb.Code_CODE_UNAVAILABLE {
				p.out <- proposalResult{err: c.unavailable(r.GetMessage())}
				continue
			}
			p.out <- proposalResult{res: ResultFromAppendResponse(r)}
		}
	}
}

// fail ends the stream (once) and answers every pending command with err.
func (c *SubmitClient) fail(err error) {
	err = c.failed(err) // outside c.mu: it may take its owner's locks
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	for _, p := range pending {
		p.out <- proposalResult{err: c.err}
	}
}
