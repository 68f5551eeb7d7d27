package membership

import (
	"fmt"
	"time"
)

// State is a member's state as seen by this node.
type State int

const (
	// Alive: the member answers probes.
	Alive State = iota
	// Suspect: a probe failed and the member has not refuted yet; it is still
	// a member (see Membership.Alive) until declared dead.
	Suspect
	// Dead: the failure detector declared the member failed.
	Dead
	// Left: the member left gracefully (Membership.Leave).
	Left
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// up reports whether the member still counts as part of the cluster.
func (s State) up() bool { return s == Alive || s == Suspect }

// Member is one node as seen by this node.
type Member struct {
	Meta
	Addr  string    // gossip address host:port
	State State     // current state
	Since time.Time // when it entered State (local clock)
}

func (m Member) clone() Member {
	m.Meta = m.Meta.clone()
	return m
}
