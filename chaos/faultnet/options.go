package faultnet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options of New.
const (
	// DefaultRTO is the retransmission timeout added to a lost segment:
	// Linux's minimum RTO.
	DefaultRTO = 200 * time.Millisecond
	// DefaultLinger bounds how long a closed connection keeps delivering the
	// data Write had accepted before it is reset.
	DefaultLinger = 5 * time.Second
	// DefaultBufferSize is the size of each connection's send and receive
	// buffers, in bytes.
	DefaultBufferSize = 64 << 10
)

// Option configures a Network.
type Option func(*options)

type options struct {
	seed       int64
	seeded     bool
	logger     *slog.Logger
	rto        time.Duration
	linger     time.Duration
	bufferSize int
	stallDials bool
	problems   []error // filled by options given invalid values
}

// WithSeed seeds the random source of jitter and loss, so that a run can be
// repeated (as far as goroutine scheduling allows). Without it the seed is
// random; New logs the seed it uses either way.
func WithSeed(seed int64) Option {
	return func(o *options) { o.seed, o.seeded = seed, true }
}

// WithLogger sets the logger; faultnet adds component=faultnet. Default:
// slog.Default(). A nil logger discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		o.logger = l
	}
}

// WithRTO sets the delay a lost segment adds (see SetLoss). It must be
// positive. Default DefaultRTO.
func WithRTO(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.problems = append(o.problems, fmt.Errorf("WithRTO: must be positive, got %v", d))
			return
		}
		o.rto = d
	}
}

// WithLinger sets how long a closed connection keeps delivering the data
// Write had accepted before it is reset. It must not be negative; zero drops
// queued data at Close. Default DefaultLinger.
func WithLinger(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.problems = append(o.problems, fmt.Errorf("WithLinger: must not be negative, got %v", d))
			return
		}
		o.linger = d
	}
}

// WithBufferSize sets the size in bytes of each connection's send buffer
// (data Write accepted but faultnet has not yet handed to the socket) and
// receive buffer (data read from the socket but not yet by Read). A full
// buffer pushes back on the writer, as TCP's window does. It must be
// positive. Default DefaultBufferSize.
func WithBufferSize(n int) Option {
	return func(o *options) {
		if n <= 0 {
			o.problems = append(o.problems, fmt.Errorf("WithBufferSize: must be positive, got %d", n))
			return
		}
		o.bufferSize = n
	}
}

// WithStallingDials makes a dial across a blocked link wait until the link
// heals or the dial's context ends, instead of failing at once.
func WithStallingDials() Option {
	return func(o *options) { o.stallDials = true }
}

func buildOptions(opts []Option) (options, error) {
	o := options{
		rto:        DefaultRTO,
		linger:     DefaultLinger,
		bufferSize: DefaultBufferSize,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := errors.Join(o.problems...); err != nil {
		return o, fmt.Errorf("faultnet: invalid options: %w", err)
	}
	return o, nil
}
