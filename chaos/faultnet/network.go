package faultnet

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Network is a set of named nodes and the faults on the links between them.
// It is safe for concurrent use. The zero value is not usable: call New.
type Network struct {
	opts options
	log  *slog.Logger

	mu       sync.Mutex
	nodes    map[string]bool
	addrs    map[string]string // canonical address -> node
	rules    map[Link]rule
	isolated map[string]bool
	changed  chan struct{} // closed and replaced whenever rules change
	rng      *rand.Rand
	counters map[Link]*counters
	conns    map[*conn]struct{}
}

// rule is the set of faults on one link. The zero rule is a healthy link.
type rule struct {
	blocked bool
	delay   time.Duration
	jitter  time.Duration
	loss    float64
}

// New returns a Network without nodes or faults. It panics if an option was
// given an invalid value, listing every such problem.
func New(opts ...Option) *Network {
	o, err := buildOptions(opts)
	if err != nil {
		panic(err)
	}
	if !o.seeded {
		o.seed = rand.Int64()
	}
	n := &Network{
		opts:     o,
		log:      o.logger.With("component", "faultnet"),
		nodes:    map[string]bool{},
		addrs:    map[string]string{},
		rules:    map[Link]rule{},
		isolated: map[string]bool{},
		changed:  make(chan struct{}),
		rng:      rand.New(rand.NewPCG(uint64(o.seed), 0x6661756c746e6574)), // "faultnet"
		counters: map[Link]*counters{},
		conns:    map[*conn]struct{}{},
	}
	n.log.Info("network created", "seed", o.seed, "rto", o.rto, "linger", o.linger,
		"buffer_size", o.bufferSize, "stalling_dials", o.stallDials)
	return n
}

// Register records the addresses (host:port) at which node is reached, adding
// to those already registered. A node must be registered, with or without
// addresses, for its dials to go through faultnet. Addresses are matched
// textually after canonicalising IP literals (so "[::ffff:127.0.0.1]:80" is
// "127.0.0.1:80"); host names are not resolved. Registering an address that
// belonged to another node moves it to node.
func (n *Network) Register(node string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[node] = true
	for _, a := range addrs {
		c := canonicalAddr(a)
		if prev, ok := n.addrs[c]; ok && prev != node {
			n.log.Warn("address moved to another node", "addr", c, "from_node", prev, "to_node", node)
		}
		n.addrs[c] = node
	}
	n.log.Debug("node registered", "node", node, "addrs", addrs)
}

// Partition blocks, in both directions, every link between nodes of
// different groups. Nodes named in no group keep full connectivity, and the
// faults already set remain (call Heal first to replace them). A node named
// in two groups is cut from the members of both but not from itself.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	for i, gi := range groups {
		for j, gj := range groups {
			if i == j {
				continue
			}
			for _, a := range gi {
				for _, b := range gj {
					if a != b {
						n.updateLocked(Link{From: a, To: b}, func(r *rule) { r.blocked = true })
					}
				}
			}
		}
	}
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("partition", "groups", groups)
}

// Isolate blocks every link to and from node, including links to nodes
// registered later, until Heal.
func (n *Network) Isolate(node string) {
	n.mu.Lock()
	n.isolated[node] = true
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("isolate", "node", node)
}

// Block stops data from `from` to `to` (one way): writes from `from` and
// reads at `to` stall, and dials between them in either direction fail.
func (n *Network) Block(from, to string) {
	n.mu.Lock()
	n.updateLocked(Link{From: from, To: to}, func(r *rule) { r.blocked = true })
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("block", "from", from, "to", to)
}

// Unblock removes the block on from -> to set by Block or Partition (not an
// isolation of either node), waking the traffic stalled on it.
func (n *Network) Unblock(from, to string) {
	n.mu.Lock()
	n.updateLocked(Link{From: from, To: to}, func(r *rule) { r.blocked = false })
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("unblock", "from", from, "to", to)
}

// SetDelay makes each segment from `from` to `to` deliverable delay plus a
// uniform random jitter in [0, jitter) after it was sent, in order. Zero
// values remove the delay. It panics if delay or jitter is negative.
func (n *Network) SetDelay(from, to string, delay, jitter time.Duration) {
	if delay < 0 || jitter < 0 {
		panic(fmt.Sprintf("faultnet: SetDelay(%q, %q): negative delay %v or jitter %v", from, to, delay, jitter))
	}
	n.mu.Lock()
	n.updateLocked(Link{From: from, To: to}, func(r *rule) { r.delay, r.jitter = delay, jitter })
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("delay", "from", from, "to", to, "delay", delay, "jitter", jitter)
}

// SetLoss makes each segment from `from` to `to` lost with probability p.
// As TCP retransmits it, a lost segment is delivered one RTO (WithRTO) late,
// delaying the segments behind it too: nothing is lost or reordered. Zero
// removes the loss. It panics unless 0 <= p <= 1.
func (n *Network) SetLoss(from, to string, p float64) {
	if !(p >= 0 && p <= 1) { // also rejects NaN
		panic(fmt.Sprintf("faultnet: SetLoss(%q, %q): probability %v outside [0, 1]", from, to, p))
	}
	n.mu.Lock()
	n.updateLocked(Link{From: from, To: to}, func(r *rule) { r.loss = p })
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("loss", "from", from, "to", to, "p", p)
}

// Heal removes every fault (blocks, partitions, isolations, delays, losses).
// Stalled reads, writes and dials resume at once; segments already delayed
// keep the delivery time they were given.
func (n *Network) Heal() {
	n.mu.Lock()
	n.rules = map[Link]rule{}
	n.isolated = map[string]bool{}
	n.broadcastLocked()
	n.mu.Unlock()
	n.log.Info("heal")
}

// ResetConnections closes abortively, like an RST, every open faultnet
// connection between a and b (dialed by either). Data not yet delivered is
// dropped; pending and later calls on them fail with ErrReset, and the peer
// sees the connection reset. New connections are not affected. It returns
// the number of connections reset.
func (n *Network) ResetConnections(a, b string) int {
	n.mu.Lock()
	var victims []*conn
	for c := range n.conns {
		if c.link == (Link{From: a, To: b}) || c.link == (Link{From: b, To: a}) {
			victims = append(victims, c)
		}
	}
	n.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
	n.log.Info("reset connections", "a", a, "b", b, "count", len(victims))
	return len(victims)
}

// Stats returns a snapshot of the counters of every link that has carried a
// faultnet connection or a refused dial. Links absent from the map have
// all-zero stats.
func (n *Network) Stats() map[Link]LinkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[Link]LinkStats, len(n.counters))
	for l, c := range n.counters {
		out[l] = c.snapshot()
	}
	for c := range n.conns {
		s := out[c.link]
		s.Conns++
		out[c.link] = s
	}
	return out
}

// updateLocked applies f to the rule of l, dropping rules that become
// healthy. n.mu must be held.
func (n *Network) updateLocked(l Link, f func(*rule)) {
	r := n.rules[l]
	f(&r)
	if r == (rule{}) {
		delete(n.rules, l)
		return
	}
	n.rules[l] = r
}

// broadcastLocked wakes every goroutine waiting for a rule change. n.mu must
// be held.
func (n *Network) broadcastLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// blockedLocked reports whether l is blocked. n.mu must be held.
func (n *Network) blockedLocked(l Link) bool {
	return n.isolated[l.From] || n.isolated[l.To] || n.rules[l].blocked
}

// linkOpen reports whether l is open now and returns a channel closed at the
// next rule change.
func (n *Network) linkOpen(l Link) (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.blockedLocked(l), n.changed
}

// handshakeBlocked reports which direction of l, if any, stops a handshake,
// and returns a channel closed at the next rule change.
func (n *Network) handshakeBlocked(l Link) (Link, bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.blockedLocked(l):
		return l, true, n.changed
	case n.blockedLocked(l.Reverse()):
		return l.Reverse(), true, n.changed
	}
	return Link{}, false, n.changed
}

// latency draws the delay of one segment sent on l now.
func (n *Network) latency(l Link) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.rules[l]
	if !ok {
		return 0
	}
	d := r.delay
	if r.jitter > 0 {
		d += time.Duration(n.rng.Int64N(int64(r.jitter)))
	}
	if r.loss > 0 && n.rng.Float64() < r.loss {
		d += n.opts.rto
	}
	return d
}

// target returns the node that dialing addr from `from` reaches, and whether
// faultnet applies to that dial at all.
func (n *Network) target(from, network, addr string) (string, bool) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return "", false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.nodes[from] {
		return "", false
	}
	to, ok := n.addrs[canonicalAddr(addr)]
	if !ok || to == from {
		return "", false
	}
	return to, true
}

// counter returns the live counters of l.
func (n *Network) counter(l Link) *counters {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counterLocked(l)
}

func (n *Network) counterLocked(l Link) *counters {
	c, ok := n.counters[l]
	if !ok {
		c = &counters{}
		n.counters[l] = c
	}
	return c
}

// track and forget maintain the set of open connections.
func (n *Network) track(c *conn) {
	n.mu.Lock()
	n.conns[c] = struct{}{}
	n.mu.Unlock()
}

func (n *Network) forget(c *conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// canonicalAddr normalises host:port so that equivalent IP literals match.
func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	} else {
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, port)
}
