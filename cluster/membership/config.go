package membership

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the node's membership. Keys in Validate's messages are
// the names the server's configuration file uses ("gossip.probe_interval").
//
// The failure-detection timings (ProbeInterval, ProbeTimeout, SuspicionMult,
// GossipInterval) are memberlist's; see the package documentation for how
// they add up to the detection time and for the flap risk of tight values.
type Config struct {
	// NodeID is the stable node name: memberlist node name and Raft server id.
	NodeID string
	// BindAddr is the gossip address host:port (UDP and TCP). The host must be
	// an IP address (0.0.0.0 = all interfaces; memberlist then advertises a
	// private address). Port 0 picks a free port (tests); read it back from
	// Membership.Addr. Ignored when Transport is set.
	BindAddr string
	// AdvertiseAddr is the address peers use, host or host:port, when it
	// differs from BindAddr (NAT, containers). Empty = derived from BindAddr.
	AdvertiseAddr string
	// Join lists seed addresses host:port. Empty = this is the first node.
	// The node's own address may be listed (all nodes can share one list).
	Join []string
	// SecretKey encrypts and authenticates gossip: 16, 24 or 32 bytes
	// (AES-128/192/256), see ParseSecretKey. Nil = unencrypted (a warning is
	// logged). Every node of a cluster must use the same key.
	SecretKey []byte

	ProbeInterval    time.Duration // time between two probes of random members
	ProbeTimeout     time.Duration // wait for a direct ack before indirect probes; ≈ p99 round trip
	GossipInterval   time.Duration // time between gossip rounds (state changes spread)
	PushPullInterval time.Duration // time between full state syncs with a random member (0 = never)
	TCPTimeout       time.Duration // dial and I/O timeout of push/pull and join streams
	SuspicionMult    int           // suspicion timeout = SuspicionMult × max(1, log10(N)) × ProbeInterval
	RetransmitMult   int           // a gossip message is retransmitted RetransmitMult × ceil(log10(N+1)) times
	IndirectChecks   int           // members asked to probe a member that failed a direct probe

	// JoinRetryInterval is how often the node retries the seeds while it has
	// not joined (or has lost every peer), and how often it tries to reconnect
	// to one member it considers dead, so that partitions heal.
	JoinRetryInterval time.Duration
	// DeadReap is how long Dead and Left members stay in Members() (and are
	// retried for reconnection, if Dead) before being forgotten. Default 24h.
	DeadReap time.Duration
	// RejoinGrace is how long a member this node declared dead may be alive
	// again under the same actor-system id before this node assumes it will
	// not rejoin and fires DeclaredDead itself (its actor system blocks that
	// member for good; a new one does not). It must exceed the time a node
	// needs to react to DeclaredDead. Default 15s.
	RejoinGrace time.Duration

	// Logger receives the package's logs (component=membership) and
	// memberlist's own lines mapped to slog levels. Nil = slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil = not registered.
	Registerer prometheus.Registerer

	// Transport replaces the UDP/TCP transport built from BindAddr. For tests
	// and the chaos harness only (see PausableTransport, ListenGossip); nil =
	// default. Start takes ownership: Shutdown (or a failed Start) shuts it
	// down.
	Transport memberlist.NodeAwareTransport
}

// DefaultConfig returns a configuration tuned for a LAN with fast failure
// detection (measured here: a killed node is declared dead in ≈0.8 s with
// three nodes, where memberlist's DefaultLANConfig takes ≈6 s). The caller
// sets NodeID, BindAddr and Join.
func DefaultConfig() Config {
	return Config{
		BindAddr:          "0.0.0.0:7946",
		ProbeInterval:     200 * time.Millisecond,
		ProbeTimeout:      100 * time.Millisecond,
		GossipInterval:    100 * time.Millisecond,
		PushPullInterval:  5 * time.Second,
		TCPTimeout:        2 * time.Second,
		SuspicionMult:     2,
		RetransmitMult:    4,
		IndirectChecks:    3,
		JoinRetryInterval: 1 * time.Second,
		DeadReap:          24 * time.Hour,
		RejoinGrace:       15 * time.Second,
	}
}

// PauseThreshold is the gap in this process's execution after which the pause
// watchdog assumes the other members may have declared this node dead:
// ProbeInterval × (1 + SuspicionMult). That is the shortest path to a death
// declaration: one probe round to go from a failed probe to suspicion, then
// the suspicion timeout, whose minimum (≤ 10 members, no confirmations
// expected) is SuspicionMult × ProbeInterval. With the defaults: 600 ms.
func (c Config) PauseThreshold() time.Duration {
	return c.ProbeInterval * time.Duration(1+c.SuspicionMult)
}

// Validate reports every problem at once, naming the key.
func (c Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if strings.TrimSpace(c.NodeID) == "" {
		add("node_id: must be set (a stable name for this node, e.g. its host name)")
	}
	if c.Transport == nil {
		if err := checkHostPort(c.BindAddr, true); err != nil {
			add("gossip.bind_addr: %v", err)
		}
	}
	if c.AdvertiseAddr != "" {
		host := c.AdvertiseAddr
		if h, p, err := net.SplitHostPort(c.AdvertiseAddr); err == nil {
			host = h
			if _, err := parsePort(p); err != nil {
				add("gossip.advertise_addr: %q: %v", c.AdvertiseAddr, err)
			}
		}
		if net.ParseIP(host) == nil {
			add("gossip.advertise_addr: %q: host must be an IP address", c.AdvertiseAddr)
		}
	}
	for i, j := range c.Join {
		if err := checkHostPort(j, false); err != nil {
			add("gossip.join[%d]: %v", i, err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		add("gossip.secret_key: %d bytes; must be 16, 24 or 32 (AES-128/192/256) or empty for no encryption", len(c.SecretKey))
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add("%s: must be positive (got %v)", key, d)
		}
	}
	positive("gossip.probe_interval", c.ProbeInterval)
	positive("gossip.probe_timeout", c.ProbeTimeout)
	if c.ProbeTimeout > 0 && c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		add("gossip.probe_timeout: %v must be shorter than gossip.probe_interval (%v)", c.ProbeTimeout, c.ProbeInterval)
	}
	positive("gossip.gossip_interval", c.GossipInterval)
	if c.PushPullInterval < 0 {
		add("gossip.push_pull_interval: must not be negative (0 disables full state syncs)")
	}
	positive("gossip.tcp_timeout", c.TCPTimeout)
	if c.SuspicionMult < 1 {
		add("gossip.suspicion_mult: must be at least 1 (got %d)", c.SuspicionMult)
	}
	if c.RetransmitMult < 1 {
		add("gossip.retransmit_mult: must be at least 1 (got %d)", c.RetransmitMult)
	}
	if c.IndirectChecks < 0 {
		add("gossip.indirect_checks: must not be negative (got %d)", c.IndirectChecks)
	}
	positive("gossip.join_retry_interval", c.JoinRetryInterval)
	positive("gossip.dead_reap", c.DeadReap)
	positive("gossip.rejoin_grace", c.RejoinGrace)
	if len(errs) > 0 {
		return fmt.Errorf("membership: invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number in 0..65535", p)
	}
	return n, nil
}

// checkHostPort checks host:port; for a bind address the host must be an IP.
func checkHostPort(s string, bind bool) error {
	if s == "" {
		return fmt.Errorf("must be set (host:port)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q: host is empty", s)
	}
	if bind && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: host must be an IP address (0.0.0.0 for all interfaces)", s)
	}
	return nil
}

// ParseSecretKey decodes a gossip key given as standard base64 of 16, 24 or
// 32 bytes (GenerateSecretKey's format).
func ParseSecretKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("membership: gossip secret key is empty (generate one with GenerateSecretKey)")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip secret key is not standard base64: %w", err)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	default:
		return nil, fmt.Errorf("membership: gossip secret key decodes to %d bytes; it must be 16, 24 or 32 (AES-128/192/256)", len(b))
	}
}

// GenerateSecretKey returns a new random 32-byte (AES-256) gossip key in
// standard base64, the format ParseSecretKey reads.
func GenerateSecretKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the OS has no entropy)
	return base64.StdEncoding.EncodeToString(b)
}
