package events

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/switchboard-io/switchboard/events/fsm"
)

// Config configures one node of the replicated event log.
type Config struct {
	// NodeID is the node's Raft server id; stable across restarts.
	NodeID string
	// Dir holds the node's Pebble database and Raft snapshots.
	Dir string
	// RaftBind is the address the Raft transport listens on (ignored when
	// StreamLayer is set). RaftAdvertise is the address peers dial; empty =
	// RaftBind.
	RaftBind      string
	RaftAdvertise string
	// StreamLayer, when set, carries Raft traffic instead of a plain TCP
	// listener on RaftBind (TLS in production, faultnet in tests).
	StreamLayer raft.StreamLayer

	// Bootstrap lists the initial voters; used once, when the node has no Raft
	// state yet. Empty = join an existing cluster (another node adds this one).
	Bootstrap []raft.Server

	// ResolveAPI maps a Raft server id to the address of its Log gRPC API, so
	// that writes can be forwarded to the leader.
	ResolveAPI func(raft.ServerID) (string, bool)
	// DialOptions are used to dial other nodes' Log API (transport
	// credentials: TLS in production). Default: insecure (loopback tests).
	DialOptions []grpc.DialOption

	Limits fsm.Limits
	Raft   RaftTuning

	// BatchMaxCommands and BatchMaxBytes bound one group-commit Raft entry.
	BatchMaxCommands int
	BatchMaxBytes    int
	// ApplyTimeout bounds how long the leader waits to enqueue an entry.
	ApplyTimeout time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// RaftTuning exposes the Raft timings an operator may need to change.
type RaftTuning struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxAppendEntries   int
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	SnapshotsRetained  int
}

// DefaultConfig returns a configuration with every default filled in; the
// caller sets NodeID, Dir, RaftBind and (for clusters) ResolveAPI.
func DefaultConfig() Config {
	return Config{
		Limits: fsm.DefaultLimits(),
		Raft: RaftTuning{
			HeartbeatTimeout:   1000 * time.Millisecond,
			ElectionTimeout:    1000 * time.Millisecond,
			LeaderLeaseTimeout: 500 * time.Millisecond,
			CommitTimeout:      50 * time.Millisecond,
			MaxAppendEntries:   256,
			SnapshotInterval:   2 * time.Minute,
			SnapshotThreshold:  16384,
			TrailingLogs:       10240,
			SnapshotsRetained:  2,
		},
		BatchMaxCommands: 512,
		BatchMaxBytes:    2 << 20,
		ApplyTimeout:     5 * time.Second,
	}
}

// Validate reports every problem at once, naming the key.
func (c Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.NodeID == "" {
		add("node_id: must be set (a stable name for this node, e.g. its host name)")
	}
	if c.Dir == "" {
		add("data_dir: must be set")
	}
	if c.StreamLayer == nil && c.RaftBind == "" {
		add("raft_bind: must be set (host:port for Raft traffic)")
	}
	if err := c.Limits.Validate(); err != nil {
		add("%s", strings.TrimPrefix(err.Error(), fsm.ErrInvalid.Error()+": "))
	}
	r := c.Raft
	if r.HeartbeatTimeout < 5*time.Millisecond {
		add("raft.heartbeat_timeout: %v is below 5ms", r.HeartbeatTimeout)
	}
	if r.ElectionTimeout < r.HeartbeatTimeout {
		add("raft.election_timeout: %v must be at least raft.heartbeat_timeout (%v)", r.ElectionTimeout, r.HeartbeatTimeout)
	}
	if r.LeaderLeaseTimeout <= 0 || r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		add("raft.leader_lease_timeout: %v must be positive and at most raft.heartbeat_timeout (%v)", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	if r.CommitTimeout <= 0 {
		add("raft.commit_timeout: must be positive")
	}
	if r.MaxAppendEntries < 1 || r.MaxAppendEntries > 1024 {
		add("raft.max_append_entries: %d is out of range 1..1024", r.MaxAppendEntries)
	}
	if r.SnapshotInterval < 5*time.Millisecond {
		add("raft.snapshot_interval: %v is below 5ms", r.SnapshotInterval)
	}
	if r.SnapshotThreshold < 1 {
		add("raft.snapshot_threshold: must be at least 1")
	}
	if r.SnapshotsRetained < 1 {
		add("raft.snapshots_retained: must be at least 1")
	}
	if c.BatchMaxCommands < 1 {
		add("batch_max_commands: must be at least 1")
	}
	if c.BatchMaxBytes < 1024 {
		add("batch_max_bytes: %d is below 1024 (a single larger command still goes alone)", c.BatchMaxBytes)
	}
	if c.ApplyTimeout <= 0 {
		add("apply_timeout: must be positive")
	}
	for i, s := range c.Bootstrap {
		if s.ID == "" || s.Address == "" {
			add("bootstrap[%d]: id and address must be set", i)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("events: invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.Raft.HeartbeatTimeout
	rc.ElectionTimeout = c.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = c.Raft.CommitTimeout
	rc.MaxAppendEntries = c.Raft.MaxAppendEntries
	rc.SnapshotInterval = c.Raft.SnapshotInterval
	rc.SnapshotThreshold = c.Raft.SnapshotThreshold
	rc.TrailingLogs = c.Raft.TrailingLogs
	rc.BatchApplyCh = true
	// Per-peer metrics carry the peer in a label only, not also in the name.
	rc.NoLegacyTelemetry = true
	// The event store lives in Pebble and survives restarts; it tracks its own
	// applied index, so a restart replays only the entries it has not applied.
	rc.NoSnapshotRestoreOnStart = true
	return rc
}

var errClosed = errors.New("events: node closed")
