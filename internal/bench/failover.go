package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// Failover benchmark (`switchboard bench failover`, `make bench-failover`).
//
// A three-node cluster (production defaults plus a host token, and
// --node-args) carries one session: the host connected to node 1, the guest
// to node 2, each sending numbered durable frames every --interval (5 ms).
// Each round kills one node with SIGKILL, alternately (odd rounds) the
// guest's node and (even rounds) the node hosting the session grain (the one
// whose /metrics show switchboard_entity_active{kind="session"} 1; when a
// stale activation lingers on another node after a restart, the one whose
// switchboard_entity_commands_total{kind="session",outcome="ok"} grows). The
// resume time is from the SIGKILL until BOTH directions have delivered a
// frame whose Send was called after the killed process had exited. The node
// is restarted and every node must answer /readyz before the next round.
// At the end both stop sending and Flush, and the receivers' records are
// checked: every frame number exactly once and in order.
//
//	BENCH failover_round n=<i> killed=<client|grain|both> resume_ms=<x> node=<id> raft_leader=<bool> ...
//	BENCH failover resume_p50_ms=<x> resume_p99_ms=<y> lost=<n> duplicated=<n> rounds=<N>
//
// killed says what the killed node served: a participant's connection
// (client), the session grain (grain), or both. duplicated counts frames
// the application received twice (the library drops re-deliveries, the
// server de-duplicates re-sends: both should make it 0). The run fails
// (non-zero exit) when a frame is lost, duplicated or reordered, a round
// does not resume within --resume-timeout, or p99 exceeds --max-p99 (2 s).

type failoverConfig struct {
	rounds        int
	interval      time.Duration
	binary        string
	keep          string
	nodeArgs      []string
	readyTimeout  time.Duration
	resumeTimeout time.Duration
	maxP99        time.Duration
	settle        time.Duration
}

func parseFailoverFlags(args []string) (failoverConfig, error) {
	var cfg failoverConfig
	fs := flag.NewFlagSet("bench failover", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&cfg.rounds, "rounds", 10, "nodes killed, one per round, alternating the guest's node and the grain's node")
	fs.DurationVar(&cfg.interval, "interval", 5*time.Millisecond, "time between two durable frames of each participant")
	fs.StringVar(&cfg.binary, "binary", "", "switchboard binary to start the nodes with (default: this executable)")
	fs.StringVar(&cfg.keep, "keep", "", "keep data and logs in this directory (default: a temporary directory, removed after a successful run)")
	nodeArgs := fs.String("node-args", "", "extra arguments for every node, space-separated (e.g. \"--raft-heartbeat-timeout 500ms\")")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for the cluster (and a restarted node) to become ready")
	fs.DurationVar(&cfg.resumeTimeout, "resume-timeout", 30*time.Second, "a round whose traffic has not resumed after this long fails")
	fs.DurationVar(&cfg.maxP99, "max-p99", 2*time.Second, "fail when the p99 resume time is above this")
	fs.DurationVar(&cfg.settle, "settle", 500*time.Millisecond, "traffic must flow in both directions for this long before a kill")
	if err := parseDriverFlags(fs, "failover", args); err != nil {
		return cfg, err
	}
	cfg.nodeArgs = strings.Fields(*nodeArgs)
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if cfg.rounds < 1 || cfg.rounds > 1000 {
		bad("--rounds: must be 1..1000, got %d", cfg.rounds)
	}
	if cfg.interval < time.Millisecond {
		bad("--interval: must be at least 1ms, got %v", cfg.interval)
	}
	for name, d := range map[string]time.Duration{"--ready-timeout": cfg.readyTimeout, "--resume-timeout": cfg.resumeTimeout, "--max-p99": cfg.maxP99} {
		if d <= 0 {
			bad("%s: must be positive, got %v", name, d)
		}
	}
	if cfg.settle < 0 {
		bad("--settle: must not be negative, got %v", cfg.settle)
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("bench failover: %w", errors.Join(errs...))
	}
	var err error
	cfg.binary, err = defaultBinary("bench failover", cfg.binary)
	return cfg, err
}

// RunFailover runs the session failover benchmark (`make bench-failover`):
// result lines go to stdout, progress to stderr. It returns an error (exit
// status 1) when a frame was lost, duplicated or reordered or the p99
// resume time is over --max-p99.
func RunFailover(ctx context.Context, args []string, stdout io.Writer) error {
	return runFailover(ctx, args, stdout, os.Stderr)
}

// failoverPeer is one direction: a participant sending numbered frames and
// the other one receiving them. Payload: number (8 bytes), send time (unix
// nanoseconds, 8).
type failoverPeer struct {
	name     string // "host→guest" or "guest→host"
	from, to *sessionclient.Session

	sent atomic.Uint64 // frames Send accepted

	mu         sync.Mutex
	counts     []uint32 // counts[n] = times frame n was received
	last       uint64   // the number of the last frame received
	received   uint64   // distinct frames received
	reordered  uint64   // frames whose number was not last+1 (and not a duplicate)
	duplicated uint64
	after      int64 // unix nanos: the first frame sent after this...
	resumedAt  int64 // ...arrived at this time (0: not yet)
	recvErr    error
}

func (p *failoverPeer) sendLoop(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	payload := make([]byte, 16)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := p.sent.Load() + 1
		binary.BigEndian.PutUint64(payload[0:8], n)
		binary.BigEndian.PutUint64(payload[8:16], uint64(time.Now().UnixNano()))
		if err := p.from.Send(ctx, payload); err != nil {
			if ctx.Err() == nil {
				log.Error("send failed", "direction", p.name, "frame", n, "err", err)
				p.mu.Lock()
				p.recvErr = errors.Join(p.recvErr, fmt.Errorf("%s: send %d: %w", p.name, n, err))
				p.mu.Unlock()
			}
			return
		}
		p.sent.Store(n)
	}
}

func (p *failoverPeer) recvLoop(log *slog.Logger) {
	for {
		m, err := p.to.Recv(context.Background())
		now := time.Now().UnixNano()
		if err != nil {
			if !errors.Is(err, sessionclient.ErrClosed) {
				log.Error("receive failed", "direction", p.name, "err", err)
				p.mu.Lock()
				p.recvErr = errors.Join(p.recvErr, fmt.Errorf("%s: recv: %w", p.name, err))
				p.mu.Unlock()
			}
			return
		}
		if m.Kind != sessionclient.Durable || len(m.Payload) != 16 {
			continue
		}
		n := binary.BigEndian.Uint64(m.Payload[0:8])
		sentAt := int64(binary.BigEndian.Uint64(m.Payload[8:16]))
		p.mu.Lock()
		for uint64(len(p.counts)) <= n {
			p.counts = append(p.counts, make([]uint32, max(1024, len(p.counts)))...)
		}
		p.counts[n]++
		switch {
		case p.counts[n] > 1:
			p.duplicated++
			log.Warn("frame received twice", "direction", p.name, "frame", n)
		case n != p.last+1:
			p.reordered++
			log.Warn("frame out of order", "direction", p.name, "frame", n, "after", p.last)
			p.received++
		default:
			p.received++
		}
		p.last = n
		if p.after != 0 && p.resumedAt == 0 && sentAt > p.after {
			p.resumedAt = now
		}
		p.mu.Unlock()
	}
}

// arm starts watching for the first frame sent after the time after.
func (p *failoverPeer) arm(after time.Time) {
	p.mu.Lock()
	p.after, p.resumedAt = after.UnixNano(), 0
	p.mu.Unlock()
}

func (p *failoverPeer) resumed() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Unix(0, p.resumedAt), p.resumedAt != 0
}

func (p *failoverPeer) receivedCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received
}

func (p *failoverPeer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recvErr
}

// tally counts, for frames 1..sent, those never received.
func (p *failoverPeer) lost() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lost uint64
	for n := uint64(1); n <= p.sent.Load(); n++ {
		if n >= uint64(len(p.counts)) || p.counts[n] == 0 {
			lost++
		}
	}
	return lost
}

func runFailover(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseFailoverFlags(args)
	ctx, stopSignals, log, err := startDriver(ctx, err, stderr)
	if err != nil {
		return err
	}
	defer stopSignals()
	dir, cleanup, err := runDir(cfg.keep, "bench failover", []string{"cluster"}, log)
	if err != nil {
		return err
	}
	defer func() { cleanup(err) }()
	log.Info("bench failover", "rounds", cfg.rounds, "interval", cfg.interval, "binary", cfg.binary, "dir", dir, "cpus", runtime.NumCPU())

	sc, err := startSessionCluster(ctx, cfg.binary, filepath.Join(dir, "cluster"), cfg.nodeArgs, cfg.readyTimeout, log)
	if err != nil {
		return fmt.Errorf("bench failover: %w", err)
	}
	defer sc.stop(log)

	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	host, err := sessionclient.Open(octx, sc.clientConfig(0, 0), sessionclient.OpenParams{Token: sc.token, Name: "host"})
	if err != nil {
		return fmt.Errorf("bench failover: open: %w", err)
	}
	defer host.Close()
	guest, err := sessionclient.Join(octx, sc.clientConfig(1, 0), sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: "guest"})
	if err != nil {
		return fmt.Errorf("bench failover: join: %w", err)
	}
	defer guest.Close()
	log.Info("session open", "session", host.Code(), "host_node", host.Node(), "guest_node", guest.Node())

	h2g := &failoverPeer{name: "host→guest", from: host, to: guest}
	g2h := &failoverPeer{name: "guest→host", from: guest, to: host}
	peers := []*failoverPeer{h2g, g2h}
	tctx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() { p.sendLoop(tctx, cfg.interval, log) })
		go p.recvLoop(log)
	}
	defer wg.Wait()
	defer stopTraffic()

	peerErr := func() error { return errors.Join(h2g.err(), g2h.err()) }
	// flowing waits until both directions received settle's worth of new
	// frames.
	flowing := func(what string) error {
		want := uint64(max(1, int(cfg.settle/cfg.interval)))
		b0, b1 := h2g.receivedCount(), g2h.receivedCount()
		ok := waitUntil(ctx, cfg.resumeTimeout, func() bool {
			return peerErr() != nil || (h2g.receivedCount() >= b0+want && g2h.receivedCount() >= b1+want)
		})
		if err := peerErr(); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("traffic did not flow %s within %v (host→guest %d, guest→host %d)", what, cfg.resumeTimeout, h2g.receivedCount()-b0, g2h.receivedCount()-b1)
		}
		return nil
	}
	if err := flowing("at the start"); err != nil {
		return fmt.Errorf("bench failover: %w", err)
	}

	var resumes []time.Duration
	var failures []error
	for n := 1; n <= cfg.rounds; n++ {
		r, err := failoverRound(ctx, sc, cfg, n, host, guest, peers, log)
		if err != nil {
			return fmt.Errorf("bench failover: round %d: %w (node logs in %s)", n, err, sc.Dir)
		}
		fmt.Fprintf(stdout, "BENCH failover_round n=%d killed=%s resume_ms=%s node=%s raft_leader=%t host_node=%s guest_node=%s grain_node=%s host_to_guest_ms=%s guest_to_host_ms=%s\n",
			n, r.killed, ms(r.resume), r.node, r.leader, r.hostNode, r.guestNode, r.grainNode, ms(r.dirs[0]), ms(r.dirs[1]))
		if !r.ok {
			failures = append(failures, fmt.Errorf("round %d: traffic did not resume within %v", n, cfg.resumeTimeout))
		}
		resumes = append(resumes, r.resume)
		if n == cfg.rounds {
			break
		}
		// Restarted and ready; traffic must flow again before the next kill.
		if err := flowing(fmt.Sprintf("after round %d", n)); err != nil {
			return fmt.Errorf("bench failover: %w", err)
		}
	}

	// Stop, flush, and check every frame arrived exactly once, in order.
	stopTraffic()
	wg.Wait()
	fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
	defer fcancel()
	for _, p := range peers {
		if err := p.from.Flush(fctx); err != nil {
			failures = append(failures, fmt.Errorf("%s: flush: %w", p.name, err))
		}
	}
	waitUntil(ctx, 60*time.Second, func() bool {
		return peerErr() != nil || (h2g.receivedCount() >= h2g.sent.Load() && g2h.receivedCount() >= g2h.sent.Load())
	})
	if err := peerErr(); err != nil {
		failures = append(failures, err)
	}
	var lost, dup, reord uint64
	for _, p := range peers {
		l := p.lost()
		p.mu.Lock()
		dup += p.duplicated
		reord += p.reordered
		log.Info("direction checked", "direction", p.name, "sent", p.sent.Load(), "received", p.received,
			"lost", l, "duplicated", p.duplicated, "reordered", p.reordered)
		p.mu.Unlock()
		lost += l
	}
	hs, gs := host.Stats(), guest.Stats()
	log.Info("client stats", "host", fmt.Sprintf("%+v", hs), "guest", fmt.Sprintf("%+v", gs))
	p50, p99 := resumeQuantile(resumes, 0.5), resumeQuantile(resumes, 0.99)
	fmt.Fprintf(stdout, "BENCH failover resume_p50_ms=%s resume_p99_ms=%s lost=%d duplicated=%d reordered=%d rounds=%d\n",
		ms(p50), ms(p99), lost, dup, reord, len(resumes))
	if lost > 0 || dup > 0 || reord > 0 {
		failures = append(failures, fmt.Errorf("%d frames lost, %d duplicated, %d out of order", lost, dup, reord))
	}
	if p99 > cfg.maxP99 {
		failures = append(failures, fmt.Errorf("p99 resume time %v is over %v", p99, cfg.maxP99))
	}
	if len(failures) > 0 {
		return fmt.Errorf("bench failover: %w (node logs in %s)", errors.Join(failures...), sc.Dir)
	}
	return nil
}

// resumeQuantile returns the nearest-rank q-quantile of ds (0 when empty).
func resumeQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*q + 0.999999)
	return s[min(max(rank, 1), len(s))-1]
}

type roundResult struct {
	killed                         string
	node                           string
	leader                         bool
	hostNode, guestNode, grainNode string
	resume                         time.Duration
	dirs                           [2]time.Duration
	ok                             bool
}

// failoverRound kills one node (odd rounds: the guest's; even: the grain's),
// measures the resume time, restarts the node and waits for /readyz on all.
func failoverRound(ctx context.Context, sc *sessionCluster, cfg failoverConfig, n int, host, guest *sessionclient.Session, peers []*failoverPeer, log *slog.Logger) (roundResult, error) {
	g := -1
	if !waitUntil(ctx, 30*time.Second, func() bool {
		g = sc.servingGrainNode(ctx, 300*time.Millisecond)
		return g >= 0
	}) {
		return roundResult{}, fmt.Errorf("cannot tell which node serves the session grain (active on %v)", sc.sessionGrainNodes(ctx))
	}
	hi, gi := sc.nodeIndex(host.Node()), sc.nodeIndex(guest.Node())
	if hi < 0 || gi < 0 {
		return roundResult{}, fmt.Errorf("unknown node of host (%q) or guest (%q)", host.Node(), guest.Node())
	}
	victim := gi
	if n%2 == 0 {
		victim = g
	}
	r := roundResult{node: sc.Nodes[victim].ID, hostNode: sc.Nodes[hi].ID, guestNode: sc.Nodes[gi].ID, grainNode: sc.Nodes[g].ID}
	client := victim == hi || victim == gi
	switch {
	case client && victim == g:
		r.killed = "both"
	case client:
		r.killed = "client"
	default:
		r.killed = "grain"
	}
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	if l, ok := sc.leaderFromMetrics(lctx); ok {
		r.leader = l == victim
	}
	lcancel()

	t0 := time.Now()
	if err := sc.Kill(victim); err != nil {
		return r, err
	}
	dead := time.Now() // frames sent from now on went through the failover
	for _, p := range peers {
		p.arm(dead)
	}
	r.ok = waitUntil(ctx, cfg.resumeTimeout, func() bool {
		for _, p := range peers {
			if _, ok := p.resumed(); !ok {
				return false
			}
		}
		return true
	})
	r.resume = cfg.resumeTimeout
	if r.ok {
		r.resume = 0
		for k, p := range peers {
			at, _ := p.resumed()
			r.dirs[k] = at.Sub(t0)
			r.resume = max(r.resume, r.dirs[k])
		}
	}
	log.Info("round", "n", n, "killed", r.killed, "node", r.node, "raft_leader", r.leader, "resume", r.resume.Round(time.Millisecond),
		"host_now_on", host.Node(), "guest_now_on", guest.Node())
	if err := sc.Restart(ctx, victim); err != nil {
		return r, err
	}
	if err := sc.WaitReady(ctx, cfg.readyTimeout); err != nil {
		return r, err
	}
	return r, nil
}
