package voters

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Member is what the reconciler needs to know about a cluster member (the
// caller adapts the membership layer to it).
type Member struct {
	ID           string    // Raft server id (= node name)
	RaftAddr     string    // address of the member's Raft transport
	APIAddr      string    // address of the member's Log gRPC API (for Status)
	Alive        bool      // false = dead or left (as seen by the failure detector)
	Since        time.Time // when it entered its current Alive/not-alive state (zero = unknown: counted from when the reconciler first sees it so)
	HasRaftState bool      // the member reports Raft state (bootstrapped or added)
}

// Config configures a Reconciler.
type Config struct {
	// BootstrapExpect: 0 = disabled (the node was bootstrapped alone, or
	// joins an existing cluster); N = bootstrap once N alive members without
	// Raft state are seen (see the package documentation).
	BootstrapExpect int
	// DeadServerGrace: a member not alive for longer than this is removed
	// from the configuration.
	DeadServerGrace time.Duration
	// StabilizationTime: a non-voter must be caught up and healthy this long
	// before it is promoted to voter.
	StabilizationTime time.Duration
	// MaxLag: a non-voter's applied index may trail the leader's commit
	// index by at most this to count as caught up.
	MaxLag uint64
	// Interval: a pass runs at least this often, even without membership
	// signals.
	Interval time.Duration
	// StatusTimeout bounds one Status call to a non-voter.
	StatusTimeout time.Duration

	Logger     *slog.Logger          // nil = slog.Default()
	Registerer prometheus.Registerer // nil = metrics are not registered
}

// DefaultConfig returns the defaults: no bootstrap_expect, 30 s grace, 3 s
// stabilization, lag of at most 256 entries, a pass every second, 2 s status
// timeout.
func DefaultConfig() Config {
	return Config{
		DeadServerGrace:   30 * time.Second,
		StabilizationTime: 3 * time.Second,
		MaxLag:            256,
		Interval:          time.Second,
		StatusTimeout:     2 * time.Second,
	}
}

// Validate reports every problem at once, naming the key.
func (c Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.BootstrapExpect < 0 {
		add("bootstrap_expect: %d is negative (0 disables it)", c.BootstrapExpect)
	}
	if c.DeadServerGrace <= 0 {
		add("dead_server_grace: %v must be positive (a dead node must not be removed on the first missed probe)", c.DeadServerGrace)
	}
	if c.StabilizationTime < 0 {
		add("stabilization_time: %v is negative", c.StabilizationTime)
	}
	if c.Interval <= 0 {
		add("interval: %v must be positive", c.Interval)
	}
	if c.StatusTimeout <= 0 {
		add("status_timeout: %v must be positive", c.StatusTimeout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("voters: invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}
