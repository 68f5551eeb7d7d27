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

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/cluster"
	"github.com/switchboard-io/switchboard/cluster/membership"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/cluster/voters"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/sessionedge"
	"github.com/switchboard-io/switchboard/internal/conf"
)

// ServeConfig is the configuration of `switchboard serve`.
type ServeConfig struct {
	NodeID          string        `conf:"node_id" help:"stable name of this node: Raft id, gossip name, certificate name (default: the host name)"`
	DataDir         string        `conf:"data_dir" help:"directory for the node's database, snapshots and development certificates"`
	RaftBind        string        `conf:"raft_bind" help:"host:port for Raft traffic between nodes"`
	RaftAdvertise   string        `conf:"raft_advertise" help:"Raft address other nodes dial (default: raft_bind)"`
	APIBind         string        `conf:"api_bind" help:"host:port of the node gRPC API (log forwarding, status)"`
	APIAdvertise    string        `conf:"api_advertise" help:"API address other nodes dial (default: api_bind)"`
	HTTPBind        string        `conf:"http_bind" help:"host:port for /healthz, /readyz and /metrics"`
	GossipBind      string        `conf:"gossip_bind" help:"host:port (UDP and TCP) for membership gossip"`
	GossipAdvertise string        `conf:"gossip_advertise" help:"gossip address other nodes use (default: gossip_bind)"`
	ActorBind       string        `conf:"actor_bind" help:"host:port of the actor system (grain messages between nodes)"`
	ActorAdvertise  string        `conf:"actor_advertise" help:"actor address other nodes dial (default: actor_bind)"`
	SessionBind     string        `conf:"session_bind" help:"host:port of the session WebSocket endpoint clients connect to (wss://HOST:PORT/v1/session)"`
	AdminBind       string        `conf:"admin_bind" help:"host:port of the admin console, REST and gRPC API (https://HOST:PORT/); see admin.trusted_networks"`
	Join            []string      `conf:"join" help:"gossip addresses of nodes to join, comma-separated; empty and bootstrap_expect 0 = start a new cluster alone"`
	BootstrapExpect int           `conf:"bootstrap_expect" help:"start a new cluster once this many nodes without Raft state have joined (0 = off)"`
	LogLevel        string        `conf:"log_level" help:"debug, info, warn or error"`
	LogFormat       string        `conf:"log_format" help:"text or json"`
	EnablePprof     bool          `conf:"enable_pprof" help:"serve Go profiles under /debug/pprof/ on http_bind"`
	ShutdownGrace   time.Duration `conf:"shutdown_grace" help:"how long SIGTERM may take before the node stops hard"`
	Gossip          GossipConfig  `conf:"gossip"`
	TLS             TLSConfig     `conf:"tls"`
	Cluster         ClusterConfig `conf:"cluster"`
	Raft            RaftConfig    `conf:"raft"`
	Limits          LimitsConfig  `conf:"limits"`
	Session         SessionConfig `conf:"session"`
	Admin           AdminConfig   `conf:"admin"`
}

// SessionConfig holds the keys of the session edge (docs/protocol.md).
type SessionConfig struct {
	TLSCertFile    string        `conf:"tls_cert_file" help:"PEM certificate (chain) clients see on session_bind (default: the node certificate, signed by the cluster CA)"`
	TLSKeyFile     string        `conf:"tls_key_file" help:"PEM private key of session.tls_cert_file"`
	Plaintext      bool          `conf:"plaintext" help:"serve ws:// without TLS (only behind a TLS-terminating proxy)"`
	AllowedOrigins []string      `conf:"allowed_origins" help:"browser origins (scheme://host[:port], comma-separated) allowed to connect; requests without Origin are always allowed"`
	HostTokens     []string      `conf:"host_tokens" help:"supporters allowed to open sessions: user:token or user:sha256:HEX entries, comma-separated (default: one token created at first start in data_dir/session-host-token)"`
	MaxConnections int           `conf:"max_connections" help:"client connections this node accepts"`
	Heartbeat      time.Duration `conf:"heartbeat" help:"heartbeat interval announced to clients; silent connections are closed after 3x"`
	SweepInterval  time.Duration `conf:"sweep_interval" help:"how often the Raft leader ends sessions past their expiry or idle timeout (whether or not anyone is connected)"`
	IsolationGrace time.Duration `conf:"isolation_grace" help:"after this long cut off from the cluster (no Raft leader), the node sends its session clients to other nodes (close 1013) and refuses new ones"`
}

// GossipConfig holds the membership keys.
type GossipConfig struct {
	Key            string        `conf:"key" help:"base64 key (16, 24 or 32 bytes) encrypting gossip; same on every node (switchboard gossip-key prints a new one)"`
	ProbeInterval  time.Duration `conf:"probe_interval" help:"time between failure-detector probes"`
	ProbeTimeout   time.Duration `conf:"probe_timeout" help:"wait for a probe ack before indirect probes (about the p99 round trip)"`
	SuspicionMult  int           `conf:"suspicion_mult" help:"suspicion timeout in probe intervals (times log10 of the cluster size)"`
	GossipInterval time.Duration `conf:"interval" help:"time between gossip rounds"`
}

// TLSConfig names the node-to-node certificate files. All empty = development
// certificates generated under data_dir/tls (never for production).
type TLSConfig struct {
	CAFile   string `conf:"ca_file" help:"PEM file of the cluster CA (switchboard tls ca create)"`
	CertFile string `conf:"cert_file" help:"PEM file of this node's certificate (switchboard tls cert create --node NODE_ID)"`
	KeyFile  string `conf:"key_file" help:"PEM file of this node's private key"`
}

// ClusterConfig holds the membership-driven Raft and grain keys.
type ClusterConfig struct {
	DeadServerGrace   time.Duration `conf:"dead_server_grace" help:"a dead or departed node is removed from Raft after this long"`
	StabilizationTime time.Duration `conf:"stabilization_time" help:"a new node must be caught up this long before it becomes a voter"`
	GrainIdleTimeout  time.Duration `conf:"grain_idle_timeout" help:"a grain with no message for this long is passivated"`
	LookupTimeout     time.Duration `conf:"lookup_timeout" help:"bound on one grain activation request to its owner"`
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
	gc := membership.DefaultConfig()
	vc := voters.DefaultConfig()
	eo := entity.DefaultOptions()
	sc := sessionedge.DefaultConfig()
	host, _ := os.Hostname()
	return ServeConfig{
		NodeID:        host,
		DataDir:       "./data",
		RaftBind:      "127.0.0.1:7400",
		APIBind:       "127.0.0.1:7401",
		HTTPBind:      "127.0.0.1:7402",
		GossipBind:    "127.0.0.1:7403",
		ActorBind:     "127.0.0.1:7404",
		LogLevel:      "info",
		LogFormat:     "text",
		ShutdownGrace: 10 * time.Second,
		Gossip: GossipConfig{
			ProbeInterval: gc.ProbeInterval, ProbeTimeout: gc.ProbeTimeout,
			SuspicionMult: gc.SuspicionMult, GossipInterval: gc.GossipInterval,
		},
		Cluster: ClusterConfig{
			DeadServerGrace: vc.DeadServerGrace, StabilizationTime: vc.StabilizationTime,
			GrainIdleTimeout: eo.IdleTimeout, LookupTimeout: 250 * time.Millisecond,
		},
		// Raft's own defaults (1 s) suit WANs; on a LAN a dead leader is
		// replaced within ~0.3–0.9 s with these (heartbeats go out every
		// 30 ms), which is what keeps a session's failover near a second
		// when the dead node was also the leader.
		Raft: RaftConfig{
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: ec.Raft.CommitTimeout,
			MaxAppendEntries: ec.Raft.MaxAppendEntries, SnapshotInterval: ec.Raft.SnapshotInterval,
			SnapshotThreshold: ec.Raft.SnapshotThreshold, TrailingLogs: ec.Raft.TrailingLogs,
		},
		Limits: LimitsConfig{
			MaxEventSize: ec.Limits.MaxEventSize, MaxEventsPerAppend: ec.Limits.MaxEventsPerAppend,
			MaxAppendSize: ec.Limits.MaxAppendSize,
		},
		SessionBind: "127.0.0.1:7405",
		AdminBind:   "127.0.0.1:7406",
		Admin:       defaultAdminConfig(),
		Session: SessionConfig{
			MaxConnections: sc.MaxConnections, Heartbeat: sc.Heartbeat, SweepInterval: 30 * time.Second, IsolationGrace: sc.IsolationGrace,
		},
	}
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
	for _, l := range []struct{ key, v string }{{"raft_bind", c.RaftBind}, {"api_bind", c.APIBind}, {"http_bind", c.HTTPBind},
		{"gossip_bind", c.GossipBind}, {"actor_bind", c.ActorBind}, {"session_bind", c.SessionBind}, {"admin_bind", c.AdminBind}} {
		if _, _, err := net.SplitHostPort(l.v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not host:port (e.g. 127.0.0.1:7400)", l.key, l.v))
		}
	}
	for _, l := range []struct{ key, v string }{{"raft_advertise", c.RaftAdvertise}, {"api_advertise", c.APIAdvertise},
		{"actor_advertise", c.ActorAdvertise}} {
		if l.v == "" {
			continue
		}
		if h, _, err := net.SplitHostPort(l.v); err != nil || h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
			errs = append(errs, fmt.Sprintf("%s: %q is not a host:port other nodes can dial", l.key, l.v))
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Sprintf("join: %q is not host:port of another node's gossip_bind", j))
		}
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Sprintf("bootstrap_expect: %d is negative (0 = off, N = wait for N nodes)", c.BootstrapExpect))
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		errs = append(errs, fmt.Sprintf("join: must list the other nodes' gossip addresses when bootstrap_expect is %d", c.BootstrapExpect))
	}
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
	if c.Gossip.Key != "" {
		if _, err := membership.ParseSecretKey(c.Gossip.Key); err != nil {
			errs = append(errs, fmt.Sprintf("gossip.key: %v", err))
		}
	}
	if t := c.TLS; t != (TLSConfig{}) {
		if err := (tlsutil.Files{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}).Validate(); err != nil {
			errs = append(errs, strings.Split(strings.TrimSpace(err.Error()), "\n")...)
		}
	}
	errs = append(errs, c.Session.problems()...)
	errs = append(errs, c.Admin.problems()...)
	if c.Cluster.GrainIdleTimeout <= 0 {
		errs = append(errs, "cluster.grain_idle_timeout: must be positive (e.g. 5m)")
	}
	if c.Cluster.LookupTimeout <= 0 {
		errs = append(errs, "cluster.lookup_timeout: must be positive (e.g. 1s)")
	}
	sub := []error{c.eventsConfig().Validate(), c.gossipConfig().Validate(), c.votersConfig().Validate()}
	for _, err := range sub {
		if err == nil {
			continue
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasSuffix(line, "invalid configuration:") || strings.HasPrefix(line, "node_id:") {
				continue
			}
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func (c ServeConfig) gossipConfig() membership.Config {
	gc := membership.DefaultConfig()
	gc.NodeID = c.NodeID
	gc.BindAddr = c.GossipBind
	gc.AdvertiseAddr = c.GossipAdvertise
	gc.Join = c.Join
	gc.ProbeInterval = c.Gossip.ProbeInterval
	gc.ProbeTimeout = c.Gossip.ProbeTimeout
	gc.SuspicionMult = c.Gossip.SuspicionMult
	gc.GossipInterval = c.Gossip.GossipInterval
	if c.Gossip.Key != "" {
		gc.SecretKey, _ = membership.ParseSecretKey(c.Gossip.Key)
	}
	return gc
}

func (c ServeConfig) votersConfig() voters.Config {
	vc := voters.DefaultConfig()
	vc.BootstrapExpect = c.BootstrapExpect
	vc.DeadServerGrace = c.Cluster.DeadServerGrace
	vc.StabilizationTime = c.Cluster.StabilizationTime
	return vc
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

// checkFree reports whether addr can be bound (for listeners a library binds
// itself later: protoactor's remote, memberlist's UDP and TCP).
func checkFree(name, key, addr string, udp bool) error {
	l, err := listen(name, key, addr)
	if err != nil {
		return err
	}
	l.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("%s listener (%s %s, udp): %w", name, key, addr, err)
		}
		pc.Close()
	}
	return nil
}

// loadTLS loads the node's certificates, or generates development ones when
// none are configured, saying so loudly.
func loadTLS(cfg ServeConfig, logger *slog.Logger, stdout io.Writer) (*tlsutil.Bundle, error) {
	files := tlsutil.Files{CAFile: cfg.TLS.CAFile, CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile}
	if files == (tlsutil.Files{}) {
		dir := filepath.Join(cfg.DataDir, "tls")
		var err error
		if files, err = tlsutil.EnsureDev(dir, cfg.NodeID, time.Now()); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "WARNING: development TLS: no tls.ca_file/cert_file/key_file configured, so this node uses a\n"+
			"         throw-away CA generated in %s (its key lies next to it). Other nodes can join only if they\n"+
			"         share that directory. For production create a CA and node certificates with\n"+
			"         `switchboard tls ca create` and `switchboard tls cert create --node %s`.\n", dir, cfg.NodeID)
		logger.Warn("development TLS in use: not for production", "component", "serve", "dir", dir)
	}
	b, err := tlsutil.Load(files, cfg.NodeID, time.Now())
	if err != nil {
		return nil, err
	}
	return b, nil
}

// extraKinds, when set (builds with the testkinds tag), adds grain kinds
// used only by tests; extraRoutes adds their HTTP routes.
var (
	extraKinds  func(node string, o entity.Options) ([]*pcluster.Kind, error)
	extraRoutes func(mux *http.ServeMux, n *cluster.Node)
)

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

	bundle, err := loadTLS(cfg, logger, stdout)
	if err != nil {
		return err
	}
	tlsCfg := bundle.PeerConfig()
	if left := time.Until(bundle.NotAfter()); left < 30*24*time.Hour {
		logger.Warn("node certificate expires soon", "component", "serve", "not_after", bundle.NotAfter(), "left", left.Round(time.Hour))
	}

	// Bind (or probe) every listener first so that a port problem is
	// reported for each, before anything is started.
	var bindErrs []error
	raftL, err := listen("raft", "raft_bind", cfg.RaftBind)
	bindErrs = append(bindErrs, err)
	apiL, err := listen("api", "api_bind", cfg.APIBind)
	bindErrs = append(bindErrs, err)
	httpL, err := listen("http", "http_bind", cfg.HTTPBind)
	bindErrs = append(bindErrs, err)
	sessionL, err := listen("session", "session_bind", cfg.SessionBind)
	bindErrs = append(bindErrs, err)
	adminL, err := listen("admin", "admin_bind", cfg.AdminBind)
	bindErrs = append(bindErrs, err)
	bindErrs = append(bindErrs, checkFree("gossip", "gossip_bind", cfg.GossipBind, true))
	bindErrs = append(bindErrs, checkFree("actor", "actor_bind", cfg.ActorBind, false))
	if err := errors.Join(bindErrs...); err != nil {
		closeAll(raftL, apiL, httpL, sessionL, adminL)
		return err
	}
	tokens, createdToken, tokenFile, err := hostTokens(cfg)
	if err != nil {
		closeAll(raftL, apiL, httpL, sessionL, adminL)
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := exportLibraryMetrics(reg); err != nil {
		logger.Warn("raft and memberlist metrics are not exported", "component", "serve", "err", err)
	}

	apiAdv := cfg.APIAdvertise
	if apiAdv == "" {
		apiAdv = apiL.Addr().String()
	}
	entityMetrics := entity.NewMetrics(reg)
	nc := cluster.Config{
		NodeID: cfg.NodeID, Version: version,
		Log:          cfg.eventsConfig(),
		RaftListener: raftL, RaftAdvertise: cfg.RaftAdvertise,
		APIAdvertise: apiAdv, HTTPAdvertise: httpL.Addr().String(),
		Gossip: cfg.gossipConfig(),
		Actors: cluster.ActorsConfig{
			Bind: cfg.ActorBind, Advertise: cfg.ActorAdvertise, LookupTimeout: cfg.Cluster.LookupTimeout,
			ActorLogLevel: actorLogLevel(cfg.LogLevel),
		},
		Voters: cfg.votersConfig(),
		Kinds: func(log *events.Node) ([]*pcluster.Kind, error) {
			o := entity.DefaultOptions()
			o.Log, o.Logger, o.Metrics, o.IdleTimeout = log, logger, entityMetrics, cfg.Cluster.GrainIdleTimeout
			sk, err := entity.NewKind(session.Spec(), o)
			if err != nil {
				return nil, err
			}
			ak, err := entity.NewKind(account.Spec(), o)
			if err != nil {
				return nil, err
			}
			kinds := []*pcluster.Kind{sk, ak}
			if extraKinds != nil {
				more, err := extraKinds(cfg.NodeID, o)
				if err != nil {
					return nil, err
				}
				kinds = append(kinds, more...)
			}
			return kinds, nil
		},
		TLS:        tlsCfg,
		Logger:     logger,
		Registerer: reg,
	}
	node, err := cluster.Start(nc)
	if err != nil {
		closeAll(apiL, httpL, sessionL, adminL)
		return err
	}
	views, err := openViews(cfg, node, logger, reg)
	if err != nil {
		closeAll(apiL, httpL, sessionL, adminL)
		_ = node.Shutdown(context.Background())
		return err
	}
	adm, err := startAdmin(cfg, node, views, adminL, logger, reg)
	if err != nil {
		closeAll(apiL, httpL, sessionL, adminL)
		_ = node.Shutdown(context.Background())
		views.Close()
		return err
	}
	// Supporters open sessions with a configured host token or with their
	// admin account (checked by the admin gateway against its views).
	edge, sessionServer, err := startSessionEdge(cfg, node, sessionL, tlsCfg.Certificates, tokens, adm.gw, logger, reg)
	if err != nil {
		closeAll(apiL, httpL, sessionL)
		adm.shutdown(context.Background())
		views.Close()
		_ = node.Shutdown(context.Background())
		return err
	}
	sweepCtx, sweepStop := context.WithCancel(ctx)
	defer sweepStop()
	go sweepSessions(sweepCtx, node, views, cfg.Session.SweepInterval, logger)
	grpcServer := grpc.NewServer(grpc.MaxRecvMsgSize(nc.Log.Limits.MaxAppendSize+1<<20),
		grpc.Creds(credentials.NewTLS(tlsCfg.Clone())))
	eventspb.RegisterLogServer(grpcServer, node.Log.API())
	go func() {
		if err := grpcServer.Serve(apiL); err != nil {
			logger.Error("api server stopped", "component", "serve", "err", err)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := node.Ready(); err != nil {
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
	if extraRoutes != nil {
		extraRoutes(mux, node)
	}
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}
	go func() {
		if err := httpServer.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "component", "serve", "err", err)
		}
	}()

	next := "this node started a new cluster; join more nodes with --join " + node.Members.LocalMember().Addr
	if len(cfg.Join) > 0 || cfg.BootstrapExpect > 0 {
		next = "joining " + strings.Join(cfg.Join, ", ")
	}
	scheme := "wss"
	if cfg.Session.Plaintext {
		scheme = "ws"
	}
	fmt.Fprintf(stdout, "switchboard %s: node %q serving\n  data:    %s\n  api:     %s (gRPC, mutual TLS)\n  gossip:  %s\n  actors:  %s\n  health:  http://%s/readyz\n  metrics: http://%s/metrics\n  cert:    %s (valid until %s)\n  session: %s://%s%s\n",
		version, cfg.NodeID, cfg.DataDir, apiAdv, node.Members.LocalMember().Addr, node.Actors().Address(),
		httpL.Addr(), httpL.Addr(), bundle.NodeName(), bundle.NotAfter().Format(time.DateOnly), scheme, sessionL.Addr(), sessionedge.Path)
	printHostToken(stdout, createdToken, tokenFile)
	fmt.Fprintf(stdout, "  console: %s (admin API: same address, gRPC and /v1/ JSON)\n", adm.url)
	if adm.fp != "" {
		fmt.Fprintf(stdout, "  admin tls: self-signed certificate %s\n           SHA-256 fingerprint %s\n", adm.certF, adm.fp)
	}
	fmt.Fprintf(stdout, "  next:    %s\n", next)
	bootCtx, bootStop := context.WithCancel(ctx)
	bootDone := make(chan struct{})
	go func() { defer close(bootDone); adm.bootstrapAdmin(bootCtx, node, cfg.DataDir, stdout, logger) }()

	<-ctx.Done()
	logger.Info("shutting down", "component", "serve")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	bootStop()
	<-bootDone
	// Clients first: they resume on other nodes while this one leaves.
	if err := edge.Shutdown(sctx); err != nil {
		logger.Warn("session edge shutdown", "component", "serve", "err", err)
	}
	_ = sessionServer.Shutdown(sctx)
	adm.shutdown(sctx)
	if verr := views.Close(); verr != nil {
		logger.Warn("closing projections", "component", "serve", "err", verr)
	}
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	err = node.Shutdown(sctx)
	select {
	case <-stopped:
	case <-sctx.Done():
		grpcServer.Stop()
	}
	_ = httpServer.Shutdown(sctx)
	return err
}

func closeAll(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

func actorLogLevel(level string) slog.Level {
	if level == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
