package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
)

// clientsPerConn is how many load clients share one gRPC connection (or one
// etcd client), so that a single HTTP/2 connection is not the bottleneck.
const clientsPerConn = 16

// RunLog runs the event-log benchmark (`make bench-log`) and, with --peer
// etcd, the same load against etcd. args are its flags (see the package
// documentation); result lines go to stdout, progress to stderr. SIGINT and
// SIGTERM cancel the run; every started process is stopped before RunLog
// returns.
func RunLog(ctx context.Context, args []string, stdout io.Writer) error {
	return runLog(ctx, args, stdout, os.Stderr)
}

func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseLogFlags(args)
	ctx, stopSignals, log, err := startDriver(ctx, err, stderr)
	if err != nil {
		return err
	}
	defer stopSignals()

	if err := checkBinary("bench-log", cfg.binary); err != nil {
		return err
	}
	dir, cleanup, err := runDir(cfg.keep, "bench-log", []string{"log", "etcd"}, log)
	if err != nil {
		return err
	}
	defer func() { cleanup(err) }()

	etcdPath := ""
	if cfg.peer == PeerEtcd {
		// Before the log phase, so that a missing etcd fails fast.
		if etcdPath, err = EnsureEtcd(ctx, cfg.etcdBinary, log, stderr); err != nil {
			return fmt.Errorf("bench-log: %w", err)
		}
	}
	log.Info("bench-log", "clients", (*clientList)(&cfg.clients).String(), "duration", cfg.duration, "warmup", cfg.warmup,
		"event_size", cfg.eventSize, "target", cfg.target, "api", cfg.api, "streams", streamsText(cfg.streams), "peer", cfg.peer,
		"nodes", cfg.nodes, "binary", cfg.binary, "dir", dir, "cpus", runtime.NumCPU())

	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff)
	logLoad, stopLog, err := startLogSystem(ctx, cfg, filepath.Join(dir, "log"), runID, log)
	if err != nil {
		return err
	}
	defer stopLog()
	var etcdLoad loadFunc
	if cfg.peer == PeerEtcd {
		var stopEtcd func()
		etcdLoad, stopEtcd, err = startEtcdSystem(ctx, cfg, etcdPath, filepath.Join(dir, "etcd"), runID, log)
		if err != nil {
			return err
		}
		defer stopEtcd()
	}

	// Both systems stay up (an idle cluster costs little) and their rounds
	// alternate, so that the machine's drift over minutes falls on both.
	var failures []error
	for _, c := range cfg.clients {
		var logRounds, etcdRounds []Result
		for range cfg.rounds {
			res, err := logLoad(ctx, c)
			if err != nil {
				return fmt.Errorf("bench-log: %w", err)
			}
			logRounds = append(logRounds, res)
			if etcdLoad != nil {
				res, err := etcdLoad(ctx, c)
				if err != nil {
					return fmt.Errorf("bench-log: %w", err)
				}
				etcdRounds = append(etcdRounds, res)
			}
		}
		lr := medianRound(logRounds)
		fmt.Fprintf(stdout, "BENCH log appends_per_s=%d p50_ms=%s p99_ms=%s clients=%d errors=%d rounds=%d\n",
			int64(math.Round(lr.Rate())), ms(lr.Latency.Quantile(0.50)), ms(lr.Latency.Quantile(0.99)), c, lr.Errors, len(logRounds))
		logSummary(log, lr)
		if lr.OK == 0 {
			failures = append(failures, fmt.Errorf("log: no successful append with %d clients (node logs in %s)", c, filepath.Join(dir, "log")))
		}
		if etcdLoad == nil {
			continue
		}
		er := medianRound(etcdRounds)
		fmt.Fprintf(stdout, "BENCH etcd puts_per_s=%d p50_ms=%s p99_ms=%s clients=%d errors=%d rounds=%d\n",
			int64(math.Round(er.Rate())), ms(er.Latency.Quantile(0.50)), ms(er.Latency.Quantile(0.99)), c, er.Errors, len(etcdRounds))
		logSummary(log, er)
		fmt.Fprintf(stdout, "BENCH log_vs_etcd ratio=%s p99_ratio=%s clients=%d\n",
			ratio(lr.Rate(), er.Rate()), ratio(float64(lr.Latency.Quantile(0.99)), float64(er.Latency.Quantile(0.99))), c)
		if er.OK == 0 {
			failures = append(failures, fmt.Errorf("etcd: no successful put with %d clients (member logs in %s)", c, filepath.Join(dir, "etcd")))
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("bench-log: %w", errors.Join(failures...))
	}
	return nil
}

// loadFunc drives one measured round of c clients against a running system.
type loadFunc func(ctx context.Context, c int) (Result, error)

// medianRound returns the round with the median rate (the lower middle one
// for an even count), whose latencies are reported with it.
func medianRound(rounds []Result) Result {
	sorted := append([]Result(nil), rounds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Rate() < sorted[j].Rate() })
	return sorted[(len(sorted)-1)/2]
}

func streamsText(n int) string {
	if n == 0 {
		return "one per client"
	}
	return fmt.Sprint(n)
}

// startLogSystem starts the log cluster and returns the function that runs
// one round of load against it and the function that stops it.
func startLogSystem(ctx context.Context, cfg logConfig, dir, runID string, log *slog.Logger) (loadFunc, func(), error) {
	log.Info("starting log cluster", "nodes", cfg.nodes, "dir", dir)
	lc, err := StartLogClusterWith(ctx, cfg.binary, cfg.nodes, dir, ClusterOptions{ReadyTimeout: cfg.readyTimeout, Logger: log, ExtraArgs: cfg.nodeArgs})
	if err != nil {
		return nil, nil, fmt.Errorf("bench-log: %w", err)
	}
	stop := func() {
		log.Info("stopping log cluster")
		if err := lc.Stop(); err != nil {
			log.Warn("stopping log cluster", "err", err)
		}
	}
	targets := lc.Addrs()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	leader, lerr := lc.Leader(lctx)
	cancel()
	switch {
	case lerr == nil:
		log.Info("log leader", "node", lc.Nodes[leader].ID, "api", lc.Nodes[leader].APIAddr)
		if cfg.target == TargetLeader {
			targets = []string{lc.Nodes[leader].APIAddr}
		}
	case cfg.target == TargetLeader:
		stop()
		return nil, nil, fmt.Errorf("bench-log: --target leader: %w", lerr)
	default:
		log.Warn("could not tell the log leader (not needed with --target all)", "err", lerr)
	}
	dial, err := lc.DialOption()
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("bench-log: %w", err)
	}
	return func(ctx context.Context, c int) (Result, error) {
		return runLogLoad(ctx, cfg, c, targets, dial, runID, log)
	}, stop, nil
}

// runLogLoad drives c appenders against targets (API addresses): client i
// talks to targets[i%len(targets)] over one of ceil(clients on that target /
// 16) connections (and, with --api stream, that connection's Submit
// stream), appending one event of cfg.eventSize random bytes with
// ExpectedKind ANY and a fresh random append id to its stream.
func runLogLoad(ctx context.Context, cfg logConfig, c int, targets []string, dial grpc.DialOption, runID string, log *slog.Logger) (Result, error) {
	perTarget := make([]int, len(targets))
	for i := range c {
		perTarget[i%len(targets)]++
	}
	conns := make([][]*grpc.ClientConn, len(targets))
	defer func() {
		for _, cs := range conns {
			for _, cc := range cs {
				cc.Close()
			}
		}
	}()
	for t, addr := range targets {
		for range (perTarget[t] + clientsPerConn - 1) / clientsPerConn {
			cc, err := grpc.NewClient(addr, dial)
			if err != nil {
				return Result{}, fmt.Errorf("log: dial %s: %w", addr, err)
			}
			conns[t] = append(conns[t], cc)
			if err := waitConnReady(ctx, cc, 10*time.Second); err != nil {
				return Result{}, fmt.Errorf("log: connect %s: %w", addr, err)
			}
		}
	}
	var subs [][]*events.SubmitClient
	if cfg.api == APIStream {
		subs = make([][]*events.SubmitClient, len(conns))
		defer func() {
			for _, ss := range subs {
				for _, sc := range ss {
					sc.Close()
				}
			}
		}()
		for t, cs := range conns {
			for _, cc := range cs {
				sc, err := events.NewSubmitClient(ctx, cc)
				if err != nil {
					return Result{}, fmt.Errorf("log: open submit stream to %s: %w", targets[t], err)
				}
				subs[t] = append(subs[t], sc)
			}
		}
	}
	streams := cfg.streams
	if streams == 0 {
		streams = c
	}
	log.Info("running log load", "clients", c, "targets", len(targets), "conns", countConns(conns), "streams", streams,
		"api", cfg.api, "warmup", cfg.warmup, "duration", cfg.duration)
	spec := loadSpec{system: "log", clients: c, warmup: cfg.warmup, duration: cfg.duration, timeout: cfg.requestTimeout, log: log}
	return runLoad(ctx, spec, func(i int) op {
		t := i % len(targets)
		k := (i / len(targets)) / clientsPerConn
		client := eventspb.NewLogClient(conns[t][k])
		rng := newRand()
		data := make([]byte, cfg.eventSize)
		id := make([]byte, 16)
		req := &eventspb.AppendRequest{
			Stream:       fmt.Sprintf("bench-%s-c%d-s%d", runID, c, i%streams),
			ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY,
			AppendId:     id,
			Events:       []*eventspb.Event{{Type: "bench", Data: data}},
		}
		return func(ctx context.Context) error {
			// A fresh id per append, time-ordered like events.NewAppendID
			// (what the project's own clients send; docs/api.md).
			binary.BigEndian.PutUint64(id[:8], uint64(time.Now().UnixNano()))
			_, _ = rng.Read(id[8:])
			_, _ = rng.Read(data)
			if subs != nil {
				// The stream's client holds on to the append until its
				// message is sent: a fresh copy of the data each time.
				a := events.AppendArgs(req.Stream, events.Any(), events.Event{Type: "bench", Data: bytes.Clone(data)})
				a.ID = events.AppendID(id)
				if _, err := subs[t][k].Append(ctx, a); err != nil {
					return fmt.Errorf("append via %s: %w", targets[t], err)
				}
				return nil
			}
			resp, err := client.Append(ctx, req)
			if err != nil {
				return fmt.Errorf("append via %s: %w", targets[t], err)
			}
			if resp.GetCode() != eventspb.Code_CODE_OK {
				return fmt.Errorf("append via %s: %w: %s: %s", targets[t], errResult, resp.GetCode(), resp.GetMessage())
			}
			return nil
		}
	})
}

func countConns(conns [][]*grpc.ClientConn) int {
	n := 0
	for _, cs := range conns {
		n += len(cs)
	}
	return n
}

// waitConnReady connects cc and waits until it is ready.
func waitConnReady(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connection %s after %v: %w", s, timeout, ctx.Err())
		}
	}
}

// startEtcdSystem starts the etcd cluster and returns the function that
// runs one round of load against it and the function that stops it.
func startEtcdSystem(ctx context.Context, cfg logConfig, etcdPath, dir, runID string, log *slog.Logger) (loadFunc, func(), error) {
	log.Info("starting etcd cluster", "members", cfg.nodes, "binary", etcdPath, "version", etcdVersion(ctx, etcdPath), "tls", cfg.etcdTLS, "dir", dir)
	ec, err := StartEtcdClusterWith(ctx, etcdPath, cfg.nodes, dir, EtcdOptions{
		ClusterOptions: ClusterOptions{ReadyTimeout: cfg.readyTimeout, Logger: log}, TLS: cfg.etcdTLS,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("bench-log: %w", err)
	}
	stop := func() {
		log.Info("stopping etcd cluster")
		if err := ec.Stop(); err != nil {
			log.Warn("stopping etcd cluster", "err", err)
		}
	}
	endpoints := ec.Endpoints()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	leader, lerr := ec.Leader(lctx)
	cancel()
	switch {
	case lerr == nil:
		log.Info("etcd leader", "member", ec.Members[leader].Name, "client", ec.Members[leader].ClientURL)
		if cfg.target == TargetLeader {
			endpoints = []string{ec.Members[leader].ClientURL}
		}
	case cfg.target == TargetLeader:
		stop()
		return nil, nil, fmt.Errorf("bench-log: --target leader: %w", lerr)
	default:
		log.Warn("could not tell the etcd leader (not needed with --target all)", "err", lerr)
	}
	return func(ctx context.Context, c int) (Result, error) {
		return runEtcdLoad(ctx, cfg, c, endpoints, ec.ClientTLS(), runID, log)
	}, stop, nil
}

// runEtcdLoad drives c clients putting cfg.eventSize random bytes to their
// own key (or one of --streams keys) through ceil(c/16) etcd clients, each
// balancing over endpoints.
func runEtcdLoad(ctx context.Context, cfg logConfig, c int, endpoints []string, tlsConf *tls.Config, runID string, log *slog.Logger) (Result, error) {
	n := (c + clientsPerConn - 1) / clientsPerConn
	clis := make([]*clientv3.Client, 0, n)
	defer func() {
		for _, cli := range clis {
			cli.Close()
		}
	}()
	for range n {
		cli, err := newEtcdClient(ctx, endpoints, tlsConf)
		if err != nil {
			return Result{}, err
		}
		clis = append(clis, cli)
	}
	keys := cfg.streams
	if keys == 0 {
		keys = c
	}
	log.Info("running etcd load", "clients", c, "endpoints", len(endpoints), "etcd_clients", n, "keys", keys,
		"warmup", cfg.warmup, "duration", cfg.duration)
	spec := loadSpec{system: "etcd", clients: c, warmup: cfg.warmup, duration: cfg.duration, timeout: cfg.requestTimeout, log: log}
	return runLoad(ctx, spec, func(i int) op {
		cli := clis[i/clientsPerConn]
		key := fmt.Sprintf("bench/%s/c%d/k%d", runID, c, i%keys)
		rng := newRand()
		data := make([]byte, cfg.eventSize)
		return func(ctx context.Context) error {
			_, _ = rng.Read(data)
			if _, err := cli.Put(ctx, key, string(data)); err != nil {
				return fmt.Errorf("put: %w", err)
			}
			return nil
		}
	})
}

func etcdVersion(ctx context.Context, path string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := execOutput(ctx, path, "--version")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "etcd Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func logSummary(log *slog.Logger, r Result) {
	h := r.Latency
	log.Info("result", "system", r.System, "clients", r.Clients, "ok", r.OK, "errors", r.Errors,
		"ops_per_s", int64(math.Round(r.Rate())), "mean_ms", ms(time.Duration(h.Mean())),
		"p50_ms", ms(h.Quantile(0.5)), "p90_ms", ms(h.Quantile(0.9)), "p99_ms", ms(h.Quantile(0.99)),
		"p999_ms", ms(h.Quantile(0.999)), "max_ms", ms(time.Duration(h.Max())))
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// ratio formats a/b with two decimals ("inf" when b is 0 and a is not).
func ratio(a, b float64) string {
	switch {
	case b == 0 && a == 0:
		return "nan"
	case b == 0:
		return "inf"
	}
	return fmt.Sprintf("%.2f", a/b)
}
