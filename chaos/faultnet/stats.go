package faultnet

import "sync/atomic"

// Link is one direction between two nodes.
type Link struct {
	From, To string
}

// String returns "from -> to".
func (l Link) String() string { return l.From + " -> " + l.To }

// Reverse returns the link in the other direction.
func (l Link) Reverse() Link { return Link{From: l.To, To: l.From} }

// LinkStats counts the traffic and faults of one direction of a link, over
// the life of the Network (Heal does not reset them).
type LinkStats struct {
	// Bytes is the number of bytes that crossed From -> To on faultnet
	// connections: handed to the socket by connections From dialed, plus
	// delivered to Read on connections To dialed.
	Bytes int64
	// StalledWrites counts Write calls, on connections From dialed, that had
	// to wait because From -> To was blocked.
	StalledWrites int64
	// StalledReads counts Read calls, on connections To dialed, that had data
	// from From ready but had to wait because From -> To was blocked.
	StalledReads int64
	// RefusedDials counts dials From -> To that failed because the link was
	// blocked in either direction.
	RefusedDials int64
	// Resets counts connections From dialed to To that ResetConnections
	// closed.
	Resets int64
	// Conns is the number of connections From dialed to To that are open now
	// (including closed ones still flushing queued data).
	Conns int
}

// counters are the live, atomically updated LinkStats of one link.
type counters struct {
	bytes, stalledWrites, stalledReads, refusedDials, resets atomic.Int64
}

func (c *counters) snapshot() LinkStats {
	return LinkStats{
		Bytes:         c.bytes.Load(),
		StalledWrites: c.stalledWrites.Load(),
		StalledReads:  c.stalledReads.Load(),
		RefusedDials:  c.refusedDials.Load(),
		Resets:        c.resets.Load(),
	}
}
