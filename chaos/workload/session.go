package workload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// SessionsConfig configures the session workload.
type SessionsConfig struct {
	// Client is how participants reach the cluster (every node's session
	// endpoint, the CA). Each participant starts at a different node.
	Client sessionclient.Config
	Token  string // host token
	Pairs  int    // sessions, each with a host and a guest (default 2)
	// Interval between two durable frames of each participant (default 20 ms).
	Interval time.Duration
	Logger   *slog.Logger
	// OnFrame, if set, is called for every durable frame delivered (for the
	// report's timeline).
	OnFrame func()
}

// Sessions is the session workload: in each session the host and the guest
// send each other numbered durable frames; the receivers record the numbers
// in the order they arrive.
type Sessions struct {
	cfg   SessionsConfig
	pairs []*sessionPair
	wg    sync.WaitGroup // receive loops
}

type sessionPair struct {
	host, guest *sessionclient.Session
	dirs        [2]*frameDirection // host→guest, guest→host
}

type frameDirection struct {
	name     string
	from, to *sessionclient.Session
	sent     atomic.Uint64

	mu       sync.Mutex
	received []uint64
	err      error
}

// OpenSessions opens the sessions and starts receiving.
func OpenSessions(ctx context.Context, cfg SessionsConfig) (*Sessions, error) {
	if cfg.Pairs <= 0 {
		cfg.Pairs = 2
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Sessions{cfg: cfg}
	rotated := func(first int) sessionclient.Config {
		c := cfg.Client
		if c.Logger == nil {
			// Resumes (info) and reconnect attempts (debug) in the run's log.
			c.Logger = cfg.Logger.With("client", first)
		}
		n := len(cfg.Client.Nodes)
		c.Nodes = make([]string, n)
		for i := range n {
			c.Nodes[i] = cfg.Client.Nodes[(first+i)%n]
		}
		return c
	}
	for i := range cfg.Pairs {
		host, err := sessionclient.Open(ctx, rotated(2*i), sessionclient.OpenParams{Token: cfg.Token, Name: fmt.Sprintf("host%d", i+1)})
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("workload: open session %d: %w", i+1, err)
		}
		guest, err := sessionclient.Join(ctx, rotated(2*i+1), sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: fmt.Sprintf("guest%d", i+1)})
		if err != nil {
			host.Close()
			w.Close()
			return nil, fmt.Errorf("workload: join session %d: %w", i+1, err)
		}
		p := &sessionPair{host: host, guest: guest}
		p.dirs[0] = &frameDirection{name: fmt.Sprintf("session %s host→guest", host.Code()), from: host, to: guest}
		p.dirs[1] = &frameDirection{name: fmt.Sprintf("session %s guest→host", host.Code()), from: guest, to: host}
		w.pairs = append(w.pairs, p)
		for _, d := range p.dirs {
			w.wg.Go(func() { d.recvLoop(cfg.Logger, cfg.OnFrame) })
		}
	}
	return w, nil
}

// Run sends frames in every direction until ctx ends.
func (w *Sessions) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range w.pairs {
		for _, d := range p.dirs {
			wg.Go(func() { d.sendLoop(ctx, w.cfg.Interval, w.cfg.Logger) })
		}
	}
	wg.Wait()
}

func (d *frameDirection) sendLoop(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	payload := make([]byte, 8)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := d.sent.Load() + 1
		binary.BigEndian.PutUint64(payload, n)
		if err := d.from.Send(ctx, payload); err != nil {
			if ctx.Err() == nil {
				log.Error("send failed", "direction", d.name, "frame", n, "err", err)
				d.fail(fmt.Errorf("%s: send %d: %w", d.name, n, err))
			}
			return
		}
		d.sent.Store(n)
	}
}

func (d *frameDirection) recvLoop(log *slog.Logger, onFrame func()) {
	for {
		m, err := d.to.Recv(context.Background())
		if err != nil {
			if !errors.Is(err, sessionclient.ErrClosed) {
				log.Error("receive failed", "direction", d.name, "err", err)
				d.fail(fmt.Errorf("%s: recv: %w", d.name, err))
			}
			return
		}
		if m.Kind != sessionclient.Durable || len(m.Payload) != 8 {
			continue
		}
		d.mu.Lock()
		d.received = append(d.received, binary.BigEndian.Uint64(m.Payload))
		d.mu.Unlock()
		if onFrame != nil {
			onFrame()
		}
	}
}

func (d *frameDirection) fail(err error) {
	d.mu.Lock()
	d.err = errors.Join(d.err, err)
	d.mu.Unlock()
}

func (d *frameDirection) receivedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.received)
}

// Finish waits (after Run returned) until the server confirmed every frame
// sent and each receiver got as many frames as were sent to it, or ctx ends:
// what is then missing is for the checker to report.
func (w *Sessions) Finish(ctx context.Context) error {
	var errs []error
	for _, p := range w.pairs {
		for _, s := range []*sessionclient.Session{p.host, p.guest} {
			if err := s.Flush(ctx); err != nil {
				errs = append(errs, fmt.Errorf("flush %s: %w", s.Code(), err))
			}
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for _, p := range w.pairs {
			for _, d := range p.dirs {
				done = done && uint64(d.receivedCount()) >= d.sent.Load()
			}
		}
		if done {
			return errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("waiting for frames to arrive: %w", ctx.Err()))...)
		case <-tick.C:
		}
	}
}

// Directions returns what each direction sent and received, for
// check.Frames.
func (w *Sessions) Directions() []check.Direction {
	var out []check.Direction
	for _, p := range w.pairs {
		for _, d := range p.dirs {
			d.mu.Lock()
			out = append(out, check.Direction{Name: d.name, Sent: d.sent.Load(), Received: append([]uint64(nil), d.received...)})
			d.mu.Unlock()
		}
	}
	return out
}

// Errors returns the send and receive errors the participants saw (the
// library hides node failures, so any is worth reporting).
func (w *Sessions) Errors() error {
	var errs []error
	for _, p := range w.pairs {
		for _, d := range p.dirs {
			d.mu.Lock()
			errs = append(errs, d.err)
			d.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Nodes returns the ids of the nodes the participants are connected to.
func (w *Sessions) Nodes() []string {
	var out []string
	for _, p := range w.pairs {
		out = append(out, p.host.Node(), p.guest.Node())
	}
	return out
}

// SessionStats sums what the client library did to hide failures.
type SessionStats struct {
	FramesSent     uint64 `json:"frames_sent"`
	FramesReceived uint64 `json:"frames_received"`
	Reconnects     uint64 `json:"reconnects"`
	Resumes        uint64 `json:"resumes"`
	Resends        uint64 `json:"resends"`
	Duplicates     uint64 `json:"duplicates_dropped"`
}

// Stats returns the totals over every participant.
func (w *Sessions) Stats() SessionStats {
	var s SessionStats
	for _, p := range w.pairs {
		for _, d := range p.dirs {
			s.FramesSent += d.sent.Load()
			s.FramesReceived += uint64(d.receivedCount())
		}
		for _, c := range []*sessionclient.Session{p.host, p.guest} {
			st := c.Stats()
			s.Reconnects += st.Reconnects
			s.Resumes += st.Resumes
			s.Resends += st.Resends
			s.Duplicates += st.DuplicatesDropped
		}
	}
	return s
}

// ClientStats returns each participant's library statistics.
func (w *Sessions) ClientStats() []sessionclient.Stats {
	var out []sessionclient.Stats
	for _, p := range w.pairs {
		out = append(out, p.host.Stats(), p.guest.Stats())
	}
	return out
}

// Close closes every participant and waits for the receive loops.
func (w *Sessions) Close() {
	for _, p := range w.pairs {
		p.host.Close()
		p.guest.Close()
	}
	w.wg.Wait()
}
