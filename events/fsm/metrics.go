package fsm

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the FSM's Prometheus collectors. They are updated only after a
// batch commits.
type metrics struct {
	commands   [CodeInvalid + 1]prometheus.Counter // by result code
	events     prometheus.Counter
	bytes      prometheus.Counter
	batch      prometheus.Histogram
	dedupHits  prometheus.Counter
	expired    prometheus.Counter
	sweepSteps prometheus.Counter
	tailReads  prometheus.Counter
	// The last snapshot persisted: a full snapshot copies the whole store,
	// so these grow with it (docs/operations.md); a reference is a few
	// bytes after a flush.
	snapBytes   prometheus.Gauge
	snapSeconds prometheus.Gauge
	// Full snapshots streamed from references (refsnap.go).
	snapStreams     prometheus.Counter
	snapStreamBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "fsm", Name: "commands_applied_total",
		Help: "Commands applied by the event store state machine, by result code.",
	}, []string{"code"})
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "events_appended_total",
			Help: "Events appended to the event store.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "event_bytes_appended_total",
			Help: "Bytes (type, data and meta) of the events appended to the event store.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "apply_batch_logs",
			Help:    "Raft log entries per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1..1024 (raft's MaxAppendEntries cap)
		}),
		dedupHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "dedup_hits_total",
			Help: "Commands answered from a remembered id (retries of a command already applied).",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "dedup_expired_total",
			Help: "Remembered command ids deleted after their retention.",
		}),
		sweepSteps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "dedup_sweep_steps_total",
			Help: "Keys (live or deleted) the sweeps of expired append ids stepped over: about two per swept id when healthy.",
		}),
		snapBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "last_snapshot_bytes",
			Help: "Size of the last Raft snapshot this node persisted: a reference to its durable event store (a few bytes) or, without reference snapshots, the whole store.",
		}),
		snapSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "last_snapshot_seconds",
			Help: "Time the last Raft snapshot took to persist (a flush of the event store, and without reference snapshots a copy of all of it).",
		}),
		snapStreams: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "snapshot_streams_total",
			Help: "Full snapshots of the event store streamed from a reference snapshot (to a follower that fell behind the leader's log, or for a restore).",
		}),
		snapStreamBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "snapshot_stream_bytes_total",
			Help: "Bytes of the full snapshots streamed from reference snapshots.",
		}),
		tailReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "fsm", Name: "tail_reads_total",
			Help: "Reads of the global log served from the in-memory tail of recently applied events instead of Pebble.",
		}),
	}
	if reg != nil {
		var err error
		if commands, err = register(reg, commands); err != nil {
			return nil, err
		}
		for _, c := range []*prometheus.Counter{&m.events, &m.bytes, &m.dedupHits, &m.expired, &m.sweepSteps, &m.tailReads, &m.snapStreams, &m.snapStreamBytes} {
			if *c, err = register(reg, *c); err != nil {
				return nil, err
			}
		}
		if m.batch, err = register(reg, m.batch); err != nil {
			return nil, err
		}
		for _, g := range []*prometheus.Gauge{&m.snapBytes, &m.snapSeconds} {
			if *g, err = register(reg, *g); err != nil {
				return nil, err
			}
		}
	}
	for c := range m.commands {
		m.commands[c] = commands.WithLabelValues(Code(c).String())
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) observe(logs int, s *applyStats) {
	m.batch.Observe(float64(logs))
	for c, n := range s.codes {
		if n > 0 {
			m.commands[c].Add(float64(n))
		}
	}
	if s.events > 0 {
		m.events.Add(float64(s.events))
		m.bytes.Add(float64(s.bytes))
	}
	if s.dedupHits > 0 {
		m.dedupHits.Add(float64(s.dedupHits))
	}
	if s.expiredIDs > 0 {
		m.expired.Add(float64(s.expiredIDs))
	}
	if s.sweepSteps > 0 {
		m.sweepSteps.Add(float64(s.sweepSteps))
	}
}
