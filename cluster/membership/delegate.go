package membership

import (
	"bytes"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate receives memberlist's callbacks. memberlist calls NotifyJoin,
// NotifyLeave, NotifyUpdate and NotifyConflict with its node lock held (and
// the others from its network goroutines): every method here only takes
// Membership.mu, never calls memberlist, and never blocks.
type delegate struct{ m *Membership }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
)

// AckPayload implements memberlist.PingDelegate (no payload).
func (d *delegate) AckPayload() []byte { return nil }

// NotifyPingComplete implements memberlist.PingDelegate: other answered our
// direct probe, so it is no longer suspect as far as we know.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	d.m.onAck(other.Name)
}

// NodeMeta implements memberlist.Delegate: the encoded local Meta (checked
// against the limit when it was set).
func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.localEnc) > limit {
		return nil
	}
	return bytes.Clone(d.m.localEnc)
}

// NotifyMsg implements memberlist.Delegate: the only user message is the
// dead notice (see declared.go).
func (d *delegate) NotifyMsg(b []byte) { d.m.onNotifyMsg(b) }

// GetBroadcasts implements memberlist.Delegate (no user broadcasts).
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate (no user state).
func (d *delegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate (no user state).
func (d *delegate) MergeRemoteState([]byte, bool) {}

// NotifyJoin implements memberlist.EventDelegate: a new member, or a dead or
// left one that came back (possibly on a new address, with new Meta).
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.m.upsert(n, true) }

// NotifyUpdate implements memberlist.EventDelegate: a live member's Meta
// changed (UpdateMeta on that node, or a restart on the same address).
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.upsert(n, false) }

// NotifyLeave implements memberlist.EventDelegate: Left after a graceful
// Leave, otherwise the member was declared dead. memberlist v0.7.0 never sets
// n.State here (nodeState shadows it: hashicorp/memberlist#266, open PR #321),
// so Left is recognised by the leave flag the member gossiped in its meta
// just before (see Leave); n.State == StateLeft is honoured too, for when
// memberlist fixes it.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.m.down(n, n.State == memberlist.StateLeft)
}

// NotifyConflict implements memberlist.ConflictDelegate: another address
// claims a live member's name. Remember it for the reconnect loop.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.mu.Lock()
	if e, ok := d.m.members[existing.Name]; ok && existing.Name != d.m.cfg.NodeID {
		e.claimant = nodeAddr(other)
	}
	d.m.mu.Unlock()
	d.m.log.Warn("two addresses claim one node id: node ids must be unique (this is expected for a few seconds when a node restarts on a new address, until its old address is declared dead)",
		"member", existing.Name, "known_addr", nodeAddr(existing), "other_addr", nodeAddr(other))
}

// decodePeerMeta decodes a member's meta and leave flag; on failure it logs
// and returns an empty Meta. NodeID is always the memberlist node name.
func (m *Membership) decodePeerMeta(n *memberlist.Node) (Meta, bool) {
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("undecodable meta from a peer; treating it as empty", "member", n.Name, "addr", nodeAddr(n), "bytes", len(n.Meta), "err", err)
		meta = Meta{}
	} else if meta.NodeID != n.Name {
		m.log.Warn("peer meta names another node id; using the memberlist name", "member", n.Name, "meta_node_id", meta.NodeID)
	}
	meta.NodeID = n.Name
	return meta, leaving
}

// upsert records a member as alive with its current address and Meta.
func (m *Membership) upsert(n *memberlist.Node, join bool) {
	self := n.Name == m.cfg.NodeID
	var meta Meta
	var leaving bool
	if !self {
		meta, leaving = m.decodePeerMeta(n)
	}
	addr := nodeAddr(n)
	now := time.Now()

	m.mu.Lock()
	defer m.mu.Unlock()
	if self {
		meta = m.local.clone()
	}
	e, existed := m.members[n.Name]
	if !existed {
		e = &entry{Member: Member{State: Alive, Since: now}}
		m.members[n.Name] = e
	}
	prev := e.Member
	if join || meta.ActorSystemID != prev.ActorSystemID {
		e.refused = false // (re)joined: it listens again
	}
	if meta.ActorSystemID != prev.ActorSystemID {
		// A new life: our actor system does not block it, and whatever it
		// said about us was said by its old actor system.
		e.declared = false
		delete(m.accusers, n.Name)
	}
	e.Meta, e.Addr, e.leaving, e.claimant = meta, addr, leaving, ""
	m.setStateLocked(e, Alive, now)
	m.notifyLocked()
	if self {
		return
	}
	attrs := []any{"member", n.Name, "addr", addr, "actor_system_id", meta.ActorSystemID, "version", meta.Version}
	switch {
	case join && existed && !prev.State.up():
		m.met.joins.Inc()
		attrs = append(attrs, "was", prev.State, "previous_actor_system_id", prev.ActorSystemID)
		if e.declared {
			// It came back under the life we declared dead: tell it.
			attrs = append(attrs, "note", "same actor-system id as when declared dead: told it to rejoin under a new one")
			m.queueNoticeLocked(n.Name, addr)
		}
		m.log.Info("member rejoined", attrs...)
	case join:
		m.met.joins.Inc()
		m.log.Info("member joined", attrs...)
	case leaving:
		m.log.Info("member leaving", attrs...)
	case !prev.Meta.Equal(meta) || prev.Addr != addr:
		m.log.Info("member updated", attrs...)
	}
}

// down records a member as left (if left, or it announced it was leaving, or
// it is this node after Leave) or dead.
func (m *Membership) down(n *memberlist.Node, left bool) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.members[n.Name]
	if !ok {
		e = &entry{Member: Member{Meta: Meta{NodeID: n.Name}, Addr: nodeAddr(n), Since: now}}
		m.members[n.Name] = e
	}
	s := Dead
	if left || e.leaving || (n.Name == m.cfg.NodeID && m.leaving) {
		s = Left
	}
	m.setStateLocked(e, s, now)
	m.notifyLocked()
	if n.Name == m.cfg.NodeID {
		return
	}
	e.declared = s == Dead
	m.met.leaves.WithLabelValues(s.String()).Inc()
	if s == Left {
		m.log.Info("member left", "member", n.Name, "addr", e.Addr)
	} else {
		m.log.Warn("member declared dead", "member", n.Name, "addr", e.Addr, "actor_system_id", e.ActorSystemID)
	}
}
