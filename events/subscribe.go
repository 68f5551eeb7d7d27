package events

import (
	"context"
	"fmt"
)

// Subscription reads the committed global log of one node in order, from a
// position on. It is pull-based: a slow consumer simply reads later (the
// events wait in Pebble, not in memory), which is the backpressure. To resume
// after a restart, subscribe again from the last position processed + 1.
//
// A Subscription is not safe for concurrent use.
type Subscription struct {
	n        *Node
	next     uint64
	maxBatch int
	maxBytes int
}

// Subscribe returns a subscription whose first event is the one at global
// position from (positions start at 1; 0 is treated as 1).
func (n *Node) Subscribe(from uint64) *Subscription {
	if from == 0 {
		from = 1
	}
	return &Subscription{n: n, next: from, maxBatch: 1024, maxBytes: 4 << 20}
}

// Position returns the position of the next event Next will return.
func (s *Subscription) Position() uint64 { return s.next }

// Next blocks until at least one event at or after Position is committed and
// applied on this node, then returns up to 1024 events (at most ~4 MiB) in
// position order. It returns ctx's error when ctx ends first, and
// ErrUnavailable when the node closes.
func (s *Subscription) Next(ctx context.Context) ([]RecordedEvent, error) {
	for {
		notify := s.n.fsm.Notify()
		if s.n.fsm.LastPosition() >= s.next {
			var evs []RecordedEvent
			err := s.n.read(func() (err error) { evs, err = s.n.fsm.ReadAll(s.next, s.maxBatch, s.maxBytes); return err })
			if err != nil {
				return nil, fmt.Errorf("events: subscription read at %d: %w", s.next, err)
			}
			if len(evs) > 0 {
				if evs[0].Position != s.next {
					return nil, fmt.Errorf("events: subscription expected position %d, store returned %d", s.next, evs[0].Position)
				}
				s.next = evs[len(evs)-1].Position + 1
				return evs, nil
			}
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.n.closed:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		}
	}
}

// ReadLog returns up to max committed events from global position from on
// (0 is treated as 1), as applied on this node; fewer (or none) when the log
// ends sooner.
func (n *Node) ReadLog(from uint64, max int) ([]RecordedEvent, error) {
	var evs []RecordedEvent
	err := n.read(func() (err error) { evs, err = n.fsm.ReadAll(from, max, 0); return err })
	return evs, err
}

// LastPosition returns the global position of the newest event applied on
// this node (0 = none).
func (n *Node) LastPosition() uint64 { return n.fsm.LastPosition() }
