package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/switchboard-io/switchboard/chaos/faultnet"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/internal/conf"
)

// ServeConfig is the configuration of `switchboard serve`.
type ServeConfig struct {
	NodeID        string        `conf:"node_id" help:"stable name of this node (default: the host name)"`
	DataDir       string        `conf:"data_dir" help:"directory for the node's database and snapshots"`
	RaftBind      string        `conf:"raft_bind" help:"host:port for Raft traffic between nodes"`
	RaftAdvertise string        `conf:"raft_advertise" help:"Raft address other nodes dial (default: raft_bind)"`
	APIBind       string        `conf:"api_bind" help:"host:port of the node gRPC API (log forwarding)"`
	APIAdvertise  string        `conf:"api_advertise" help:"API address other nodes dial (default: api_bind)"`
	HTTPBind      string        `conf:"http_bind" help:"host:port for /healthz, /readyz and /metrics"`
	Peers         []string      `conf:"peers" help:"static cluster members as id=raft_addr=api_addr, comma-separated (this node included)"`
	Bootstrap     bool          `conf:"bootstrap" help:"bootstrap a new cluster from peers (or alone) when the node has no state"`
	LogLevel      string        `conf:"log_level" help:"debug, info, warn or error"`
	LogFormat     string        `conf:"log_format" help:"text or json"`
	EnablePprof   bool          `conf:"enable_pprof" help:"serve Go profiles under /debug/pprof/ on http_bind"`
	ShutdownGrace time.Duration `conf:"shutdown_grace" help:"how long SIGTERM may take before the node stops hard"`
	Raft          RaftConfig    `conf:"raft"`
	Limits        LimitsConfig  `conf:"limits"`
}

// RaftConfig holds the Raft timings.
type RaftConfig struct {
	HeartbeatTimeout   time.Duration `conf:"heartbeat_timeout" help:"follower heartbeat timeout"`
	ElectionTimeout    time.Duration `conf:"election_timeout" help:"candidate election timeout"`
	LeaderLeaseTimeout time.Duration `conf:"leader_lease_timeout" help:"leader lease; at most heartbeat_timeout"`
	CommitTimeout      time.Duration `conf:"commit_timeout" help:"idle heartbeat interval of the leader"`
	MaxAppendEntries   int           `conf:"max_append_entries" help:"entries per replication RPC (1..1024)"`
	SnapshotInterval   time.Duration `conf:"snapshot_interval" help:"how often to check whether to snapshot"`
	SnapshotThreshold  uint64        `conf:"snapshot_threshold" help:"log entries since the last snapshot that trigger one"`
	TrailingLogs       uint64        `conf:"trailing_logs" help:"log entries kept after a snapshot"`
}

// LimitsConfig bounds appends; every node of a cluster must use the same.
type LimitsConfig struct {
	MaxEventSize       int `conf:"max_event_size" help:"bytes per event (type + data + meta)"`
	MaxEventsPerAppend int `conf:"max_events_per_append" help:"events per append"`
	MaxAppendSize      int `conf:"max_append_size" help:"bytes per append"`
}

// DefaultServeConfig is the embedded default: a single node on loopback with
// its data in ./data.
func DefaultServeConfig() ServeConfig {
	ec := events.DefaultConfig()
	host, _ := os.Hostname()
	return ServeConfig{
		NodeID:        host,
		DataDir:       "./data",
		RaftBind:      "127.0.0.1:7400",
		APIBind:       "127.0.0.1:7401",
		HTTPBind:      "127.0.0.1:7402",
		Bootstrap:     true,
		LogLevel:      "info",
		LogFormat:     "text",
		ShutdownGrace: 10 * time.Second,
		Raft: RaftConfig{
			HeartbeatTimeout: ec.Raft.HeartbeatTimeout, ElectionTimeout: ec.Raft.ElectionTimeout,
			LeaderLeaseTimeout: ec.Raft.LeaderLeaseTimeout, CommitTimeout: ec.Raft.CommitTimeout,
			MaxAppendEntries: ec.Raft.MaxAppendEntries, SnapshotInterval: ec.Raft.SnapshotInterval,
			SnapshotThreshold: ec.Raft.SnapshotThreshold, TrailingLogs: ec.Raft.TrailingLogs,
		},
		Limits: LimitsConfig{
			MaxEventSize: ec.Limits.MaxEventSize, MaxEventsPerAppend: ec.Limits.MaxEventsPerAppend,
			MaxAppendSize: ec.Limits.MaxAppendSize,
		},
	}
}

type peer struct{ id, raft, api string }

func (c ServeConfig) peers() ([]peer, []string) {
	var out []peer
	var errs []string
	seen := map[string]bool{}
	for _, p := range c.Peers {
		parts := strings.Split(p, "=")
		if len(parts) != 3 || parts[0] == "" {
			errs = append(errs, fmt.Sprintf("peers: %q is not id=raft_host:port=api_host:port", p))
			continue
		}
		for _, a := range parts[1:] {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Sprintf("peers: %q: %q is not host:port", p, a))
			}
		}
		if seen[parts[0]] {
			errs = append(errs, fmt.Sprintf("peers: id %q is listed twice", parts[0]))
		}
		seen[parts[0]] = true
		out = append(out, peer{parts[0], parts[1], parts[2]})
	}
	if len(out) > 0 && !seen[c.NodeID] {
		errs = append(errs, fmt.Sprintf("peers: this node (node_id %q) must be listed", c.NodeID))
	}
	return out, errs
}

// eventsConfig derives the event log configuration.
func (c ServeConfig) eventsConfig() events.Config {
	ec := events.DefaultConfig()
	ec.NodeID = c.NodeID
	ec.Dir = filepath.Join(c.DataDir, "log")
	ec.RaftBind = c.RaftBind
	ec.RaftAdvertise = c.RaftAdvertise
	ec.Raft.HeartbeatTimeout = c.Raft.HeartbeatTimeout
	ec.Raft.ElectionTimeout = c.Raft.ElectionTimeout
	ec.Raft.LeaderLeaseTimeout = c.Raft.LeaderLeaseTimeout
	ec.Raft.CommitTimeout = c.Raft.CommitTimeout
	ec.Raft.MaxAppendEntries = c.Raft.MaxAppendEntries
	ec.Raft.SnapshotInterval = c.Raft.SnapshotInterval
	ec.Raft.SnapshotThreshold = c.Raft.SnapshotThreshold
	ec.Raft.TrailingLogs = c.Raft.TrailingLogs
	ec.Limits.MaxEventSize = c.Limits.MaxEventSize
	ec.Limits.MaxEventsPerAppend = c.Limits.MaxEventsPerAppend
	ec.Limits.MaxAppendSize = c.Limits.MaxAppendSize
	return ec
}

// Validate reports every problem at once, naming the key and the fix.
func (c ServeConfig) Validate() error {
	var errs []string
	if c.NodeID == "" {
		errs = append(errs, "node_id: must be set (e.g. --node-id n1)")
	}
	for _, l := range []struct{ key, v string }{{"raft_bind", c.RaftBind}, {"api_bind", c.APIBind}, {"http_bind", c.HTTPBind}} {
		if _, _, err := net.SplitHostPort(l.v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not host:port (e.g. 127.0.0.1:7400)", l.key, l.v))
		}
	}
	_, perrs := c.peers()
	errs = append(errs, perrs...)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Sprintf("log_format: %q is not text or json", c.LogFormat))
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, "shutdown_grace: must be positive (e.g. 10s)")
	}
	ec := c.eventsConfig()
	if err := ec.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n")[1:] {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func newLogger(c ServeConfig, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lv}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listen binds one named listener and says which on failure.
func listen(name, key, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener (%s %s): %w", name, key, addr, err)
	}
	return l, nil
}

func serve(ctx context.Context, args, environ []string, stdout io.Writer) error {
	cfg := DefaultServeConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if _, err := conf.Load(&cfg, fs, args, environ); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := newLogger(cfg, os.Stderr)
	slog.SetDefault(logger)

	// Bind every listener first so that a port problem is reported for each,
	// before anything is started.
	var bindErrs []error
	raftL, err := listen("raft", "raft_bind", cfg.RaftBind)
	bindErrs = append(bindErrs, err)
	apiL, err := listen("api", "api_bind", cfg.APIBind)
	bindErrs = append(bindErrs, err)
	httpL, err := listen("http", "http_bind", cfg.HTTPBind)
	bindErrs = append(bindErrs, err)
	if err := errors.Join(bindErrs...); err != nil {
		for _, l := range []net.Listener{raftL, apiL, httpL} {
			if l != nil {
				l.Close()
			}
		}
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	peers, _ := cfg.peers()
	apiAddr := map[raft.ServerID]string{}
	ec := cfg.eventsConfig()
	ec.Logger = logger
	ec.Registerer = reg
	adv := cfg.RaftAdvertise
	if adv == "" {
		adv = cfg.RaftBind
	}
	ec.StreamLayer, err = faultnet.NewTCPStreamLayer(raftL, adv, nil)
	if err != nil {
		return fmt.Errorf("raft stream layer: %w", err)
	}
	if len(peers) == 0 {
		apiAdv := cfg.APIAdvertise
		if apiAdv == "" {
			apiAdv = cfg.APIBind
		}
		peers = []peer{{cfg.NodeID, adv, apiAdv}}
	}
	for _, p := range peers {
		apiAddr[raft.ServerID(p.id)] = p.api
		if cfg.Bootstrap {
			ec.Bootstrap = append(ec.Bootstrap, raft.Server{ID: raft.ServerID(p.id), Address: raft.ServerAddress(p.raft), Suffrage: raft.Voter})
		}
	}
	ec.ResolveAPI = func(id raft.ServerID) (string, bool) { a, ok := apiAddr[id]; return a, ok }

	node, err := events.Open(ec)
	if err != nil {
		apiL.Close()
		httpL.Close()
		return err
	}
	grpcServer := grpc.NewServer(grpc.MaxRecvMsgSize(ec.Limits.MaxAppendSize + 1<<20))
	eventspb.RegisterLogServer(grpcServer, node.API())
	go func() {
		if err := grpcServer.Serve(apiL); err != nil {
			logger.Error("api server stopped", "component", "serve", "err", err)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(node); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := httpServer.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "component", "serve", "err", err)
		}
	}()

	fmt.Fprintf(stdout, "switchboard %s: node %q serving\n  data:    %s\n  api:     %s (gRPC event log)\n  health:  http://%s/readyz\n  metrics: http://%s/metrics\n",
		version, cfg.NodeID, cfg.DataDir, cfg.APIBind, cfg.HTTPBind, cfg.HTTPBind)

	<-ctx.Done()
	logger.Info("shutting down", "component", "serve")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if node.IsLeader() && len(peers) > 1 {
		transfer := make(chan error, 1)
		go func() { transfer <- node.Raft().LeadershipTransfer().Error() }()
		select {
		case err := <-transfer:
			if err != nil {
				logger.Warn("leadership transfer failed", "component", "serve", "err", err)
			}
		case <-sctx.Done():
			logger.Warn("leadership transfer did not finish within shutdown_grace", "component", "serve")
		}
	}
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		grpcServer.Stop()
	}
	_ = httpServer.Shutdown(sctx)
	return node.Close()
}

// ready reports why the node cannot serve yet: no leader, or the local store
// behind the commit index.
func ready(n *events.Node) error {
	r := n.Raft()
	if _, id := r.LeaderWithID(); id == "" {
		return errors.New("no raft leader")
	}
	if applied, commit := n.FSM().AppliedIndex(), r.CommitIndex(); applied < commit {
		return fmt.Errorf("log catching up: applied %d of %d", applied, commit)
	}
	return nil
}
