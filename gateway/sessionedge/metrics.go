package sessionedge

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections      prometheus.Gauge
	handshakes       *prometheus.CounterVec
	handshakeSeconds *prometheus.HistogramVec
	refused          *prometheus.CounterVec
	frames           *prometheus.CounterVec
	// The four frames counters, resolved once (they are on the hot path).
	inDurable, inStream, outDurable, outStream prometheus.Counter
	errors                                     *prometheus.CounterVec
	resumes                                    prometheus.Counter
	catchUps                                   prometheus.Counter
	duplicates                                 prometheus.Counter
	pushDrops                                  prometheus.Counter
	streamDrops                                prometheus.Counter
	redone                                     *prometheus.CounterVec
	isolationCloses                            prometheus.Counter
	resyncs                                    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_session_connections",
			Help: "Client connections of this node's session edge past their handshake."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_handshakes_total",
			Help: "Session handshakes by type (open, join, resume) and result (ok or the error code)."}, []string{"type", "result"}),
		handshakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_session_handshake_seconds",
			Help: "Time from upgrade to welcome.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_refused_total",
			Help: "Upgrades refused before the handshake, by reason."}, []string{"reason"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_frames_total",
			Help: "Frames by direction (in: from clients, out: to clients) and class (durable, stream)."}, []string{"dir", "class"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_errors_total",
			Help: "Protocol errors sent to clients after the handshake, by code."}, []string{"code"}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_resumes_total",
			Help: "Successful resumes on this node."}),
		catchUps: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_catchup_reads_total",
			Help: "Times a connection read the session stream to deliver messages it missed."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_duplicate_pushes_total",
			Help: "Pushes dropped because the connection had delivered them already."}),
		pushDrops: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_push_overflows_total",
			Help: "Pushes dropped because a connection's queue was full (durable ones are re-read from the log)."}),
		streamDrops: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_stream_drops_total",
			Help: "Stream frames dropped because the client was too slow."}),
		redone: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_frames_redone_total",
			Help: "Durable frames sent again on their own after their pipelined command failed, by why (no_activation, failed, left_out)."}, []string{"why"}),
		isolationCloses: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_session_isolation_closes_total",
			Help: "Client connections closed (1013) because this node was cut off from the cluster longer than session.isolation_grace."}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_resyncs_total",
			Help: "Re-attachments of connections that received no push for a while, by result: current, behind (messages meant for the participant had not been pushed: they are read from the log), superseded (the participant is bound to a newer connection: this one is closed), failed."}, []string{"result"}),
	}
	m.inDurable, m.inStream = m.frames.WithLabelValues("in", "durable"), m.frames.WithLabelValues("in", "stream")
	m.outDurable, m.outStream = m.frames.WithLabelValues("out", "durable"), m.frames.WithLabelValues("out", "stream")
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.connections, m.handshakes, m.handshakeSeconds, m.refused, m.frames, m.errors,
			m.resumes, m.catchUps, m.duplicates, m.pushDrops, m.streamDrops, m.redone, m.isolationCloses, m.resyncs} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("sessionedge: register metrics: %w", err)
		}
	}
	return m, nil
}

// bucket is a token bucket (one per connection; not safe for concurrent use).
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst}
}

func (b *bucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
