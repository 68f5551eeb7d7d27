package membership

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipLabel prefixes every gossip packet and stream (memberlist's Label;
// authenticated data when encryption is on), so that a switchboard node never
// merges with another memberlist cluster (Consul, Serf...) on the same port.
const gossipLabel = "switchboard"

var (
	// ErrShutdown is returned by methods called after Shutdown.
	ErrShutdown = errors.New("membership: shut down")
	// ErrLeft is returned by UpdateMeta after Leave.
	ErrLeft = errors.New("membership: node has left the cluster")
	// ErrNotBroadcast is returned (wrapped) by UpdateMeta when the new meta is
	// in effect locally but its broadcast did not go out within the timeout;
	// it still reaches the others by push/pull.
	ErrNotBroadcast = errors.New("membership: meta updated locally but not yet broadcast")
)

// Membership is this node's view of the cluster. Create it with Start; all
// methods are safe for concurrent use.
//
// Lock order: memberlist's internal node lock → Membership.mu. memberlist
// calls the delegates (and writes the log lines that are parsed for the
// DeclaredDead signal) with its node lock held, so code holding mu must never
// call into memberlist; the delegates only touch mu-guarded state and signal
// watchers without blocking. ctl serialises UpdateMeta, Leave and Shutdown and
// is taken before mu, never inside a delegate.
type Membership struct {
	cfg   Config
	log   *slog.Logger
	ml    *memberlist.Memberlist
	met   *metrics
	addr  string   // own gossip address host:port
	seeds []string // cfg.Join without this node's own address
	stop  chan struct{}
	wg    sync.WaitGroup

	ctl      sync.Mutex
	shutdown bool

	mu       sync.Mutex
	members  map[string]*entry // by node id, self included
	local    Meta
	localEnc []byte
	watchers map[uint64]chan struct{}
	nextW    uint64
	joined   bool // a seed answered once (or there are none)
	leaving  bool
	closed   bool
	life     life
	accusers map[string]string // members that declared our current life dead → how we learned it
	notices  chan notice       // dead notices to send (sendNotices)
}

// entry is a member in the map, with what this node remembers about it:
//
// declared records that this node declared the member's current life (its
// ActorSystemID at the time) dead: our actor system then blocks it until the
// member shows a new ActorSystemID or we start a new life ourselves.
//
// leaving: the member's last meta carried the leave flag, so its coming
// NotifyLeave means Left, not Dead.
//
// claimant: another address that claimed this member's name while it was
// alive here (a restart on a new address); the reconnect loop joins it once
// the old address is declared dead, so the new incarnation is accepted at
// once instead of at the next push/pull.
type entry struct {
	Member
	declared bool
	leaving  bool
	claimant string
	// refused: the member's gossip port refused a TCP connection when it
	// became suspect or when a connection to it broke — its process is gone
	// (a paused process still accepts), so it is no longer routable even
	// before the failure detector declares it dead (see Routable). Cleared
	// when it answers a probe or gossips as alive.
	refused bool
}

// life is the DeclaredDead state of the current Meta.ActorSystemID.
type life struct {
	ch    chan struct{}
	fired bool
	count int
}

// Start binds the gossip address, joins the seeds and returns. If no seed
// answers it still returns (without error) and keeps retrying every
// JoinRetryInterval in the background, logging, so a whole cluster can start
// in any order. meta.NodeID may be empty (it is set to cfg.NodeID); otherwise
// it must equal cfg.NodeID.
func Start(cfg Config, meta Meta) (*Membership, error) {
	owned := cfg.Transport
	fail := func(err error) (*Membership, error) {
		if owned != nil {
			_ = owned.Shutdown()
		}
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	if meta.NodeID == "" {
		meta.NodeID = cfg.NodeID
	} else if meta.NodeID != cfg.NodeID {
		return fail(fmt.Errorf("membership: meta.NodeID %q differs from node_id %q", meta.NodeID, cfg.NodeID))
	}
	enc, err := EncodeMeta(meta)
	if err != nil {
		return fail(err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "membership", "node", cfg.NodeID)

	m := &Membership{
		cfg:      cfg,
		log:      logger,
		stop:     make(chan struct{}),
		members:  make(map[string]*entry),
		local:    meta.clone(),
		localEnc: enc,
		watchers: make(map[uint64]chan struct{}),
		life:     life{ch: make(chan struct{})},
		accusers: make(map[string]string),
		notices:  make(chan notice, 64),
	}
	m.met = newMetrics(cfg.Registerer, m)
	if len(cfg.SecretKey) == 0 {
		logger.Warn("gossip is not encrypted: set gossip.secret_key (the same key on every node) unless the network is fully trusted")
	}

	if owned == nil {
		if owned, err = ListenGossip(cfg.BindAddr, logger); err != nil {
			return nil, err
		}
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.Transport = owned
	if cfg.AdvertiseAddr != "" {
		host, port := cfg.AdvertiseAddr, 0
		if h, p, err := net.SplitHostPort(cfg.AdvertiseAddr); err == nil {
			host = h
			port, _ = parsePort(p)
		}
		if port == 0 {
			if _, bound, err := owned.FinalAdvertiseAddr("", 0); err == nil {
				port = bound
			}
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.RetransmitMult = cfg.RetransmitMult
	mc.IndirectChecks = cfg.IndirectChecks
	// A restarted node may come back on another address under its old name
	// once the old address has been declared dead (memberlist's default, 0,
	// refuses that until it forgets the dead node, 30 s later).
	mc.DeadNodeReclaimTime = cfg.ProbeInterval
	mc.Label = gossipLabel
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = bytes.Clone(cfg.SecretKey)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	} else {
		mc.GossipVerifyIncoming = false
		mc.GossipVerifyOutgoing = false
	}
	mc.LogOutput = nil
	mc.Logger = newStdLogger(logger, logHooks{refuteDead: m.onRefuteDead, suspect: m.onSuspect})
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Ping = d

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = owned.Shutdown()
		return nil, fmt.Errorf("membership: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	m.ml = ml
	if err := m.met.register(); err != nil {
		_ = ml.Shutdown()
		return nil, err
	}
	self := ml.LocalNode()
	m.addr = nodeAddr(self)
	m.seeds = m.withoutSelf(cfg.Join, self)

	if len(m.seeds) == 0 {
		m.setJoined()
		logger.Info("membership started as the first node (no other seeds)", "addr", m.addr, "encrypted", len(cfg.SecretKey) > 0)
	} else if n, err := ml.Join(m.seeds); n > 0 {
		m.setJoined()
		logger.Info("membership started and joined the cluster", "addr", m.addr, "seeds_answered", n,
			"members", len(ml.Members()), "encrypted", len(cfg.SecretKey) > 0)
	} else {
		logger.Warn("membership started but no seed answered; retrying in the background",
			"addr", m.addr, "seeds", m.seeds, "retry_every", cfg.JoinRetryInterval, "err", joinErr(err))
	}

	m.wg.Add(4)
	go func() { defer m.wg.Done(); m.joinLoop() }()
	go func() { defer m.wg.Done(); m.maintainLoop() }()
	go func() { defer m.wg.Done(); m.sendNotices() }()
	go func() {
		defer m.wg.Done()
		runWatchdog(cfg.PauseThreshold(), m.stop, m.onPause)
	}()
	return m, nil
}

func nodeAddr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// joinErr makes memberlist's multi-line join error one line, with a hint
// when it is about encryption.
func joinErr(err error) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if strings.Contains(s, "crypt") {
		s += " (check that every node has the same gossip.secret_key)"
	}
	return s
}

// withoutSelf drops this node's own address from the seed list, so that a
// list shared by all nodes works and joining "ourselves" never counts as
// having joined.
func (m *Membership) withoutSelf(seeds []string, self *memberlist.Node) []string {
	var out []string
	var local []net.IP
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local = append(local, ipn.IP)
			}
		}
	}
	for _, s := range seeds {
		host, portStr, err := net.SplitHostPort(s)
		port, perr := parsePort(portStr)
		if err != nil || perr != nil || port != int(self.Port) {
			out = append(out, s)
			continue
		}
		ips := []net.IP{net.ParseIP(host)}
		if ips[0] == nil {
			if resolved, err := net.LookupIP(host); err == nil {
				ips = resolved
			} else {
				ips = nil
			}
		}
		isSelf := false
		for _, ip := range ips {
			if ip.Equal(self.Addr) || ip.IsUnspecified() || ip.IsLoopback() && self.Addr.IsLoopback() ||
				slices.ContainsFunc(local, ip.Equal) && !self.Addr.IsLoopback() {
				isSelf = true
			}
		}
		if !isSelf {
			out = append(out, s)
		}
	}
	return out
}

func (m *Membership) setJoined() {
	m.mu.Lock()
	m.joined = true
	m.mu.Unlock()
}

// Addr returns this node's gossip address host:port as advertised to peers
// (with BindAddr port 0, the port the kernel picked).
func (m *Membership) Addr() string { return m.addr }

// LocalMember returns this node as a Member, with its current Meta.
func (m *Membership) LocalMember() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := Member{Meta: m.local.clone(), Addr: m.addr, State: Alive}
	if e, ok := m.members[m.cfg.NodeID]; ok {
		mem.State, mem.Since = e.State, e.Since
	}
	return mem
}

// Members returns every member known to this node, itself included, sorted
// by NodeID: Alive and Suspect ones, and Dead and Left ones for DeadReap after
// they went down. It reads this package's own map, so it is safe to call at
// any time (including from a Watch loop).
func (m *Membership) Members() []Member {
	return m.filter(func(State) bool { return true })
}

// Alive returns the members still in the cluster: state Alive or Suspect (a
// suspect member is a member until the failure detector declares it dead),
// sorted by NodeID, this node included.
func (m *Membership) Alive() []Member {
	return m.filter(State.up)
}

// Routable returns the members grains may be placed on: Alive, or Suspect
// unless its gossip port refuses connections (a process killed outright is
// then out of the grain topology within the first failed probe, ≈0.3 s,
// instead of after the suspicion timeout). A wrongly excluded member only
// costs a re-activation elsewhere: activation epochs fence the old one.
func (m *Membership) Routable() []Member {
	return m.filterEntries(func(e *entry) bool { return e.State.up() && !e.refused })
}

func (m *Membership) filter(keep func(State) bool) []Member {
	return m.filterEntries(func(e *entry) bool { return keep(e.State) })
}

func (m *Membership) filterEntries(keep func(*entry) bool) []Member {
	m.mu.Lock()
	out := make([]Member, 0, len(m.members))
	for name, e := range m.members {
		if !keep(e) {
			continue
		}
		mem := e.Member.clone()
		if name == m.cfg.NodeID {
			mem.Meta = m.local.clone()
		}
		out = append(out, mem)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

func (m *Membership) countByState() map[State]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := make(map[State]int, 4)
	for _, e := range m.members {
		counts[e.State]++
	}
	return counts
}

// Watch returns a channel that receives a value whenever the member set or
// any member's Meta or State changed. It has room for one value and sends
// never block: a slow reader finds one pending value and then reads the
// latest state with Members. The channel is closed by cancel and by
// Shutdown. Typical use:
//
//	ch, cancel := m.Watch()
//	defer cancel()
//	for {
//		apply(m.Members())
//		if _, ok := <-ch; !ok {
//			return
//		}
//	}
func (m *Membership) Watch() (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		close(c)
		return c, func() {}
	}
	id := m.nextW
	m.nextW++
	m.watchers[id] = c
	return c, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.watchers[id]; ok {
			delete(m.watchers, id)
			close(c)
		}
	}
}

func (m *Membership) notifyLocked() {
	for _, c := range m.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// UpdateMeta replaces this node's Meta (e.g. a new ActorSystemID after a
// rejoin, HasRaftState once bootstrapped) and gossips it with memberlist's
// UpdateNode, waiting up to TCPTimeout for the broadcast. meta.NodeID may be
// empty; otherwise it must be the node's id. A change of ActorSystemID starts
// a new life for DeclaredDead. If the broadcast times out the new meta is
// still in effect and the error wraps ErrNotBroadcast.
func (m *Membership) UpdateMeta(meta Meta) error {
	m.ctl.Lock()
	defer m.ctl.Unlock()
	if m.shutdown {
		return ErrShutdown
	}
	if meta.NodeID == "" {
		meta.NodeID = m.cfg.NodeID
	} else if meta.NodeID != m.cfg.NodeID {
		return fmt.Errorf("membership: update meta: NodeID %q differs from this node's id %q", meta.NodeID, m.cfg.NodeID)
	}
	enc, err := EncodeMeta(meta)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.leaving {
		m.mu.Unlock()
		return ErrLeft
	}
	same := bytes.Equal(enc, m.localEnc)
	if meta.ActorSystemID != m.local.ActorSystemID {
		m.newLifeLocked()
		m.log.Info("actor-system id changed", "from", m.local.ActorSystemID, "to", meta.ActorSystemID)
	}
	m.local = meta.clone()
	m.localEnc = enc
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.ml.UpdateNode(m.cfg.TCPTimeout); err != nil {
		return fmt.Errorf("%w: %v", ErrNotBroadcast, err)
	}
	return nil
}

// Leave leaves the cluster gracefully: the others see this node as Left (not
// Dead). It waits up to timeout for the leave messages to go out (a meta
// update carrying a leave flag, then memberlist's leave). The node keeps
// gossiping until Shutdown, but no longer rejoins, accepts UpdateMeta or
// reports DeclaredDead. Call Shutdown afterwards. A second call does nothing.
func (m *Membership) Leave(timeout time.Duration) error {
	m.ctl.Lock()
	defer m.ctl.Unlock()
	if m.shutdown {
		return ErrShutdown
	}
	deadline := time.Now().Add(timeout)
	m.mu.Lock()
	if m.leaving {
		m.mu.Unlock()
		return nil
	}
	m.leaving = true
	m.localEnc = withLeaving(m.localEnc)
	m.mu.Unlock()
	// First gossip the leave flag in our meta and wait for it to go out, so
	// that the others map the death notice that follows to Left (memberlist
	// v0.7.0 does not tell them). If it times out, they may see Dead.
	if err := m.ml.UpdateNode(max(time.Until(deadline)/3, time.Millisecond)); err != nil {
		m.log.Warn("leave flag not broadcast in time; some members may see this node as dead rather than left", "err", err)
	}
	// Gossip is UDP: tell everyone over TCP as well.
	m.tellLeaving(max(time.Until(deadline)/2, time.Millisecond))
	if err := m.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("membership: leave: %w (the others will see this node as dead, not left)", err)
	}
	m.log.Info("left the cluster")
	return nil
}

// Shutdown stops gossip without leaving (the others will declare this node
// dead: call Leave first for a graceful exit), stops the background work,
// closes every Watch channel and unregisters the metrics. It is idempotent.
func (m *Membership) Shutdown() error {
	m.ctl.Lock()
	defer m.ctl.Unlock()
	if m.shutdown {
		return nil
	}
	m.shutdown = true
	close(m.stop)
	err := m.ml.Shutdown()
	m.wg.Wait()
	m.met.unregister()
	m.mu.Lock()
	m.closed = true
	for id, c := range m.watchers {
		delete(m.watchers, id)
		close(c)
	}
	m.mu.Unlock()
	m.log.Info("membership stopped")
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// joinLoop retries the seeds while the node has not joined or has lost every
// peer; joins the new address of dead members that were claimed from another
// address (restarts elsewhere); and tries to reconnect to one random dead
// member per round, so that both sides of a healed partition (which never
// probe each other again) merge back, as Serf's reconnect does.
func (m *Membership) joinLoop() {
	type target struct{ name, addr string }
	t := time.NewTicker(m.cfg.JoinRetryInterval)
	defer t.Stop()
	var failures int
	var lastWarn time.Time
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		if m.leaving {
			m.mu.Unlock()
			return
		}
		joined := m.joined
		upOthers := 0
		var dead, claimants []target
		for name, e := range m.members {
			switch {
			case name == m.cfg.NodeID:
			case e.State.up():
				upOthers++
			case e.State == Dead && e.claimant != "":
				claimants = append(claimants, target{name, e.claimant})
			case e.State == Dead && e.Addr != "":
				dead = append(dead, target{name, e.Addr})
			}
		}
		m.mu.Unlock()

		if len(m.seeds) > 0 && (!joined || upOthers == 0) {
			n, err := m.ml.Join(m.seeds)
			switch {
			case n > 0:
				m.setJoined()
				m.log.Info("joined the cluster", "seeds_answered", n, "failed_attempts", failures)
				failures = 0
			case time.Since(lastWarn) >= 30*time.Second:
				failures++
				lastWarn = time.Now()
				m.log.Warn("no seed answered; still retrying", "seeds", m.seeds, "attempts", failures, "err", joinErr(err))
			default:
				failures++
				m.log.Debug("no seed answered", "seeds", m.seeds, "attempts", failures, "err", joinErr(err))
			}
		}
		for _, c := range claimants {
			if n, err := m.ml.Join([]string{c.addr}); n > 0 {
				m.log.Info("joined the new address of a dead member (restarted elsewhere?)", "member", c.name, "addr", c.addr)
			} else {
				// Give up on it (memberlist reports it again if it claims
				// the name again); the dead-member reconnect goes on.
				m.log.Debug("join of a dead member's new address failed", "member", c.name, "addr", c.addr, "err", joinErr(err))
				m.mu.Lock()
				if e, ok := m.members[c.name]; ok && e.claimant == c.addr {
					e.claimant = ""
				}
				m.mu.Unlock()
			}
		}
		if joined && len(dead) > 0 {
			d := dead[rand.IntN(len(dead))]
			if n, err := m.ml.Join([]string{d.addr}); n > 0 {
				m.log.Info("reconnected to a member considered dead (partition healed?)", "member", d.name, "addr", d.addr)
			} else {
				m.log.Debug("reconnect to dead member failed", "member", d.name, "addr", d.addr, "err", joinErr(err))
			}
		}
	}
}

// maintainLoop expires stale suspicions, forgets members dead or left for
// longer than DeadReap, and runs the DeclaredDead backstop.
func (m *Membership) maintainLoop() {
	every := min(max(m.cfg.ProbeInterval/2, 50*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		m.mu.Lock()
		changed := false
		expire := m.maxSuspicionLocked()
		for name, e := range m.members {
			switch {
			case e.State == Suspect && now.Sub(e.Since) > expire:
				// Not declared dead within memberlist's longest suspicion
				// timeout: the member refuted it.
				m.setStateLocked(e, Alive, now)
				m.log.Info("member no longer suspect", "member", name, "how", "suspicion expired")
				changed = true
			case name != m.cfg.NodeID && !e.State.up() && now.Sub(e.Since) > m.cfg.DeadReap:
				delete(m.members, name)
				delete(m.accusers, name)
				m.log.Info("forgot member", "member", name, "state", e.State, "since", e.Since)
				changed = true
			}
		}
		m.checkBlockedPeersLocked(now)
		if changed {
			m.notifyLocked()
		}
		m.mu.Unlock()
	}
}

// maxSuspicionLocked is the longest a member can stay suspect in memberlist
// before being declared dead (state.go suspectNode): SuspicionMult ×
// max(1, log10 N) × ProbeInterval, times SuspicionMaxTimeoutMult (6) when
// confirmations are expected (SuspicionMult ≥ 3), plus two probe intervals of
// slack for the gossip.
func (m *Membership) maxSuspicionLocked() time.Duration {
	n := 0
	for _, e := range m.members {
		if e.State.up() {
			n++
		}
	}
	scale := math.Max(1, math.Log10(float64(max(n, 1))))
	timeout := time.Duration(float64(m.cfg.SuspicionMult) * scale * float64(m.cfg.ProbeInterval))
	if m.cfg.SuspicionMult >= 3 {
		timeout *= 6
	}
	return timeout + 2*m.cfg.ProbeInterval
}

// onSuspect is called (memberlist's lock may be held) when this node's probe
// of member failed and memberlist starts suspecting it.
func (m *Membership) onSuspect(member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.members[member]; ok && e.State == Alive && member != m.cfg.NodeID {
		m.setStateLocked(e, Suspect, time.Now())
		m.notifyLocked()
		m.log.Info("member suspect", "member", member, "addr", e.Addr)
		go m.checkRefused(member, e.Addr, 1)
	}
}

// checkRefused dials a suspect member's gossip port once: a refused
// connection means its process is gone.
func (m *Membership) checkRefused(member, addr string, tries int) {
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, m.cfg.ProbeTimeout+100*time.Millisecond)
		if err == nil {
			c.Close()
			if i+1 >= tries {
				return
			}
			// A process being killed closes its connections before its
			// listeners: look again shortly.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		break
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.members[member]; ok && e.State.up() && e.Addr == addr && !e.refused {
		e.refused = true
		m.notifyLocked()
		m.log.Info("member refuses connections: no longer routable", "member", member, "addr", addr, "state", e.State)
	}
}

// CheckActorAddress is a hint that the connection to the actor system at
// addr (host:port) broke: the member it belongs to is checked at once, as a
// suspect is (its gossip port is dialled; a refusal makes it unroutable).
// A node killed outright thus leaves the grain topology within milliseconds
// instead of after the failure detector's probes.
func (m *Membership) CheckActorAddress(addr string) {
	m.mu.Lock()
	var member, gossip string
	for name, e := range m.members {
		if name != m.cfg.NodeID && e.State.up() && e.ActorHost != "" &&
			net.JoinHostPort(e.ActorHost, strconv.Itoa(e.ActorPort)) == addr {
			member, gossip = name, e.Addr
		}
	}
	m.mu.Unlock()
	if member != "" {
		go m.checkRefused(member, gossip, 3)
	}
}

// onAck is called when member answered this node's direct probe.
func (m *Membership) onAck(member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.members[member]; ok && e.State == Suspect {
		m.setStateLocked(e, Alive, time.Now())
		m.notifyLocked()
		m.log.Info("member no longer suspect", "member", member, "how", "answered a probe")
	} else if ok && e.refused {
		e.refused = false
		m.notifyLocked()
	}
}

func (m *Membership) setStateLocked(e *entry, s State, now time.Time) {
	if e.State != s {
		if s == Alive || !s.up() {
			e.refused = false // it answered, or it is out anyway
		}
		e.State = s
		e.Since = now
	}
}
