package bench

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one measured load phase.
type Result struct {
	System  string        // "log" or "etcd"
	Clients int           // concurrent clients
	Window  time.Duration // measured time
	OK      uint64        // successful operations completed in the window
	Errors  uint64        // failed operations completed in the window
	Latency *Histogram    // latency of the successful ones, in nanoseconds
}

// Rate returns successful operations per second.
func (r Result) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.OK) / r.Window.Seconds()
}

// op performs one operation (an append, a put) with ctx as its deadline.
type op func(ctx context.Context) error

// loadSpec describes one load phase.
type loadSpec struct {
	system   string
	clients  int
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration // per operation
	log      *slog.Logger
}

// errorSleep throttles a client after a failed operation, so that a broken
// cluster does not turn the load into a busy loop.
const errorSleep = 10 * time.Millisecond

// runLoad runs spec.clients goroutines, each calling its own op (from
// newOp(i)) back to back for warmup+duration. Operations that complete
// inside the measured window [start+warmup, start+warmup+duration) are
// counted, successes with their latency; operations in flight at the end are
// cancelled and not counted.
func runLoad(ctx context.Context, spec loadSpec, newOp func(i int) op) (Result, error) {
	ops := make([]op, spec.clients)
	for i := range ops {
		ops[i] = newOp(i)
	}
	start := time.Now()
	measStart := start.Add(spec.warmup)
	measEnd := measStart.Add(spec.duration)
	runCtx, cancel := context.WithDeadline(ctx, measEnd)
	defer cancel()

	type tally struct {
		hist    *Histogram
		ok, bad uint64
	}
	tallies := make([]tally, spec.clients)
	var completed atomic.Uint64 // successes since start, for progress
	var errMu sync.Mutex
	errCounts := map[string]uint64{} // in the measured window, by message
	errSeen := map[string]bool{}
	noteErr := func(err error, measured bool) {
		msg := err.Error()
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		errMu.Lock()
		first := !errSeen[msg]
		errSeen[msg] = true
		if measured {
			errCounts[msg]++
		}
		errMu.Unlock()
		if first {
			spec.log.Warn("operation failed", "system", spec.system, "clients", spec.clients, "warmup", !measured, "err", msg)
		}
	}

	var wg sync.WaitGroup
	for i, o := range ops {
		t := &tallies[i]
		t.hist = NewHistogram()
		wg.Go(func() {
			for runCtx.Err() == nil {
				octx, ocancel := context.WithTimeout(runCtx, spec.timeout)
				s := time.Now()
				err := o(octx)
				e := time.Now()
				ocancel()
				if ctx.Err() != nil {
					return // the caller gave up (Ctrl-C)
				}
				if !e.Before(measEnd) {
					// The run is over; an error now is most likely the
					// end-of-run cancellation (which gRPC may report
					// before runCtx's own timer fires).
					return
				}
				measured := !e.Before(measStart) && e.Before(measEnd)
				if err != nil {
					if measured {
						t.bad++
					}
					noteErr(err, measured)
					select {
					case <-runCtx.Done():
					case <-time.After(errorSleep):
					}
					continue
				}
				completed.Add(1)
				if measured {
					t.ok++
					t.hist.Record(e.Sub(s))
				}
			}
		})
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last, lastT := uint64(0), start
wait:
	for {
		select {
		case <-done:
			break wait
		case now := <-tick.C:
			n := completed.Load()
			phase := "measure"
			if now.Before(measStart) {
				phase = "warmup"
			}
			spec.log.Info("progress", "system", spec.system, "clients", spec.clients, "phase", phase,
				"elapsed", now.Sub(start).Round(time.Second), "ops_per_s", int(float64(n-last)/now.Sub(lastT).Seconds()))
			last, lastT = n, now
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%s load with %d clients: %w", spec.system, spec.clients, err)
	}

	res := Result{System: spec.system, Clients: spec.clients, Window: spec.duration, Latency: NewHistogram()}
	for _, t := range tallies {
		res.OK += t.ok
		res.Errors += t.bad
		res.Latency.Merge(t.hist)
	}
	if res.Errors > 0 {
		type kv struct {
			msg string
			n   uint64
		}
		var list []kv
		for m, n := range errCounts {
			list = append(list, kv{m, n})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].n > list[j].n })
		for i, e := range list {
			if i == 5 {
				spec.log.Warn("more error kinds omitted", "kinds", len(list)-5)
				break
			}
			spec.log.Warn("errors in the measured window", "system", spec.system, "clients", spec.clients, "count", e.n, "err", e.msg)
		}
	}
	return res, nil
}

// newRand returns a fast per-client random source seeded from crypto/rand.
func newRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (Go 1.24+)
	return rand.NewChaCha8(seed)
}

// errResult is an operation's business failure (status OK, outcome not OK).
var errResult = errors.New("operation rejected")
