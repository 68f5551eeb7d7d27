package events

import (
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/events/fsm"
)

// readFence gives the leader's read index by committing an empty entry
// through the log: only a leader a quorum still follows can commit it, so a
// deposed leader (paused past an election, partitioned) cannot answer a
// consistent read from its stale store. hashicorp/raft's VerifyLeader is not
// enough: it counts any heartbeat or AppendEntries response that arrives
// after the call, including one to a request sent before it — a leader
// paused with such a response in its socket (SIGSTOP, a GC or VM stall)
// verified itself on resume and served reads missing acknowledged appends
// (found by the chaos harness, docs/chaos.md).
//
// Concurrent reads share fences: a read joins the next fence to start, never
// one already in flight (whose index could precede writes acknowledged
// before the read began).
type readFence struct {
	n       *Node
	mu      sync.Mutex
	running bool
	next    *fenceGroup
}

type fenceGroup struct {
	done chan struct{}
	idx  uint64
	err  error
}

// wait returns an index the local store reaches once every write
// acknowledged before the call is applied (the fence's own index; Raft
// applies it after everything before it).
func (f *readFence) wait() (uint64, error) {
	f.mu.Lock()
	if f.next == nil {
		f.next = &fenceGroup{done: make(chan struct{})}
	}
	g := f.next
	if !f.running {
		f.running, f.next = true, nil
		go f.run(g)
	}
	f.mu.Unlock()
	select {
	case <-g.done:
		return g.idx, g.err
	case <-f.n.closed:
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
}

// run commits fences one after the other while reads are waiting.
func (f *readFence) run(g *fenceGroup) {
	for g != nil {
		g.idx, g.err = f.commit()
		close(g.done)
		f.mu.Lock()
		g, f.next = f.next, nil
		if g == nil {
			f.running = false
		}
		f.mu.Unlock()
	}
}

func (f *readFence) commit() (uint64, error) {
	start := time.Now()
	data, err := fsm.EncodeEntry(fsm.Entry{Time: start.UnixNano()})
	if err != nil {
		return 0, fmt.Errorf("events: encode read fence: %w", err)
	}
	fut := f.n.raft.Apply(data, f.n.cfg.ApplyTimeout)
	if err := awaitFuture(fut, f.n.closed); err != nil {
		return 0, err
	}
	f.n.metrics.readFences.Observe(time.Since(start).Seconds())
	return fut.Index(), nil
}
