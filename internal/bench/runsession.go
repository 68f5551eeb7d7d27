package bench

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// Session benchmark (`switchboard bench session`, `make bench-session`).
//
// A three-node cluster of the binary runs on loopback with production
// defaults (fsync on, TLS on the session endpoint) except the host token
// (--session-host-tokens) and whatever --node-args adds. S sessions are
// opened from this process; session i has its host connected to node i%3
// and its guest to node (i+1)%3 (each Config.Nodes list starts with that
// node). Sessions are opened with frames_per_second 10000 and burst 20000
// (the protocol's maximum) so that the per-participant rate limit, 200/s by
// default, does not cap the benchmark.
//
// Durable phase: every host sends --frame-size (128) byte durable frames
// with Send as fast as the library's window (256 unconfirmed frames) lets
// it, for --warmup + --duration. Each payload carries its send time; the
// guest takes the latency at Recv (sender Send → receiver Recv, one way,
// same clock). Frames received inside the measured window count:
//
//	BENCH session durable_frames_per_s=<n> p50_ms=<x> p99_ms=<y> sessions=<S> errors=<e>
//
// errors counts failed Send/Recv calls and durable frames missing,
// duplicated or out of order at the guest once every host has flushed.
//
// Stream phase: the same with SendStream (no window: the call returns once
// the frame is written to the connection):
//
//	BENCH session stream_frames_per_s=<n> p50_ms=<x> p99_ms=<y> sessions=<S> lost=<sent-received>
//
// With --peer nginx a Debian nginx (installed with apt-get when missing; the
// system service is never started by us) terminates TLS (self-signed
// ECDSA P-256 certificate, as the nodes' certificates) and proxies
// WebSocket upgrades over plain HTTP/1.1 to an echo backend (this binary,
// `bench session --echo-backend ADDR`, a separate process using
// github.com/coder/websocket as the nodes do). S clients each keep up to
// --window 128-byte messages in flight and take the round-trip time:
//
//	BENCH nginx_ws echo_msgs_per_s=<n> p50_ms=<x> p99_ms=<y> clients=<S>
//	BENCH session_vs_nginx durable_ratio=<durable/echo> stream_ratio=<stream/echo> durable_p99_ms=<y>
//
// With --rounds R > 1 session rounds and nginx rounds alternate and the round
// with the median rate is reported for each figure.
//
// Sending as fast as the window allows measures throughput; the latency is
// then mostly queueing in the window (Little's law: ≈ window / per-session
// rate). --rate F makes every sender offer F frames per second instead (open
// loop; the lines then end with offered_per_s=<S×F>), which measures latency
// at a load below saturation.

// sessionBenchConfig holds the flags of `switchboard bench session`.
type sessionBenchConfig struct {
	sessions     int
	duration     time.Duration
	warmup       time.Duration
	frameSize    int
	window       int
	rate         float64 // frames per second per session (0: as fast as the library lets it)
	peer         string
	rounds       int
	binary       string
	keep         string
	nodeArgs     []string
	readyTimeout time.Duration
	nginxBinary  string
	echoBackend  string // hidden mode: serve the echo backend on this address
}

// PeerNginx compares the session relay with nginx proxying a WebSocket echo.
const PeerNginx = "nginx"

// minFrameSize holds a payload's header: phase id, send time, number.
const minFrameSize = 20

func parseSessionFlags(args []string) (sessionBenchConfig, error) {
	var cfg sessionBenchConfig
	fs := flag.NewFlagSet("bench session", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&cfg.sessions, "sessions", 64, "sessions, each with a host and a guest on different nodes")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time of each phase")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before each measured phase")
	fs.IntVar(&cfg.frameSize, "frame-size", 128, "payload bytes per frame (and per echo message)")
	fs.IntVar(&cfg.window, "window", sessionclient.DefaultWindow, "durable frames unconfirmed per host (the client library's window), and echo messages in flight per nginx client")
	fs.Float64Var(&cfg.rate, "rate", 0, "frames per second each host offers (and each nginx client); 0 = as fast as the library's window lets it. A rate below saturation measures latency without queueing in the window")
	fs.StringVar(&cfg.peer, "peer", PeerNone, "system to compare with: none or nginx")
	fs.IntVar(&cfg.rounds, "rounds", 1, "measured rounds, alternating session and nginx; the median is reported")
	fs.StringVar(&cfg.binary, "binary", "", "switchboard binary to start the nodes with (default: this executable)")
	fs.StringVar(&cfg.keep, "keep", "", "keep data and logs in this directory (default: a temporary directory, removed after a successful run)")
	nodeArgs := fs.String("node-args", "", "extra arguments for every node, space-separated (e.g. \"--enable-pprof\")")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for the cluster to become ready")
	fs.StringVar(&cfg.nginxBinary, "nginx-binary", "nginx", "nginx binary (with --peer nginx; installed with apt-get install nginx when absent)")
	fs.StringVar(&cfg.echoBackend, "echo-backend", "", "internal: serve only the WebSocket echo backend on this address")
	if err := parseDriverFlags(fs, "session", args); err != nil {
		return cfg, err
	}
	cfg.nodeArgs = strings.Fields(*nodeArgs)
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if cfg.sessions < 1 || cfg.sessions > 3000 {
		bad("--sessions: must be 1..3000, got %d", cfg.sessions)
	}
	if cfg.duration <= 0 {
		bad("--duration: must be positive, got %v", cfg.duration)
	}
	if cfg.warmup < 0 {
		bad("--warmup: must not be negative, got %v", cfg.warmup)
	}
	if cfg.frameSize < minFrameSize || cfg.frameSize > 65536 {
		bad("--frame-size: must be %d..65536, got %d", minFrameSize, cfg.frameSize)
	}
	if cfg.window < 1 || cfg.window > 1<<20 {
		bad("--window: must be 1..1048576, got %d", cfg.window)
	}
	switch cfg.peer {
	case PeerNone, PeerNginx:
	default:
		bad("--peer: must be %q or %q, got %q", PeerNone, PeerNginx, cfg.peer)
	}
	if cfg.rounds < 1 || cfg.rounds > 99 {
		bad("--rounds: must be 1..99, got %d", cfg.rounds)
	}
	if cfg.rate < 0 || math.IsNaN(cfg.rate) || math.IsInf(cfg.rate, 0) {
		bad("--rate: must be 0 or positive, got %v", cfg.rate)
	}
	if cfg.readyTimeout <= 0 {
		bad("--ready-timeout: must be positive, got %v", cfg.readyTimeout)
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("bench session: %w", errors.Join(errs...))
	}
	var err error
	cfg.binary, err = defaultBinary("bench session", cfg.binary)
	return cfg, err
}

// RunSession runs the relayed-session benchmark (`make bench-session`):
// result lines go to stdout, progress to stderr. SIGINT and SIGTERM cancel
// the run; every started process is stopped before RunSession returns.
func RunSession(ctx context.Context, args []string, stdout io.Writer) error {
	return runSession(ctx, args, stdout, os.Stderr)
}

func runSession(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseSessionFlags(args)
	ctx, stopSignals, log, err := startDriver(ctx, err, stderr)
	if err != nil {
		return err
	}
	defer stopSignals()
	if cfg.echoBackend != "" {
		return serveEcho(ctx, cfg.echoBackend, log)
	}

	dir, cleanup, err := runDir(cfg.keep, "bench session", []string{"cluster"}, log)
	if err != nil {
		return err
	}
	defer func() { cleanup(err) }()

	nginxPath := ""
	if cfg.peer == PeerNginx {
		// Before the cluster, so that a missing nginx fails fast.
		if nginxPath, err = EnsureNginx(ctx, cfg.nginxBinary, log, stderr); err != nil {
			return fmt.Errorf("bench session: %w", err)
		}
	}
	log.Info("bench session", "sessions", cfg.sessions, "duration", cfg.duration, "warmup", cfg.warmup,
		"frame_size", cfg.frameSize, "window", cfg.window, "rate_per_session", cfg.rate, "peer", cfg.peer, "rounds", cfg.rounds,
		"binary", cfg.binary, "dir", dir, "cpus", runtime.NumCPU())

	sc, err := startSessionCluster(ctx, cfg.binary, filepath.Join(dir, "cluster"), cfg.nodeArgs, cfg.readyTimeout, log)
	if err != nil {
		return fmt.Errorf("bench session: %w", err)
	}
	defer sc.stop(log)
	pairs, err := openBenchPairs(ctx, sc, cfg, log)
	if err != nil {
		return fmt.Errorf("bench session: %w", err)
	}
	defer closeBenchPairs(pairs)

	var echo *echoSystem
	if cfg.peer == PeerNginx {
		echo, err = startEchoSystem(ctx, cfg, nginxPath, filepath.Join(dir, "nginx"), log)
		if err != nil {
			return fmt.Errorf("bench session: %w", err)
		}
		defer echo.stop(log)
	}

	var durRounds, streamRounds []phaseResult
	var echoRounds []Result
	var phaseID uint32
	for r := range cfg.rounds {
		phaseID++
		d, err := runSessionPhase(ctx, pairs, cfg, phaseDurable, phaseID, log)
		if err != nil {
			return fmt.Errorf("bench session: round %d: %w", r+1, err)
		}
		durRounds = append(durRounds, d)
		phaseID++
		s, err := runSessionPhase(ctx, pairs, cfg, phaseStream, phaseID, log)
		if err != nil {
			return fmt.Errorf("bench session: round %d: %w", r+1, err)
		}
		streamRounds = append(streamRounds, s)
		if echo != nil {
			e, err := echo.run(ctx, cfg, log)
			if err != nil {
				return fmt.Errorf("bench session: round %d: %w", r+1, err)
			}
			echoRounds = append(echoRounds, e)
		}
	}
	d := medianPhase(durRounds)
	s := medianPhase(streamRounds)
	// With --rate the lines say what was offered.
	offered := ""
	if cfg.rate > 0 {
		offered = fmt.Sprintf(" offered_per_s=%d", int64(math.Round(cfg.rate*float64(cfg.sessions))))
	}
	fmt.Fprintf(stdout, "BENCH session durable_frames_per_s=%d p50_ms=%s p99_ms=%s sessions=%d errors=%d%s\n",
		int64(math.Round(d.rate())), ms(d.latency.Quantile(0.5)), ms(d.latency.Quantile(0.99)), cfg.sessions, d.errors, offered)
	fmt.Fprintf(stdout, "BENCH session stream_frames_per_s=%d p50_ms=%s p99_ms=%s sessions=%d lost=%d%s\n",
		int64(math.Round(s.rate())), ms(s.latency.Quantile(0.5)), ms(s.latency.Quantile(0.99)), cfg.sessions, s.lost(), offered)
	var failures []error
	if d.measured == 0 {
		failures = append(failures, errors.New("no durable frame arrived in the measured window"))
	}
	if d.errors > 0 {
		failures = append(failures, fmt.Errorf("%d errors in the durable phase (node logs in %s)", d.errors, sc.Dir))
	}
	if s.measured == 0 {
		failures = append(failures, errors.New("no stream frame arrived in the measured window"))
	}
	if echo != nil {
		e := medianRound(echoRounds)
		fmt.Fprintf(stdout, "BENCH nginx_ws echo_msgs_per_s=%d p50_ms=%s p99_ms=%s clients=%d%s\n",
			int64(math.Round(e.Rate())), ms(e.Latency.Quantile(0.5)), ms(e.Latency.Quantile(0.99)), cfg.sessions, offered)
		fmt.Fprintf(stdout, "BENCH session_vs_nginx durable_ratio=%s stream_ratio=%s durable_p99_ms=%s\n",
			ratio(d.rate(), e.Rate()), ratio(s.rate(), e.Rate()), ms(d.latency.Quantile(0.99)))
		if e.OK == 0 {
			failures = append(failures, fmt.Errorf("no echo answered through nginx (logs in %s)", echo.dir))
		}
		if e.Errors > 0 {
			log.Warn("echo clients saw errors", "errors", e.Errors)
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("bench session: %w", errors.Join(failures...))
	}
	return nil
}

// sessionCluster is a LogCluster whose nodes serve sessions to this
// process: it knows the host token and trusts the cluster CA.
type sessionCluster struct {
	*LogCluster
	token string
	tls   *tls.Config
	http  *http.Client
}

// startSessionCluster starts three nodes with production defaults, a host
// token of its own (--session-host-tokens) and extra args.
func startSessionCluster(ctx context.Context, binary, dir string, extra []string, readyTimeout time.Duration, log *slog.Logger) (*sessionCluster, error) {
	var tok [16]byte
	_, _ = crand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	args := append([]string{"--session-host-tokens", "bench:" + token}, extra...)
	log.Info("starting cluster", "nodes", 3, "dir", dir, "extra_args", strings.Join(extra, " "))
	lc, err := StartLogClusterWith(ctx, binary, 3, dir, ClusterOptions{ExtraArgs: args, ReadyTimeout: readyTimeout, Logger: log})
	if err != nil {
		return nil, err
	}
	pool, err := lc.CAPool()
	if err != nil {
		_ = lc.Stop()
		return nil, err
	}
	return &sessionCluster{LogCluster: lc, token: token,
		tls:  &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		http: &http.Client{Timeout: 2 * time.Second}}, nil
}

func (c *sessionCluster) stop(log *slog.Logger) {
	log.Info("stopping cluster")
	if err := c.Stop(); err != nil {
		log.Warn("stopping cluster", "err", err)
	}
}

// clientConfig lists the session endpoints starting with node first.
func (c *sessionCluster) clientConfig(first int, window int) sessionclient.Config {
	var nodes []string
	for i := range c.Nodes {
		nodes = append(nodes, c.Nodes[(first+i)%len(c.Nodes)].SessionAddr)
	}
	return sessionclient.Config{Nodes: nodes, TLS: c.tls, Window: window}
}

// nodeIndex returns the index of the node with id, or -1.
func (c *sessionCluster) nodeIndex(id string) int {
	for i, nd := range c.Nodes {
		if nd.ID == id {
			return i
		}
	}
	return -1
}

// sessionGrainNodes returns the running nodes whose /metrics report at
// least one active session grain (switchboard_entity_active{kind="session"}).
func (c *sessionCluster) sessionGrainNodes(ctx context.Context) []int {
	var out []int
	for i, nd := range c.Nodes {
		if !nd.Proc.Running() {
			continue
		}
		if n, err := c.activeSessions(ctx, nd); err == nil && n >= 1 {
			out = append(out, i)
		}
	}
	return out
}

// servingGrainNode returns the node whose session grain is serving: the
// only node reporting an active session grain or, when a stale activation
// (fenced by a newer one, not yet passivated) lingers on another node, the
// only one of them whose switchboard_entity_commands_total{kind="session",
// outcome="ok"} grows over sample (the bench keeps commands flowing). -1
// when that cannot be told.
func (c *sessionCluster) servingGrainNode(ctx context.Context, sample time.Duration) int {
	active := c.sessionGrainNodes(ctx)
	switch len(active) {
	case 0:
		return -1
	case 1:
		return active[0]
	}
	before := make([]float64, len(active))
	for k, i := range active {
		m, err := c.metrics(ctx, c.Nodes[i])
		if err != nil {
			return -1
		}
		before[k] = m.sessionCommandsOK
	}
	t := time.NewTimer(sample)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return -1
	case <-t.C:
	}
	found := -1
	for k, i := range active {
		m, err := c.metrics(ctx, c.Nodes[i])
		if err != nil {
			return -1
		}
		if m.sessionCommandsOK > before[k] {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

func (c *sessionCluster) activeSessions(ctx context.Context, nd *LogNode) (float64, error) {
	m, err := c.metrics(ctx, nd)
	return m.activeSessions, err
}

func (c *sessionCluster) metrics(ctx context.Context, nd *LogNode) (sessionMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", nil)
	if err != nil {
		return sessionMetrics{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return sessionMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sessionMetrics{}, fmt.Errorf("%s /metrics: %s", nd.ID, resp.Status)
	}
	return parseSessionMetrics(resp.Body), nil
}

// sessionMetrics are the values of a node's /metrics the session benches
// read.
type sessionMetrics struct {
	activeSessions    float64 // switchboard_entity_active{kind="session"}
	sessionCommandsOK float64 // switchboard_entity_commands_total{kind="session",outcome="ok"}
}

// parseSessionMetrics reads a Prometheus text exposition (absent = 0).
func parseSessionMetrics(r io.Reader) sessionMetrics {
	var m sessionMetrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	value := func(line string) float64 {
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "switchboard_entity_active{") && strings.Contains(line, `kind="session"`):
			m.activeSessions = value(line)
		case strings.HasPrefix(line, "switchboard_entity_commands_total{") && strings.Contains(line, `kind="session"`) && strings.Contains(line, `outcome="ok"`):
			m.sessionCommandsOK = value(line)
		}
	}
	return m
}

// benchPair is one session of the benchmark: its host sends, its guest
// receives and measures.
type benchPair struct {
	i           int
	host, guest *sessionclient.Session
	rec         *pairRecorder
}

// slowSession is the largest frame latency of one session above which the
// benchmark names the session and its clients' reconnect counters (a stalled
// session hides in the totals).
const slowSession = 5 * time.Second

const (
	phaseDurable = "durable"
	phaseStream  = "stream"
)

// pairRecorder is what a guest's receive loop records for the current
// phase. The payload of every frame is: phase id (4 bytes), send time (unix
// nanoseconds, 8), number within the phase (8, from 1), padding.
type pairRecorder struct {
	mu         sync.Mutex
	phaseID    uint32
	measStart  time.Time
	measEnd    time.Time
	hist       *Histogram
	measured   uint64 // received inside the window
	total      uint64 // received in this phase
	lastNum    uint64 // durable: the highest number received
	disorder   uint64 // durable: duplicates and frames out of order
	stale      uint64 // frames of an earlier phase
	gaps       uint64
	recvErr    error
	firstWarns int
}

func (r *pairRecorder) reset(phaseID uint32, measStart, measEnd time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phaseID, r.measStart, r.measEnd = phaseID, measStart, measEnd
	r.hist = NewHistogram()
	r.measured, r.total, r.lastNum, r.disorder, r.stale, r.gaps = 0, 0, 0, 0, 0, 0
}

// note records one received frame.
func (r *pairRecorder) note(m sessionclient.Message, now time.Time, log *slog.Logger, i int) {
	if len(m.Payload) < minFrameSize {
		return
	}
	id := binary.BigEndian.Uint32(m.Payload[0:4])
	sent := int64(binary.BigEndian.Uint64(m.Payload[4:12]))
	num := binary.BigEndian.Uint64(m.Payload[12:20])
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != r.phaseID {
		r.stale++
		return
	}
	r.total++
	if m.Kind == sessionclient.Durable {
		if num != r.lastNum+1 {
			r.disorder++
			if r.firstWarns < 3 {
				r.firstWarns++
				log.Warn("durable frame out of order", "session", i, "got", num, "want", r.lastNum+1)
			}
		}
		r.lastNum = max(r.lastNum, num)
	}
	if !now.Before(r.measStart) && now.Before(r.measEnd) {
		r.measured++
		r.hist.Record(now.Sub(time.Unix(0, sent)))
	}
}

// openBenchPairs opens cfg.sessions sessions: host on node i%3, guest on
// node (i+1)%3. The guests' receive loops run until the pairs are closed.
func openBenchPairs(ctx context.Context, sc *sessionCluster, cfg sessionBenchConfig, log *slog.Logger) ([]*benchPair, error) {
	log.Info("opening sessions", "sessions", cfg.sessions)
	start := time.Now()
	pairs := make([]*benchPair, cfg.sessions)
	errs := make([]error, cfg.sessions)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range cfg.sessions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			host, err := sessionclient.Open(octx, sc.clientConfig(i%3, cfg.window), sessionclient.OpenParams{
				Token: sc.token, Name: fmt.Sprintf("host-%d", i),
				Limits: sessionclient.Limits{FramesPerSecond: 10000, Burst: 20000},
			})
			if err != nil {
				errs[i] = fmt.Errorf("open session %d: %w", i, err)
				return
			}
			guest, err := sessionclient.Join(octx, sc.clientConfig((i+1)%3, cfg.window), sessionclient.JoinParams{
				Session: host.Code(), Secret: host.JoinSecret(), Name: fmt.Sprintf("guest-%d", i)})
			if err != nil {
				host.Close()
				errs[i] = fmt.Errorf("join session %d: %w", i, err)
				return
			}
			pairs[i] = &benchPair{i: i, host: host, guest: guest, rec: &pairRecorder{hist: NewHistogram()}}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeBenchPairs(pairs)
		return nil, err
	}
	for _, p := range pairs {
		if p.host.Node() == p.guest.Node() {
			log.Warn("host and guest on the same node", "session", p.i, "node", p.host.Node())
		}
		go drainRecv(p.host)
		go p.recvLoop(log)
	}
	log.Info("sessions open", "sessions", cfg.sessions, "took", time.Since(start).Round(time.Millisecond))
	return pairs, nil
}

// drainRecv keeps reading a host's messages (notices) so that its receive
// buffer never fills.
func drainRecv(s *sessionclient.Session) {
	for {
		if _, err := s.Recv(context.Background()); err != nil {
			return
		}
	}
}

func (p *benchPair) recvLoop(log *slog.Logger) {
	for {
		m, err := p.guest.Recv(context.Background())
		now := time.Now()
		if err != nil {
			if !errors.Is(err, sessionclient.ErrClosed) {
				p.rec.mu.Lock()
				p.rec.recvErr = err
				p.rec.mu.Unlock()
				log.Warn("guest receive failed", "session", p.i, "err", err)
			}
			return
		}
		switch m.Kind {
		case sessionclient.Durable, sessionclient.Stream:
			p.rec.note(m, now, log, p.i)
		case sessionclient.Gap:
			p.rec.mu.Lock()
			p.rec.gaps++
			p.rec.mu.Unlock()
		}
	}
}

func closeBenchPairs(pairs []*benchPair) {
	var wg sync.WaitGroup
	for _, p := range pairs {
		if p == nil {
			continue
		}
		wg.Go(func() {
			p.guest.Close()
			p.host.Close()
		})
	}
	wg.Wait()
}

// phaseResult is the outcome of one durable or stream phase.
type phaseResult struct {
	kind     string
	window   time.Duration
	measured uint64 // frames received inside the measured window
	sent     uint64 // frames sent (stream: accepted by SendStream and not dropped)
	received uint64 // frames of the phase received in all
	errors   uint64
	gaps     uint64
	latency  *Histogram
}

func (r phaseResult) rate() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(r.measured) / r.window.Seconds()
}

func (r phaseResult) lost() int64 { return int64(r.sent) - int64(r.received) }

// medianPhase returns the phase with the median rate.
func medianPhase(rs []phaseResult) phaseResult {
	sorted := append([]phaseResult(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].rate() < sorted[j].rate() })
	return sorted[(len(sorted)-1)/2]
}

// runSessionPhase runs one phase: every host sends as fast as the library
// lets it for warmup+duration, then the frames in flight are waited for.
func runSessionPhase(ctx context.Context, pairs []*benchPair, cfg sessionBenchConfig, kind string, phaseID uint32, log *slog.Logger) (phaseResult, error) {
	start := time.Now()
	measStart := start.Add(cfg.warmup)
	measEnd := measStart.Add(cfg.duration)
	for _, p := range pairs {
		p.rec.reset(phaseID, measStart, measEnd)
	}
	log.Info("running session phase", "phase", kind, "sessions", len(pairs), "warmup", cfg.warmup, "duration", cfg.duration)
	sent := make([]uint64, len(pairs))
	dropped := make([]uint64, len(pairs))
	var sendErrs atomic.Uint64
	var progress atomic.Uint64
	sctx, cancel := context.WithDeadline(ctx, measEnd)
	defer cancel()
	var wg sync.WaitGroup
	for k, p := range pairs {
		wg.Go(func() {
			before := p.host.Stats().StreamDropped
			payload := make([]byte, cfg.frameSize)
			binary.BigEndian.PutUint32(payload[0:4], phaseID)
			var n uint64
			warned := false
			for sctx.Err() == nil {
				if !pace(sctx, start, cfg.rate, n) {
					break
				}
				binary.BigEndian.PutUint64(payload[4:12], uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(payload[12:20], n+1)
				var err error
				if kind == phaseDurable {
					err = p.host.Send(sctx, payload)
				} else {
					err = p.host.SendStream(sctx, payload)
				}
				if err != nil {
					if sctx.Err() != nil {
						break
					}
					sendErrs.Add(1)
					if !warned {
						warned = true
						log.Warn("send failed", "phase", kind, "session", p.i, "err", err)
					}
					select {
					case <-sctx.Done():
					case <-time.After(errorSleep):
					}
					continue
				}
				n++
				progress.Add(1)
			}
			sent[k] = n
			dropped[k] = p.host.Stats().StreamDropped - before
		})
	}
	stopProgress := logProgress(log, kind, &progress, measStart)
	wg.Wait()
	stopProgress()
	if err := ctx.Err(); err != nil {
		return phaseResult{}, err
	}

	res := phaseResult{kind: kind, window: cfg.duration, errors: sendErrs.Load(), latency: NewHistogram()}
	for k := range pairs {
		res.sent += sent[k] - dropped[k]
	}
	// Wait for what is in flight.
	if kind == phaseDurable {
		fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
		var ferrs []error
		for _, p := range pairs {
			if err := p.host.Flush(fctx); err != nil {
				ferrs = append(ferrs, fmt.Errorf("session %d: flush: %w", p.i, err))
			}
		}
		fcancel()
		if len(ferrs) > 0 {
			log.Warn("flush failed", "err", errors.Join(ferrs...))
			res.errors += uint64(len(ferrs))
		}
		waitUntil(ctx, 60*time.Second, func() bool {
			for k, p := range pairs {
				p.rec.mu.Lock()
				done := p.rec.total >= sent[k] || p.rec.recvErr != nil
				p.rec.mu.Unlock()
				if !done {
					return false
				}
			}
			return true
		})
	} else {
		// Stream frames are never confirmed: wait until everything sent
		// arrived or nothing arrived for a second.
		last, lastChange := uint64(0), time.Now()
		waitUntil(ctx, 30*time.Second, func() bool {
			var got uint64
			for _, p := range pairs {
				p.rec.mu.Lock()
				got += p.rec.total
				p.rec.mu.Unlock()
			}
			if got != last {
				last, lastChange = got, time.Now()
			}
			return got >= res.sent || time.Since(lastChange) > time.Second
		})
	}
	for k, p := range pairs {
		p.rec.mu.Lock()
		res.measured += p.rec.measured
		res.received += p.rec.total
		res.gaps += p.rec.gaps
		res.latency.Merge(p.rec.hist)
		if kind == phaseDurable {
			res.errors += p.rec.disorder
			if p.rec.total < sent[k] {
				res.errors += sent[k] - p.rec.total
				log.Warn("durable frames missing at the guest", "session", p.i, "sent", sent[k], "received", p.rec.total)
			}
		}
		if p.rec.recvErr != nil {
			res.errors++
		}
		if max := time.Duration(p.rec.hist.Max()); max > slowSession {
			hs, gs := p.host.Stats(), p.guest.Stats()
			log.Warn("slow session", "phase", kind, "session", p.i, "max_ms", ms(max), "p99_ms", ms(p.rec.hist.Quantile(0.99)),
				"host_reconnects", hs.Reconnects, "host_resends", hs.Resends, "host_confirm_timeouts", hs.ConfirmTimeouts,
				"guest_reconnects", gs.Reconnects, "guest_duplicates", gs.DuplicatesDropped)
		}
		p.rec.mu.Unlock()
	}
	var resends, reconnects uint64 // since the sessions opened
	for _, p := range pairs {
		hs, gs := p.host.Stats(), p.guest.Stats()
		resends += hs.Resends
		reconnects += hs.Reconnects + gs.Reconnects
	}
	h := res.latency
	log.Info("phase result", "phase", kind, "resends_so_far", resends, "reconnects_so_far", reconnects, "frames_per_s", int64(math.Round(res.rate())), "sent", res.sent,
		"received", res.received, "measured", res.measured, "errors", res.errors, "gaps", res.gaps,
		"p50_ms", ms(h.Quantile(0.5)), "p90_ms", ms(h.Quantile(0.9)), "p99_ms", ms(h.Quantile(0.99)),
		"max_ms", ms(time.Duration(h.Max())), "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// pace waits until frame n+1 of a sender offering rate frames per second
// from start is due (at once when rate is 0 or the sender is behind); false
// when ctx ended first.
func pace(ctx context.Context, start time.Time, rate float64, n uint64) bool {
	if rate <= 0 {
		return true
	}
	wait := time.Until(start.Add(time.Duration(float64(n) / rate * float64(time.Second))))
	if wait <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitUntil polls cond every 20 ms until it holds, ctx ends or timeout
// passes; it reports whether cond held.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// logProgress logs the rate of counter every 2 s until the returned
// function is called.
func logProgress(log *slog.Logger, what string, counter *atomic.Uint64, measStart time.Time) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		last, lastT := counter.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := counter.Load()
				phase := "measure"
				if now.Before(measStart) {
					phase = "warmup"
				}
				log.Info("progress", "what", what, "phase", phase, "sent_per_s", int(float64(n-last)/now.Sub(lastT).Seconds()))
				last, lastT = n, now
			}
		}
	}()
	return func() { close(done); <-stopped }
}
