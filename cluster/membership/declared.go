package membership

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// How this node learns that the cluster declared it dead: see the package
// documentation (# DeclaredDead) for the design and its reasons.

// noticeMagic starts a dead notice, leavingMagic a leaving notice: the user
// messages this package sends.
const (
	noticeMagic  byte = 0xd1
	leavingMagic byte = 0xd2
)

// wireLeaving tells the others, over TCP, that a member is leaving: the leave
// flag in its gossiped metadata can be lost (UDP), and without it the others
// take the departure for a death.
type wireLeaving struct {
	From string `json:"f"`
}

// tellLeaving sends a leaving notice to every other live member, all at once,
// within timeout.
func (m *Membership) tellLeaving(timeout time.Duration) {
	body, _ := json.Marshal(wireLeaving{From: m.cfg.NodeID})
	msg := append([]byte{leavingMagic}, body...)
	var wg sync.WaitGroup
	for _, mem := range m.Alive() {
		if mem.NodeID == m.cfg.NodeID {
			continue
		}
		host, portStr, err := net.SplitHostPort(mem.Addr)
		port, _ := strconv.Atoi(portStr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil {
			continue
		}
		node := &memberlist.Node{Name: mem.NodeID, Addr: ip, Port: uint16(port)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.ml.SendReliable(node, msg); err != nil {
				m.log.Debug("could not send leaving notice", "member", node.Name, "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

func (m *Membership) onLeavingMsg(b []byte) {
	var w wireLeaving
	if err := json.Unmarshal(b, &w); err != nil {
		m.log.Warn("undecodable leaving notice", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.members[w.From]; ok && w.From != m.cfg.NodeID && !e.leaving {
		e.leaving = true
		m.log.Info("member leaving", "member", w.From, "how", "leaving notice")
	}
}

// notice asks the sender goroutine to tell member `to` (at addr) that this
// node declared its life asid dead.
type notice struct {
	to, addr, asid string
}

// wireNotice is a dead notice on the wire, after noticeMagic.
type wireNotice struct {
	From string `json:"f"`  // the member that declared the target dead
	ASID string `json:"as"` // the target's actor-system id it declared dead
}

// DeclaredDead returns a channel that is closed when this node learns that
// the cluster declared its current life dead while it was unreachable (for
// example a process paused with SIGSTOP, or cut off by the network, for
// longer than the failure detector's timeout). The others have then removed
// it from their topology, and protoactor blocks a removed actor system for
// good: the consumer (the node) must drop all its grain activations, start a
// new actor system and call UpdateMeta with the new ActorSystemID.
//
// A life is one value of Meta.ActorSystemID. The channel fires at most once
// per life; once closed it stays closed until UpdateMeta installs a different
// ActorSystemID, after which DeclaredDead returns a fresh channel, so the
// signal fires again if the new life is declared dead too. (If the channel has
// not fired, an ActorSystemID change keeps it.) The decisions rely on
// ActorSystemID changing on every rejoin; with an empty one, this node's
// previous runs cannot be told from the current one. Loop:
//
//	for {
//		select {
//		case <-m.DeclaredDead():
//			dropActivations(); m.UpdateMeta(metaWithNewActorSystem())
//		case <-ctx.Done():
//			return
//		}
//	}
//
// It may also fire on a node that was not cut off: when it declared another
// member dead and that member did not rejoin within RejoinGrace (this node's
// actor system blocks it; a new one does not).
func (m *Membership) DeclaredDead() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.life.ch
}

// DeclaredDeadCount returns how many times DeclaredDead has fired.
func (m *Membership) DeclaredDeadCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.life.count
}

// declareDeadLocked fires DeclaredDead for the current life. signal is the
// metric label: watchdog, accused or peer_blocked.
func (m *Membership) declareDeadLocked(signal string, attrs ...any) {
	if m.leaving || m.closed {
		return
	}
	attrs = append([]any{"signal", signal, "actor_system_id", m.local.ActorSystemID}, attrs...)
	if m.life.fired {
		m.log.Debug("more evidence that this node must rejoin (already signalled)", attrs...)
		return
	}
	m.life.fired = true
	m.life.count++
	close(m.life.ch)
	m.met.declaredDead.WithLabelValues(signal).Inc()
	m.log.Warn("declared dead: this node must drop its activations and rejoin under a new actor-system id", attrs...)
}

// newLifeLocked starts a new life (a new ActorSystemID): DeclaredDead re-arms,
// and the old actor system's grudges (whom it declared dead, who accused it)
// are forgotten.
func (m *Membership) newLifeLocked() {
	if m.life.fired {
		m.life = life{ch: make(chan struct{}), count: m.life.count}
	}
	for _, e := range m.members {
		e.declared = false
	}
	clear(m.accusers)
}

// onPause is the watchdog's callback.
func (m *Membership) onPause(gap time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.declareDeadLocked("watchdog", "gap", gap, "threshold", m.cfg.PauseThreshold())
}

// onRefuteDead is called (with memberlist's node lock held) when memberlist
// refuted a DEAD message about this node, declared by from.
func (m *Membership) onRefuteDead(from string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.joined {
		// Before the first join the accusation is about this node's previous
		// run (same name, same address): its actor system is gone anyway.
		m.log.Debug("refuted a dead message before joining: about a previous run", "from", from)
		return
	}
	m.accuseLocked(from, "refuted dead message")
}

// accuseLocked records that member from declared our current life dead.
func (m *Membership) accuseLocked(from, how string) {
	if from == m.cfg.NodeID || from == "" {
		return
	}
	if _, known := m.accusers[from]; !known {
		m.accusers[from] = how
		if !m.evaluateAccusationsLocked() && !m.life.fired {
			m.log.Info("a member declared this node dead; waiting for a majority (or for it to rejoin itself)",
				"accuser", from, "how", how, "accusers", len(m.accusers))
		}
	}
}

// evaluateAccusationsLocked fires when a strict majority of the other live
// members (the accusers included) declared our current life dead, and reports
// whether it did.
func (m *Membership) evaluateAccusationsLocked() bool {
	if len(m.accusers) == 0 || m.life.fired {
		return false
	}
	others := len(m.accusers)
	for name, e := range m.members {
		if _, accuser := m.accusers[name]; !accuser && name != m.cfg.NodeID && e.State.up() {
			others++
		}
	}
	if 2*len(m.accusers) <= others {
		return false
	}
	names := make([]string, 0, len(m.accusers))
	for n := range m.accusers {
		names = append(names, n)
	}
	slices.Sort(names)
	m.declareDeadLocked("accused", "accusers", names, "live_members", others)
	return true
}

// checkBlockedPeersLocked is the backstop: a member whose life we declared
// dead has been alive again under it for RejoinGrace: we rejoin ourselves.
// It also re-evaluates accusations, as the member count may have changed.
func (m *Membership) checkBlockedPeersLocked(now time.Time) {
	if m.life.fired || m.leaving {
		return
	}
	if m.evaluateAccusationsLocked() {
		return
	}
	for name, e := range m.members {
		if e.declared && e.State == Alive && now.Sub(e.Since) > m.cfg.RejoinGrace {
			m.declareDeadLocked("peer_blocked", "member", name, "member_actor_system_id", e.ActorSystemID,
				"alive_again_for", now.Sub(e.Since).Round(time.Millisecond))
			return
		}
	}
}

// queueNoticeLocked asks sendNotices to tell member name that we declared its
// current life dead. Never blocks (memberlist may hold its lock).
func (m *Membership) queueNoticeLocked(name, addr string) {
	e := m.members[name]
	select {
	case m.notices <- notice{to: name, addr: addr, asid: e.ActorSystemID}:
	default:
		m.log.Warn("dead notice queue full; dropping notice (the backstop still applies)", "member", name)
	}
}

// sendNotices delivers dead notices over memberlist's reliable (TCP) user
// messages, retrying a few times.
func (m *Membership) sendNotices() {
	for {
		var n notice
		select {
		case <-m.stop:
			return
		case n = <-m.notices:
		}
		body, _ := json.Marshal(wireNotice{From: m.cfg.NodeID, ASID: n.asid})
		msg := append([]byte{noticeMagic}, body...)
		host, portStr, err := net.SplitHostPort(n.addr)
		port, _ := strconv.Atoi(portStr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil {
			m.log.Warn("cannot send dead notice: bad member address", "member", n.to, "addr", n.addr)
			continue
		}
		node := &memberlist.Node{Name: n.to, Addr: ip, Port: uint16(port)}
		for attempt := 1; ; attempt++ {
			err := m.ml.SendReliable(node, msg)
			if err == nil {
				m.log.Info("told a member that this node had declared it dead", "member", n.to, "its_actor_system_id", n.asid)
				break
			}
			if attempt == 3 {
				m.log.Warn("could not send dead notice", "member", n.to, "addr", n.addr, "err", err)
				break
			}
			select {
			case <-m.stop:
				return
			case <-time.After(m.cfg.JoinRetryInterval):
			}
		}
	}
}

// onNotifyMsg handles a user message (memberlist's Delegate.NotifyMsg).
func (m *Membership) onNotifyMsg(b []byte) {
	if len(b) >= 2 && b[0] == leavingMagic {
		m.onLeavingMsg(b[1:])
		return
	}
	if len(b) < 2 || b[0] != noticeMagic {
		m.log.Debug("ignoring unknown user message", "bytes", len(b))
		return
	}
	var w wireNotice
	if err := json.Unmarshal(b[1:], &w); err != nil {
		m.log.Warn("undecodable dead notice", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.ASID != m.local.ActorSystemID {
		m.log.Debug("dead notice about a previous life", "from", w.From, "its_actor_system_id", w.ASID)
		return
	}
	m.accuseLocked(w.From, "dead notice")
}
