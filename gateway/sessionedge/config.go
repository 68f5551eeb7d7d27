package sessionedge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the session edge of one node.
type Config struct {
	// NodeID names this node in welcomes and connection records.
	NodeID string
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect; a request with any other Origin header is refused. Native
	// clients send no Origin and are always accepted.
	AllowedOrigins []string
	// HostTokens authenticate supporters who open sessions with a token
	// from the configuration (they belong to no tenant).
	HostTokens *HostTokens
	// Accounts, when set, also authenticates supporters by their admin
	// account (a token from the admin API's login, or an API client's
	// "name:secret"); tried when the token is not a configured host token.
	Accounts HostAuthenticator
	// MaxConnections bounds the connections of this node.
	MaxConnections int
	// Heartbeat is the heartbeat_s announced to clients; a connection that
	// sends nothing for 3×Heartbeat is closed.
	Heartbeat time.Duration
	// HandshakeTimeout bounds the wait for the first message and for the
	// cluster's answer to it.
	HandshakeTimeout time.Duration
	// CallTimeout bounds one command to a session grain, retries included.
	CallTimeout time.Duration
	// ControlRate and ControlBurst limit control messages per connection.
	ControlRate, ControlBurst float64
	// IsolationGrace is how long the node may be cut off from the cluster
	// (Node.Healthy failing) before its clients are sent to other nodes.
	IsolationGrace time.Duration
	// SendQueue is the number of frames a connection buffers toward a client
	// before it stops reading pushes (durable messages are then re-read from
	// the log; stream frames are dropped and a gap is reported).
	SendQueue int
	Logger    *slog.Logger
	// Registerer receives the edge's metrics (nil = none).
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults; the caller sets NodeID and HostTokens.
func DefaultConfig() Config {
	return Config{
		MaxConnections:   10000,
		Heartbeat:        15 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		CallTimeout:      10 * time.Second,
		ControlRate:      50,
		ControlBurst:     100,
		SendQueue:        1024,
		IsolationGrace:   3 * time.Second,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node_id: must be set"))
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("session.allowed_origins: %q: %w", o, err))
		}
	}
	if c.HostTokens == nil {
		errs = append(errs, errors.New("session.host_tokens: no host tokens (the node creates one at first start)"))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("session.max_connections: %d must be at least 1", c.MaxConnections))
	}
	if c.IsolationGrace < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("session.isolation_grace: %v must be at least 100ms", c.IsolationGrace))
	}
	if c.Heartbeat < time.Second {
		errs = append(errs, fmt.Errorf("session.heartbeat: %v must be at least 1s", c.Heartbeat))
	}
	if c.HandshakeTimeout <= 0 {
		errs = append(errs, errors.New("session.handshake_timeout: must be positive (e.g. 10s)"))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, errors.New("session.call_timeout: must be positive (e.g. 10s)"))
	}
	if c.ControlRate <= 0 || c.ControlBurst < 1 {
		errs = append(errs, errors.New("control rate and burst must be positive"))
	}
	if c.SendQueue < 16 {
		errs = append(errs, fmt.Errorf("send queue %d must be at least 16", c.SendQueue))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sessionedge: invalid configuration: %w", err)
	}
	return nil
}

func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return errors.New("must be scheme://host[:port], e.g. https://support.example.com")
	}
	return nil
}

// HostAuthenticator authenticates a supporter opening a session by the token
// of its open message. It returns the account name and its tenant; ok is
// false for an unknown, invalid or insufficient credential (a role that may
// not open sessions).
type HostAuthenticator interface {
	AuthenticateHost(ctx context.Context, token string) (user, tenant string, ok bool)
}

// HostTokens authenticates supporters by token. Tokens are kept only as
// SHA-256 hashes.
type HostTokens struct {
	users  []string
	hashes [][32]byte
}

// ParseHostTokens reads entries "user:token" or "user:sha256:<64 hex>";
// clear tokens must be at least 16 characters.
func ParseHostTokens(entries []string) (*HostTokens, error) {
	t := &HostTokens{}
	var errs []error
	for i, e := range entries {
		user, secret, ok := strings.Cut(e, ":")
		if !ok || user == "" || secret == "" {
			errs = append(errs, fmt.Errorf("entry %d: not user:token", i+1))
			continue
		}
		var h [32]byte
		if hx, isHash := strings.CutPrefix(secret, "sha256:"); isHash {
			b, err := hex.DecodeString(hx)
			if err != nil || len(b) != 32 {
				errs = append(errs, fmt.Errorf("entry %d (%s): sha256: must be followed by 64 hex digits", i+1, user))
				continue
			}
			copy(h[:], b)
		} else {
			if len(secret) < 16 {
				errs = append(errs, fmt.Errorf("entry %d (%s): token is shorter than 16 characters", i+1, user))
				continue
			}
			h = sha256.Sum256([]byte(secret))
		}
		t.users = append(t.users, user)
		t.hashes = append(t.hashes, h)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Len is the number of tokens.
func (t *HostTokens) Len() int { return len(t.users) }

// Check returns the user a token belongs to. It compares against every
// entry in constant time per entry.
func (t *HostTokens) Check(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	user, found := "", false
	for i := range t.hashes {
		if subtle.ConstantTimeCompare(h[:], t.hashes[i][:]) == 1 && !found {
			user, found = t.users[i], true
		}
	}
	return user, found
}
