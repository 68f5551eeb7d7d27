package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/switchboard-io/switchboard/events/fsm"
)

// batcher is the leader's group commit: concurrent commands are packed into
// one Raft entry (up to BatchMaxCommands / BatchMaxBytes), so that one Raft
// log write, one replication round and one Pebble batch serve many writers.
// It never waits to fill a batch: whatever queued while the previous entry was
// being handed to Raft goes into the next one.
//
// Entries are handed to Raft in order and their futures are awaited in order
// by a single completion goroutine (Raft completes them in log order).
type batcher struct {
	n       *Node
	in      chan *proposal
	pending chan pendingEntry
	slots   chan struct{} // one per entry handed to Raft and not yet completed
	done    chan struct{}
	stopped chan struct{}
}

type proposal struct {
	cmd  fsm.Command
	size int
	out  chan proposalResult // buffered(1)
}

type proposalResult struct {
	res fsm.Result
	err error
}

type pendingEntry struct {
	future raft.ApplyFuture
	props  []*proposal
	start  time.Time // handed to Raft
}

// maxEntriesInFlight bounds the entries handed to Raft and not yet applied.
// While all are in flight, proposals queue and then go into one entry: that is
// what makes entries large under load (Raft's own apply batching groups
// entries into one log write, but each entry still costs encoding,
// replication framing, a log key and a future).
const maxEntriesInFlight = 3

func newBatcher(n *Node) *batcher {
	return &batcher{
		n:       n,
		in:      make(chan *proposal, 4096),
		pending: make(chan pendingEntry, maxEntriesInFlight),
		slots:   make(chan struct{}, maxEntriesInFlight),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

func commandSize(c fsm.Command) int {
	if c.Append != nil {
		s := len(c.Append.Stream) + 64
		for _, e := range c.Append.Events {
			s += e.Size() + 16
		}
		return s
	}
	if c.Claim != nil {
		return len(c.Claim.Stream) + 32
	}
	return 16
}

// submit queues cmd and waits for its result. An error means the command's
// fate is unknown or it was not proposed (not leader, shutting down).
func (b *batcher) submit(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	p := &proposal{cmd: cmd, size: commandSize(cmd), out: make(chan proposalResult, 1)}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
	select {
	case r := <-p.out:
		return r.res, r.err
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("%w: outcome unknown: %w", ErrUnavailable, ctx.Err())
	case <-b.done:
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
}

// submitMany queues cmds back to back (so they share entries) and waits for
// all of their results; a command whose fate is unknown gets an error.
func (b *batcher) submitMany(ctx context.Context, cmds []fsm.Command) []proposalResult {
	out := make([]proposalResult, len(cmds))
	props := make([]*proposal, len(cmds))
	for i, c := range cmds {
		props[i] = &proposal{cmd: c, size: commandSize(c), out: make(chan proposalResult, 1)}
	}
	queued := 0
enqueue:
	for _, p := range props {
		select {
		case b.in <- p:
			queued++
		case <-ctx.Done():
			break enqueue
		case <-b.done:
			break enqueue
		}
	}
	for i, p := range props {
		if i >= queued {
			out[i] = proposalResult{err: fmt.Errorf("%w: not proposed", ErrUnavailable)}
			continue
		}
		select {
		case out[i] = <-p.out:
		case <-ctx.Done():
			out[i] = proposalResult{err: fmt.Errorf("%w: outcome unknown: %w", ErrUnavailable, ctx.Err())}
		case <-b.done:
			out[i] = proposalResult{err: fmt.Errorf("%w: %w", ErrUnavailable, errClosed)}
		}
	}
	return out
}

func (b *batcher) run() {
	defer b.n.wg.Done()
	completerDone := make(chan struct{})
	go b.complete(completerDone)
	defer func() {
		close(b.pending)
		<-completerDone
	}()
	maxCmds, maxBytes := b.n.cfg.BatchMaxCommands, b.n.cfg.BatchMaxBytes
	for {
		select {
		case b.slots <- struct{}{}:
		case <-b.done:
			return
		}
		var first *proposal
		select {
		case first = <-b.in:
		case <-b.done:
			return
		}
		props := fillBatch(first, b.in, maxCmds, maxBytes)
		if b.n.raft.State() != raft.Leader {
			fail(props, errNotLeader)
			<-b.slots
			continue
		}
		entry := fsm.Entry{Time: time.Now().UnixNano(), Commands: make([]fsm.Command, len(props))}
		for i, p := range props {
			entry.Commands[i] = p.cmd
		}
		data, err := fsm.EncodeEntry(entry)
		if err != nil {
			fail(props, fmt.Errorf("events: encode entry: %w", err))
			<-b.slots
			continue
		}
		b.n.metrics.batchCommands.Observe(float64(len(props)))
		b.n.metrics.batchBytes.Observe(float64(len(data)))
		start := time.Now()
		f := b.n.raft.Apply(data, b.n.cfg.ApplyTimeout)
		select {
		case b.pending <- pendingEntry{future: f, props: props, start: start}:
		case <-b.done:
			fail(props, fmt.Errorf("%w: %w", ErrUnavailable, errClosed))
			return
		}
	}
}

func (b *batcher) complete(done chan struct{}) {
	defer close(done)
	for pe := range b.pending {
		err := awaitFuture(pe.future, b.done)
		<-b.slots
		if err == nil {
			b.n.metrics.commitLatency.Observe(time.Since(pe.start).Seconds())
		}
		if err != nil {
			fail(pe.props, err)
			continue
		}
		switch resp := pe.future.Response().(type) {
		case []fsm.Result:
			if len(resp) != len(pe.props) {
				fail(pe.props, fmt.Errorf("events: fsm returned %d results for %d commands", len(resp), len(pe.props)))
				continue
			}
			for i, p := range pe.props {
				p.out <- proposalResult{res: resp[i]}
			}
		case error:
			fail(pe.props, resp)
		default:
			fail(pe.props, fmt.Errorf("events: unexpected fsm response %T", resp))
		}
	}
}

// fillBatch returns first followed by whatever is queued in in, without
// waiting, up to maxCmds commands or until maxBytes is reached.
func fillBatch(first *proposal, in <-chan *proposal, maxCmds, maxBytes int) []*proposal {
	props := []*proposal{first}
	size := first.size
	for len(props) < maxCmds && size < maxBytes {
		select {
		case p := <-in:
			props = append(props, p)
			size += p.size
		default:
			return props
		}
	}
	return props
}

func fail(props []*proposal, err error) {
	for _, p := range props {
		p.out <- proposalResult{err: err}
	}
}

func (b *batcher) stop() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
}

var errNotLeader = errors.New("events: not the leader")
