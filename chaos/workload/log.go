// Package workload drives a cluster under chaos and records what it saw, for
// the checkers in chaos/check: direct log appenders and readers over the
// node gRPC API (events/eventspb), and session clients exchanging numbered
// durable frames through the client library (gateway/sessionclient).
package workload

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/linear"
	"github.com/switchboard-io/switchboard/events/eventspb"
)

// LogConfig configures the log workload.
type LogConfig struct {
	// Nodes are the nodes' API clients; each operation goes to one of them
	// at random, so forwarding to the leader is exercised too.
	Nodes []eventspb.LogClient
	// NodeNames name Nodes in the history (optional).
	NodeNames []string
	// Prefix makes the stream names of a run unique.
	Prefix string
	// Groups of clients share a stream: Groups × ClientsPerGroup clients.
	Groups, ClientsPerGroup int
	// Seed seeds every client's choices (nodes, reads or appends).
	Seed uint64
	// OpTimeout bounds one attempt (default 2 s).
	OpTimeout time.Duration
	// RetryFor is how long an append whose outcome is unknown is retried
	// with the same append id (the log applies an id once, so a retry
	// either finds the first attempt's result or applies it now) before it
	// is recorded as unknown (default 30 s).
	RetryFor time.Duration
	// MaxStreamLen: a client that saw its stream reach this many events moves
	// to a new stream, keeping each stream's history small enough for the
	// linearizability checker (default 200).
	MaxStreamLen uint64
	// Think is the pause between two operations of a client (default 2 ms).
	Think  time.Duration
	Logger *slog.Logger
}

func (c LogConfig) withDefaults() LogConfig {
	if c.OpTimeout <= 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 30 * time.Second
	}
	if c.MaxStreamLen == 0 {
		c.MaxStreamLen = 200
	}
	if c.Think <= 0 {
		c.Think = 2 * time.Millisecond
	}
	if c.Groups <= 0 {
		c.Groups = 2
	}
	if c.ClientsPerGroup <= 0 {
		c.ClientsPerGroup = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// LogStats counts the log workload's operations.
type LogStats struct {
	AppendsOK   int64 `json:"appends_ok"`
	Conflicts   int64 `json:"appends_conflict"`
	Unknown     int64 `json:"appends_unknown"`
	Retries     int64 `json:"append_retries"`
	Reads       int64 `json:"reads_ok"`
	ReadsFailed int64 `json:"reads_failed"`
}

// Log is the log workload: clients appending to shared streams with an
// expected version and reading them with consistent reads. Every completed
// operation goes into History; every acknowledged append into Acked.
type Log struct {
	cfg     LogConfig
	History *linear.History

	mu      sync.Mutex
	acked   []check.Ack
	streams map[string]bool

	appendsOK, conflicts, unknown, retries, reads, readsFailed atomic.Int64
	// OnOp, if set, is called after every recorded operation with its
	// outcome ("ok", "conflict", "unknown", "read", "read_failed") and
	// latency (for the report's timeline).
	OnOp func(outcome string, latency time.Duration)
}

// NewLog prepares the workload.
func NewLog(cfg LogConfig) *Log {
	return &Log{cfg: cfg.withDefaults(), History: linear.NewHistory(), streams: map[string]bool{}}
}

// Run runs every client until ctx ends, then waits for the operations in
// flight to finish: an append keeps retrying for up to RetryFor so that its
// outcome is known, unless abort ends first (an interrupted run).
func (w *Log) Run(ctx, abort context.Context) {
	var wg sync.WaitGroup
	for g := range w.cfg.Groups {
		for k := range w.cfg.ClientsPerGroup {
			client := g*w.cfg.ClientsPerGroup + k
			wg.Go(func() { w.client(ctx, abort, client, g) })
		}
	}
	wg.Wait()
}

func (w *Log) client(ctx, abort context.Context, client, group int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(client)))
	var known uint64
	gen := 0
	stream := w.stream(group, gen)
	think := time.NewTicker(w.cfg.Think)
	defer think.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-think.C:
		}
		if known >= w.cfg.MaxStreamLen {
			gen++
			stream, known = w.stream(group, gen), 0
		}
		if rng.IntN(4) == 0 {
			if n, ok := w.read(client, stream, rng); ok {
				known = n
			}
			continue
		}
		known = w.append(abort, client, stream, known, fmt.Sprintf("c%d-%d", client, i), rng)
	}
}

func (w *Log) stream(group, gen int) string {
	s := fmt.Sprintf("%s-g%d-%d", w.cfg.Prefix, group, gen)
	w.mu.Lock()
	w.streams[s] = true
	w.mu.Unlock()
	return s
}

// read records a consistent read of the whole stream; a failed read has no
// effect and is not recorded.
// nodeName names node i for the history ("" without NodeNames).
func (w *Log) nodeName(i int) string {
	if i < len(w.cfg.NodeNames) {
		return w.cfg.NodeNames[i]
	}
	return ""
}

func (w *Log) read(client int, stream string, rng *rand.Rand) (uint64, bool) {
	i := rng.IntN(len(w.cfg.Nodes))
	node := w.cfg.Nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	call := w.History.Now()
	start := time.Now()
	resp, err := node.ReadStream(ctx, &eventspb.ReadStreamRequest{Stream: stream, FromVersion: 1, Max: 10000, Consistent: true})
	ret := w.History.Now()
	if err != nil {
		w.readsFailed.Add(1)
		w.note("read_failed", time.Since(start))
		return 0, false
	}
	payloads := make([]string, len(resp.GetEvents()))
	for i, e := range resp.GetEvents() {
		payloads[i] = string(e.GetData())
	}
	w.History.Add(client, linear.Input{Stream: stream, Kind: linear.Read, Node: w.nodeName(i)}, linear.Output{OK: true, Payloads: payloads}, call, ret)
	w.reads.Add(1)
	w.note("read", time.Since(start))
	return uint64(len(payloads)), true
}

// append appends payload expecting version known, retrying with the same
// append id on other nodes until the outcome is known; it returns the
// version the client knows afterwards.
func (w *Log) append(abort context.Context, client int, stream string, known uint64, payload string, rng *rand.Rand) uint64 {
	id := make([]byte, 16)
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	req := &eventspb.AppendRequest{Stream: stream, ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_EXACT, ExpectedVersion: known,
		AppendId: id, Events: []*eventspb.Event{{Type: "chaos", Data: []byte(payload)}}}
	in := linear.Input{Stream: stream, Kind: linear.Append, Expected: known, Payload: payload}
	call := w.History.Now()
	start := time.Now()
	giveUp := start.Add(w.cfg.RetryFor)
	node := rng.IntN(len(w.cfg.Nodes))
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(abort, w.cfg.OpTimeout)
		resp, err := w.cfg.Nodes[node].Append(ctx, req)
		cancel()
		if err == nil {
			ret := w.History.Now()
			in.Node = w.nodeName(node)
			switch resp.GetCode() {
			case eventspb.Code_CODE_OK:
				w.History.Add(client, in, linear.Output{OK: true, Version: resp.GetVersion()}, call, ret)
				w.mu.Lock()
				w.acked = append(w.acked, check.Ack{Stream: stream, Version: resp.GetVersion(), Payload: payload})
				w.mu.Unlock()
				w.appendsOK.Add(1)
				w.note("ok", time.Since(start))
				return resp.GetVersion()
			case eventspb.Code_CODE_CONFLICT:
				w.History.Add(client, in, linear.Output{Version: resp.GetVersion()}, call, ret)
				w.conflicts.Add(1)
				w.note("conflict", time.Since(start))
				return resp.GetVersion()
			}
			err = fmt.Errorf("code %v: %s", resp.GetCode(), resp.GetMessage())
		}
		if time.Now().After(giveUp) || abort.Err() != nil {
			w.cfg.Logger.Warn("append outcome unknown", "stream", stream, "payload", payload, "attempts", attempt+1, "err", err)
			w.History.Add(client, in, linear.Output{Unknown: true}, call, 0)
			w.unknown.Add(1)
			w.note("unknown", time.Since(start))
			return known
		}
		w.retries.Add(1)
		node = (node + 1) % len(w.cfg.Nodes)
		backoff := time.NewTimer(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
		select {
		case <-abort.Done():
		case <-backoff.C:
		}
		backoff.Stop()
	}
}

func (w *Log) note(outcome string, d time.Duration) {
	if w.OnOp != nil {
		w.OnOp(outcome, d)
	}
}

// Acked returns the acknowledged appends.
func (w *Log) Acked() []check.Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]check.Ack(nil), w.acked...)
}

// Streams returns every stream the workload used.
func (w *Log) Streams() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.streams))
	for s := range w.streams {
		out = append(out, s)
	}
	return out
}

// Stats returns the operation counts.
func (w *Log) Stats() LogStats {
	return LogStats{AppendsOK: w.appendsOK.Load(), Conflicts: w.conflicts.Load(), Unknown: w.unknown.Load(),
		Retries: w.retries.Load(), Reads: w.reads.Load(), ReadsFailed: w.readsFailed.Load()}
}

// ReadAll reads every stream from one node with consistent reads (the node
// catches up with the leader first), retrying each until deadline.
func ReadAll(ctx context.Context, node eventspb.LogClient, streams []string) (map[string][]check.Event, error) {
	out := map[string][]check.Event{}
	for _, s := range streams {
		var evs []check.Event
		for from := uint64(1); ; {
			var resp *eventspb.ReadStreamResponse
			err := retry(ctx, func(ctx context.Context) (err error) {
				resp, err = node.ReadStream(ctx, &eventspb.ReadStreamRequest{Stream: s, FromVersion: from, Max: 10000, Consistent: true})
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", s, err)
			}
			for _, e := range resp.GetEvents() {
				evs = append(evs, check.Event{Version: e.GetVersion(), Payload: string(e.GetData())})
			}
			if len(resp.GetEvents()) < 10000 {
				break
			}
			from += uint64(len(resp.GetEvents()))
		}
		out[s] = evs
	}
	return out, nil
}

// retry calls f with a 2 s deadline per attempt until it succeeds or ctx
// ends.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
