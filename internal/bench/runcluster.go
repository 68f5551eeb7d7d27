package bench

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/events/eventspb"
)

// The test counter kind's stream prefix and its Added event, encoded as
// actors/entity.EncodeEvent encodes &counter.Added{Delta: 1}: the message's
// full protobuf name and field 1 (delta) as a varint. The counter package
// is not imported so that the product binary, which holds this driver,
// does not link the test kind; a test checks the encoding against
// entity.EncodeEvent, and every activation checks that the grain folded
// exactly the events written.
const (
	counterKind      = "test.counter"
	counterAddedType = "switchboard.counter.v1.Added"
)

var counterAddedOne = protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)

// clusterConfig holds the flags of `switchboard bench cluster`.
type clusterConfig struct {
	binary       string
	readyRounds  int
	replayEvents int
	sizes        []int
	samples      []int
	appenders    int
	keep         string
	readyTimeout time.Duration
	nodeArgs     []string
}

func parseClusterFlags(args []string) (clusterConfig, error) {
	cfg := clusterConfig{}
	fs := flag.NewFlagSet("bench cluster", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.binary, "binary", "", "switchboard binary built with -tags testkinds (default: this executable)")
	fs.IntVar(&cfg.readyRounds, "ready-rounds", 3, "fresh single nodes started to measure serve→ready (the median is reported)")
	fs.IntVar(&cfg.replayEvents, "replay-events", 1_000_000, "events in the log of the replay measurements (the activation streams count towards it)")
	sizes := fs.String("sizes", "0,1000,100000", "events in the stream of each cold grain size measured")
	samples := fs.String("samples", "20,20,5", "cold grains activated per size (one number for all sizes, or one per size)")
	fs.IntVar(&cfg.appenders, "appenders", 4, "concurrent gRPC appenders preloading the log")
	fs.StringVar(&cfg.keep, "keep", "", "keep data and node logs in this directory (default: a temporary directory, removed after a successful run)")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 5*time.Minute, "bound on each wait for /readyz")
	nodeArgs := fs.String("node-args", "", "extra arguments for every node, space-separated (e.g. \"--raft-heartbeat-timeout 200ms\")")
	if err := parseDriverFlags(fs, "cluster", args); err != nil {
		return cfg, err
	}
	var errs []error
	var err error
	if cfg.sizes, err = parseInts(*sizes); err != nil || len(cfg.sizes) == 0 {
		errs = append(errs, fmt.Errorf("--sizes %q: want comma-separated event counts (e.g. 0,1000,100000)", *sizes))
	}
	if cfg.samples, err = parseInts(*samples); err != nil || len(cfg.samples) == 0 || slices.Min(cfg.samples) < 1 {
		errs = append(errs, fmt.Errorf("--samples %q: want one positive count, or one per size", *samples))
	} else if len(cfg.samples) == 1 {
		cfg.samples = slices.Repeat(cfg.samples, len(cfg.sizes))
	} else if len(cfg.samples) != len(cfg.sizes) {
		errs = append(errs, fmt.Errorf("--samples %q: %d counts for %d sizes", *samples, len(cfg.samples), len(cfg.sizes)))
	}
	if cfg.readyRounds < 1 {
		errs = append(errs, fmt.Errorf("--ready-rounds %d: want at least 1", cfg.readyRounds))
	}
	if cfg.replayEvents < 1 {
		errs = append(errs, fmt.Errorf("--replay-events %d: want at least 1", cfg.replayEvents))
	}
	if cfg.appenders < 1 {
		errs = append(errs, fmt.Errorf("--appenders %d: want at least 1", cfg.appenders))
	}
	if cfg.readyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ready-timeout %v: want a positive duration", cfg.readyTimeout))
	}
	cfg.nodeArgs = strings.Fields(*nodeArgs)
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("bench cluster: %w", err)
	}
	return cfg, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// RunCluster runs the cluster benchmark (`make bench-cluster`). Result lines
// go to stdout, progress to stderr; every node is a `switchboard serve`
// process of --binary (built with -tags testkinds, for the test counter
// kind) on loopback with its own data directory and certificates:
//
//   - ready: --ready-rounds fresh single nodes, each timed from the start of
//     the process to the first 200 from /readyz (polled every 5 ms); the
//     median is reported, with leader_ms, when Raft logged that the node
//     became leader (the node's own log time stamp, same clock).
//   - one single node with snapshots off (raft.snapshot_threshold above any
//     log this writes) gets --replay-events counter.Added events through the
//     gRPC Log API: the streams "test.counter/cold-<size>-<i>" of the cold
//     grains with exactly size events each, then filler streams of another
//     kind; 1,000 events per append, --appenders concurrent appends.
//   - activation: the first request (GET /test/counter/{id}, a query that
//     writes nothing after the activation's claim) to each cold grain, one
//     after another; the reply must show exactly size events folded. p50 and
//     p99 by nearest rank (with 20 samples the p99 is the slowest one).
//   - restart: the node is stopped with SIGTERM (its event store is flushed)
//     and started again: serve → ready with the populated log.
//   - replay: stopped again, its event store directory (log/events) is
//     deleted, so Raft re-applies every entry of its log at start; serve →
//     ready, and the node's switchboard_fsm_events_appended_total must show
//     every event re-applied.
//
// It prints BENCH cluster_ready, cluster_activate (per size),
// cluster_restart and cluster_replay lines, then the summary
//
//	BENCH cluster ready_ms=.. replay_ready_ms=.. replay_1m_events_s=.. activate_p50_ms_0=.. activate_p99_ms_0=.. ...
//
// whose keys are labelled with the sizes (1k, 100k; 1m for --replay-events).
func RunCluster(ctx context.Context, args []string, stdout io.Writer) error {
	return runCluster(ctx, args, stdout, os.Stderr)
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseClusterFlags(args)
	ctx, stopSignals, log, err := startDriver(ctx, err, stderr)
	if err != nil {
		return err
	}
	defer stopSignals()
	if cfg.binary, err = defaultBinary("bench cluster", cfg.binary); err != nil {
		return err
	}
	if err := checkBinary("bench cluster", cfg.binary); err != nil {
		return err
	}
	dir, cleanup, err := runDir(cfg.keep, "bench cluster", []string{"main"}, log)
	if err != nil {
		return err
	}
	defer func() { cleanup(err) }()
	log.Info("bench cluster", "binary", cfg.binary, "dir", dir, "cpus", runtime.NumCPU(), "ready_rounds", cfg.readyRounds,
		"replay_events", cfg.replayEvents, "sizes", fmt.Sprint(cfg.sizes), "samples", fmt.Sprint(cfg.samples), "node_args", strings.Join(cfg.nodeArgs, " "))

	summary := []string{"BENCH cluster"}

	// 1. A fresh single node: serve → /readyz.
	var readies []startTiming
	for r := range cfg.readyRounds {
		st, err := measureFreshStart(ctx, cfg, filepath.Join(dir, fmt.Sprintf("fresh%d", r+1)), log)
		if err != nil {
			return err
		}
		readies = append(readies, st)
		log.Info("fresh node ready", "round", r+1, "ready", st.ready, "leader_after", st.leader)
	}
	med := medianTiming(readies)
	var all []string
	for _, r := range readies {
		all = append(all, ms(r.ready))
	}
	fmt.Fprintf(stdout, "BENCH cluster_ready ready_ms=%s leader_ms=%s rounds=%d all_ms=%s\n", ms(med.ready), msOrNaN(med.leader), len(readies), strings.Join(all, ","))
	summary = append(summary, "ready_ms="+ms(med.ready))

	// 2. One node whose log is preloaded with the cold grains' streams and
	// filler up to --replay-events. Snapshots are off (threshold above any
	// log this bench writes), so that every event stays in the Raft log.
	node, err := prepareSingleNode(filepath.Join(dir, "main"), cfg.binary,
		append([]string{"--raft-snapshot-threshold", "1000000000000", "--cluster-grain-idle-timeout", "1h"}, cfg.nodeArgs...), log)
	if err != nil {
		return err
	}
	defer node.Stop()
	if _, err := startAndTime(ctx, node, cfg.readyTimeout); err != nil {
		return err
	}
	loads, total := benchStreams(cfg)
	t0 := time.Now()
	if err := preload(ctx, node, loads, cfg.appenders); err != nil {
		return err
	}
	took := time.Since(t0)
	log.Info("log preloaded", "events", total, "streams", len(loads), "took", took.Round(time.Millisecond),
		"events_per_s", int64(float64(total)/took.Seconds()))

	// 3. Cold grains: the first request to each, sequentially.
	var actParts []string
	for i, size := range cfg.sizes {
		lat, err := activateAll(ctx, node, size, cfg.samples[i])
		if err != nil {
			return err
		}
		slices.Sort(lat)
		p50, p99 := nearestRank(lat, 0.50), nearestRank(lat, 0.99)
		fmt.Fprintf(stdout, "BENCH cluster_activate events=%d samples=%d p50_ms=%s p99_ms=%s min_ms=%s max_ms=%s\n",
			size, len(lat), ms(p50), ms(p99), ms(lat[0]), ms(lat[len(lat)-1]))
		l := countLabel(size)
		actParts = append(actParts, "activate_p50_ms_"+l+"="+ms(p50), "activate_p99_ms_"+l+"="+ms(p99))
	}

	// 4. Clean restart with the populated log: the store is durable, Raft
	// re-applies nothing.
	if err := stopClean(node); err != nil {
		return err
	}
	rs, err := startAndTime(ctx, node, cfg.readyTimeout)
	if err != nil {
		return err
	}
	applied, err := eventsApplied(ctx, node)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "BENCH cluster_restart ready_ms=%s leader_ms=%s log_events=%d reapplied_events=%d\n", ms(rs.ready), msOrNaN(rs.leader), total, applied)
	summary = append(summary, "replay_ready_ms="+ms(rs.ready))

	// 5. Full replay: the event store is deleted while the node is stopped,
	// so Raft re-applies every entry of its log (total events) at start.
	if err := stopClean(node); err != nil {
		return err
	}
	nd := node.Nodes[0]
	if err := checkNoSnapshot(filepath.Join(nd.DataDir, "log", "snapshots")); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(nd.DataDir, "log", "events")); err != nil {
		return fmt.Errorf("bench cluster: remove event store: %w", err)
	}
	full, err := startAndTime(ctx, node, cfg.readyTimeout)
	if err != nil {
		return err
	}
	applied, err = eventsApplied(ctx, node)
	if err != nil {
		return err
	}
	if applied < int64(total) {
		return fmt.Errorf("bench cluster: replay applied %d events, want %d (is a snapshot hiding part of the log?)", applied, total)
	}
	apply := math.NaN()
	if full.leader > 0 {
		apply = (full.ready - full.leader).Seconds()
	}
	fmt.Fprintf(stdout, "BENCH cluster_replay events=%d ready_s=%.2f leader_s=%s apply_s=%s events_per_s=%d\n",
		applied, full.ready.Seconds(), secOrNaN(full.leader), fmtSec(apply), int64(float64(applied)/full.ready.Seconds()))
	summary = append(summary, fmt.Sprintf("replay_%s_events_s=%.2f", countLabel(total), full.ready.Seconds()))
	if err := stopClean(node); err != nil {
		return err
	}

	summary = append(summary, actParts...)
	fmt.Fprintln(stdout, strings.Join(summary, " "))
	return nil
}

// prepareSingleNode sets up (does not start) a one-node cluster in dir: its
// certificates, addresses and command line. Started, it bootstraps a
// cluster of its own.
func prepareSingleNode(dir, binary string, extra []string, log *slog.Logger) (*LogCluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench cluster: %w", err)
	}
	c := &LogCluster{Dir: dir, opts: ClusterOptions{ExtraArgs: extra, Logger: log}.withDefaults(),
		http: &http.Client{Timeout: 2 * time.Second}, tlsDir: filepath.Join(dir, "tls")}
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: c.tlsDir}); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("bench cluster: %w", err)
	}
	nd, err := c.newNode(0)
	if err != nil {
		return nil, err
	}
	c.Nodes = []*LogNode{nd}
	c.setArgs(nd, binary, 1)
	return c, nil
}

// startTiming is how long after the process start the node became Raft
// leader (from its own log; 0 if not found) and answered /readyz 200.
type startTiming struct {
	leader, ready time.Duration
}

// startAndTime starts the (stopped) single node of c and polls /readyz
// every 5 ms until it answers 200.
func startAndTime(ctx context.Context, c *LogCluster, timeout time.Duration) (startTiming, error) {
	nd := c.Nodes[0]
	logStart := logSize(nd.Proc.LogPath)
	client := &http.Client{Timeout: time.Second}
	url := "http://" + nd.HTTPAddr + "/readyz"
	start := time.Now()
	if err := nd.Proc.Start(ctx); err != nil {
		return startTiming{}, fmt.Errorf("bench cluster: %w", err)
	}
	deadline := time.Now().Add(timeout)
	var why string
	for {
		status, body, err := httpGet(ctx, client, url)
		if err == nil && status == http.StatusOK {
			break
		}
		if err != nil {
			why = err.Error()
		} else {
			why = fmt.Sprintf("%d %s", status, body)
		}
		if !nd.Proc.Running() {
			return startTiming{}, fmt.Errorf("bench cluster: %s exited before it was ready (%v); end of %s:\n%s",
				nd.ID, exitText(nd.Proc.ExitErr()), nd.Proc.LogPath, nd.Proc.LogTail(2048))
		}
		if time.Now().After(deadline) {
			return startTiming{}, fmt.Errorf("bench cluster: %s not ready within %v: %s", nd.ID, timeout, why)
		}
		select {
		case <-ctx.Done():
			return startTiming{}, fmt.Errorf("bench cluster: waiting for readiness: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	st := startTiming{ready: time.Since(start)}
	if at, ok := leaderSince(nd.Proc.LogPath, logStart); ok {
		st.leader = max(at.Sub(start), 0)
	}
	return st, nil
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// leaderSince returns the time stamp of the first "entering leader state"
// line that Raft logged after offset in the node's log (text format).
func leaderSince(path string, offset int64) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return time.Time{}, false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="entering leader state"`) || !strings.HasPrefix(line, "time=") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func measureFreshStart(ctx context.Context, cfg clusterConfig, dir string, log *slog.Logger) (startTiming, error) {
	c, err := prepareSingleNode(dir, cfg.binary, cfg.nodeArgs, log)
	if err != nil {
		return startTiming{}, err
	}
	defer c.Stop()
	st, err := startAndTime(ctx, c, cfg.readyTimeout)
	if err != nil {
		return st, err
	}
	return st, stopClean(c)
}

// stopClean stops c's node with SIGTERM and requires a clean exit.
func stopClean(c *LogCluster) error {
	nd := c.Nodes[0]
	if err := nd.Proc.Stop(c.opts.StopTimeout); err != nil {
		return fmt.Errorf("bench cluster: %w", err)
	}
	if err := nd.Proc.ExitErr(); err != nil {
		return fmt.Errorf("bench cluster: %s exited with %v after SIGTERM; end of %s:\n%s", nd.ID, err, nd.Proc.LogPath, nd.Proc.LogTail(2048))
	}
	return nil
}

func medianTiming(ts []startTiming) startTiming {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b startTiming) int { return int(a.ready - b.ready) })
	return s[(len(s)-1)/2]
}

// streamLoad is a stream and how many counter.Added events to write to it.
type streamLoad struct {
	stream string
	events int
}

// grainID names the i-th cold grain of a size.
func grainID(size, i int) string { return fmt.Sprintf("cold-%d-%d", size, i) }

// benchStreams lists the cold grains' streams and, if they hold fewer than
// --replay-events, filler streams (of another kind, never activated) up to
// it; it returns them and the total number of events.
func benchStreams(cfg clusterConfig) ([]streamLoad, int) {
	var out []streamLoad
	total := 0
	for i, size := range cfg.sizes {
		if size == 0 {
			continue
		}
		for j := range cfg.samples[i] {
			out = append(out, streamLoad{counterKind + "/" + grainID(size, j), size})
			total += size
		}
	}
	const fillerStream = 100_000
	for k := 0; total < cfg.replayEvents; k++ {
		n := min(fillerStream, cfg.replayEvents-total)
		out = append(out, streamLoad{fmt.Sprintf("bench.filler/%d", k), n})
		total += n
	}
	return out, total
}

// maxBatch is the events per append (the default limits.max_events_per_append).
const maxBatch = 1000

// preload appends the streams' events through the node's gRPC Log API with
// `appenders` concurrent callers, maxBatch events per append, each append
// with its own append id and no expectation on the version.
func preload(ctx context.Context, c *LogCluster, loads []streamLoad, appenders int) error {
	dial, err := c.DialOption()
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(c.Nodes[0].APIAddr, dial)
	if err != nil {
		return fmt.Errorf("bench cluster: dial %s: %w", c.Nodes[0].APIAddr, err)
	}
	defer cc.Close()
	lc := eventspb.NewLogClient(cc)
	type chunk struct {
		stream string
		n      int
	}
	work := make(chan chunk)
	go func() {
		defer close(work)
		for _, l := range loads {
			for left := l.events; left > 0; left -= maxBatch {
				select {
				case work <- chunk{l.stream, min(left, maxBatch)}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	batch := make([]*eventspb.Event, maxBatch)
	for i := range batch {
		batch[i] = &eventspb.Event{Type: counterAddedType, Data: counterAddedOne}
	}
	var (
		mu       sync.Mutex
		firstErr error
	)
	var wg sync.WaitGroup
	for range appenders {
		wg.Go(func() {
			for ch := range work {
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					continue
				}
				if err := appendChunk(ctx, lc, ch.stream, batch[:ch.n]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func appendChunk(ctx context.Context, lc eventspb.LogClient, stream string, evs []*eventspb.Event) error {
	id := make([]byte, 16)
	_, _ = crand.Read(id)
	req := &eventspb.AppendRequest{Stream: stream, ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY, AppendId: id, Events: evs}
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := lc.Append(actx, req)
		cancel()
		switch {
		case err != nil:
			last = err // retried with the same append id: applied at most once
		case resp.GetCode() != eventspb.Code_CODE_OK:
			return fmt.Errorf("bench cluster: append %d events to %s: %v %s", len(evs), stream, resp.GetCode(), resp.GetMessage())
		default:
			return nil
		}
	}
	return fmt.Errorf("bench cluster: append %d events to %s: %w", len(evs), stream, last)
}

// activateAll sends the first request (a query) to each cold grain of a
// size, one after the other, and returns the latencies. Each reply must
// show the grain folded exactly size events.
func activateAll(ctx context.Context, c *LogCluster, size, samples int) ([]time.Duration, error) {
	client := &http.Client{Timeout: 60 * time.Second}
	var lat []time.Duration
	for i := range samples {
		url := fmt.Sprintf("http://%s/test/counter/%s", c.Nodes[0].HTTPAddr, grainID(size, i))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("bench cluster: activate %s: %w", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, fmt.Errorf("bench cluster: %s: 404: the node binary has no test counter kind; build it with -tags testkinds (make bench-cluster does)", url)
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("bench cluster: activate %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		var v struct {
			Value   int64  `json:"value"`
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("bench cluster: activate %s: %w", url, err)
		}
		if v.Value != int64(size) || v.Version != uint64(size) {
			return nil, fmt.Errorf("bench cluster: grain %s folded value %d at version %d, want %d events", grainID(size, i), v.Value, v.Version, size)
		}
		lat = append(lat, d)
	}
	return lat, nil
}

// eventsApplied reads switchboard_fsm_events_appended_total (events this
// node's event store applied since the process started) from /metrics.
func eventsApplied(ctx context.Context, c *LogCluster) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Nodes[0].HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench cluster: metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "switchboard_fsm_events_appended_total" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("bench cluster: metrics: %q: %w", sc.Text(), err)
			}
			return int64(v), nil
		}
	}
	return 0, errors.New("bench cluster: metrics: no switchboard_fsm_events_appended_total")
}

// checkNoSnapshot fails if a Raft snapshot exists under dir: the full
// replay would then start from it and re-apply only the entries after it.
func checkNoSnapshot(dir string) error {
	var found string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && d.Name() == "meta.json" {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench cluster: look for snapshots: %w", err)
	}
	if found != "" {
		return fmt.Errorf("bench cluster: a Raft snapshot exists (%s): the replay would not re-apply the whole log", found)
	}
	return nil
}

// nearestRank returns the q-quantile of sorted by the nearest-rank method
// (with 20 samples the p99 is the largest).
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// countLabel writes 0, 500, 1k, 100k, 1m, 2.5m ... for the BENCH keys.
func countLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64), ".0") + "m"
	case n >= 1000 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.Itoa(n)
}

func msOrNaN(d time.Duration) string {
	if d <= 0 {
		return "nan"
	}
	return ms(d)
}

func secOrNaN(d time.Duration) string {
	if d <= 0 {
		return "nan"
	}
	return fmtSec(d.Seconds())
}

func fmtSec(s float64) string {
	if math.IsNaN(s) {
		return "nan"
	}
	return fmt.Sprintf("%.2f", s)
}
