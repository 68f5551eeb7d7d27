package sessionclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 3 * time.Second
	DefaultMinBackoff       = 50 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
	DefaultGiveUpAfter      = 60 * time.Second
	// DefaultWindow is the default number of durable frames that may be
	// unconfirmed at once; Send blocks while that many are.
	DefaultWindow = 256
	// DefaultProbeInterval and DefaultProbeTimeout: see Config.
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 3 * time.Second
	// DefaultConfirmTimeout: see Config.
	DefaultConfirmTimeout = 30 * time.Second
)

// SessionPath is the HTTP path of the session endpoint on a node.
const SessionPath = "/v1/session"

// DialFunc opens a WebSocket connection. It has the signature of
// websocket.Dial, which is the default; tests replace it to count or fail
// dials.
type DialFunc func(ctx context.Context, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error)

// Config says how a Session reaches the cluster and how hard it tries.
// The zero value of every field but Nodes is replaced by its default.
type Config struct {
	// Nodes are the cluster's session endpoints, tried in order for the first
	// connection and round robin (starting after the one that failed) when
	// reconnecting: wss://host:port/v1/session or ws://… (a node with
	// session.plaintext); a bare host:port means wss://host:port/v1/session.
	Nodes []string
	// TLS configures wss:// connections (for example RootCAs = the cluster
	// CA). Nil means the system roots.
	TLS *tls.Config
	// HandshakeTimeout bounds one attempt: dial, upgrade, hello, welcome.
	// The welcome of a resume may wait for the cluster to re-activate the
	// session after a node died, so this is generous.
	HandshakeTimeout time.Duration
	// DialTimeout bounds the first part of an attempt: TCP connect, TLS and
	// the WebSocket upgrade, which a running node completes in milliseconds
	// whatever its cluster is doing. A frozen node's kernel still accepts
	// the TCP connection, and without this bound a resume that picked it
	// would wait the whole HandshakeTimeout (or until the node thaws)
	// before trying the next node. Default 3 s; at most HandshakeTimeout.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential pause between
	// two full rounds over Nodes.
	MinBackoff, MaxBackoff time.Duration
	// GiveUpAfter is how long a Session keeps trying to resume before it
	// reports ErrUnavailable (and how long Open and Join try at most).
	GiveUpAfter time.Duration
	// Window bounds the unconfirmed durable frames (default 256).
	Window int
	// ProbeInterval and ProbeTimeout make the client notice a node that
	// stopped answering (cut off by a network partition, frozen) well
	// before the protocol's 3 × heartbeat_s of silence: the client sends a
	// ping when it has received nothing for ProbeInterval, or for a second
	// while durable frames it wrote wait for their confirmation, and gives
	// the connection up (resuming on another node) when nothing at all
	// arrives within ProbeTimeout of that ping. A node answers pings at
	// once, even while its session grain is busy, so only a node that
	// cannot be reached or does not run is given up. Defaults 5 s and 3 s;
	// a negative ProbeInterval turns probing off.
	ProbeInterval, ProbeTimeout time.Duration
	// ConfirmTimeout gives a connection up (resuming on another node, which
	// re-sends what is unconfirmed) when durable frames wait that long for
	// their confirmation although the node answers pings and the client
	// re-sends them every second: a node that takes frames but can no
	// longer get them written is as good as gone. Default 30 s: well
	// above the stalls a node recovers from by itself (a Raft election, a
	// rejoin after it was frozen; they used to last up to ≈10 s,
	// docs/chaos.md), so that it does not turn them into resumes;
	// negative turns it off.
	ConfirmTimeout time.Duration
	// Logger receives Debug lines for reconnect attempts and Info lines for
	// resumes; nil discards.
	Logger *slog.Logger
	// Dialer replaces websocket.Dial (tests).
	Dialer DialFunc
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.GiveUpAfter == 0 {
		c.GiveUpAfter = DefaultGiveUpAfter
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dialer == nil {
		c.Dialer = websocket.Dial
	}
	return c
}

// Validate reports every problem of c at once (after defaults are applied,
// so zero durations are fine).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("field Nodes: at least one node address is needed"))
	}
	for i, n := range c.Nodes {
		if _, err := NodeURL(n); err != nil {
			errs = append(errs, fmt.Errorf("field Nodes[%d]: %w", i, err))
		}
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("field HandshakeTimeout %v: must be positive", c.HandshakeTimeout))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("field DialTimeout %v: must be positive", c.DialTimeout))
	}
	if c.MinBackoff < 0 {
		errs = append(errs, fmt.Errorf("field MinBackoff %v: must be positive", c.MinBackoff))
	}
	if c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("field MaxBackoff %v: must be at least MinBackoff (%v)", c.MaxBackoff, c.MinBackoff))
	}
	if c.GiveUpAfter < 0 {
		errs = append(errs, fmt.Errorf("field GiveUpAfter %v: must be positive", c.GiveUpAfter))
	}
	if c.ProbeTimeout < 0 {
		errs = append(errs, fmt.Errorf("field ProbeTimeout %v: must be positive", c.ProbeTimeout))
	}
	if c.Window < 1 || c.Window > 1<<20 {
		errs = append(errs, fmt.Errorf("field Window %d: must be between 1 and 1048576", c.Window))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("sessionclient: invalid config: %w", errors.Join(errs...))
}

// NodeURL turns a node address into the URL of its session endpoint: a bare
// host:port becomes wss://host:port/v1/session; a ws:// or wss:// URL without
// a path gets /v1/session.
func NodeURL(node string) (string, error) {
	node = strings.TrimSpace(node)
	if node == "" {
		return "", errors.New("empty node address")
	}
	if !strings.Contains(node, "://") {
		if _, _, err := net.SplitHostPort(node); err != nil {
			return "", fmt.Errorf("%q is neither host:port nor a ws:// or wss:// URL: %w", node, err)
		}
		return "wss://" + node + SessionPath, nil
	}
	u, err := url.Parse(node)
	if err != nil {
		return "", fmt.Errorf("%q: %w", node, err)
	}
	if u.Scheme != "wss" && u.Scheme != "ws" {
		return "", fmt.Errorf("%q: scheme must be wss or ws, not %q", node, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", node)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = SessionPath
	}
	return u.String(), nil
}
