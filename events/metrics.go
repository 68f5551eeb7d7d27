package events

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/events/raftstore"
)

// metrics are the node's Prometheus metrics. Registered on cfg.Registerer when
// set (the server owns the registry); otherwise they are kept unregistered.
type metrics struct {
	reg           prometheus.Registerer
	appends       *prometheus.CounterVec
	appendLatency prometheus.Histogram
	forwarded     prometheus.Counter
	// forwardsAbandoned counts forwarded commands whose caller stopped
	// waiting because the leader moved (the command is retried).
	forwardsAbandoned prometheus.Counter
	retries           prometheus.Counter
	batchCommands     prometheus.Histogram
	batchBytes        prometheus.Histogram
	commitLatency     prometheus.Histogram
	readFences        prometheus.Histogram
	collectorState    prometheus.Collector
	pebble            *raftstore.DBCollector // the raft and events databases
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "appends_total",
			Help: "Appends handled by this node, by outcome (ok, rejected, unavailable).",
		}, []string{"outcome"}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "append_seconds",
			Help:    "Latency of appends accepted by this node, including forwarding.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "forwarded_total",
			Help: "Commands forwarded to the leader.",
		}),
		forwardsAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "forwards_abandoned_total",
			Help: "Forwarded commands no longer awaited because leadership moved away from the node they were sent to; each is retried at the new leader under the same append id.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "propose_retries_total",
			Help: "Proposals retried because there was no reachable leader.",
		}),
		batchCommands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "group_commit_commands",
			Help:    "Commands packed into one Raft entry by group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "group_commit_bytes",
			Help:    "Size of Raft entries written by group commit.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 9),
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "commit_seconds",
			Help:    "Time from handing a group-commit entry to Raft until it was committed and applied on the leader (the rest of an append's time is queueing for one of the entries in flight, and forwarding).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14),
		}),
		readFences: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "log", Name: "read_fence_seconds",
			Help:    "Time the leader took to confirm its leadership through the log for consistent reads (one fence serves every read waiting).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.appends, m.appendLatency, m.forwarded, m.forwardsAbandoned, m.retries, m.batchCommands, m.batchBytes, m.commitLatency, m.readFences}
}

// watch registers the metrics and gauges reading the node's Raft state.
func (m *metrics) watch(n *Node) {
	if m.reg == nil {
		return
	}
	m.collectorState = &stateCollector{n: n,
		state:   prometheus.NewDesc("switchboard_raft_state", "Raft state of this node (1 for the current state).", []string{"state"}, nil),
		applied: prometheus.NewDesc("switchboard_raft_applied_index", "Highest Raft index applied to the event store.", nil, nil),
		commit:  prometheus.NewDesc("switchboard_raft_commit_index", "Highest Raft index known committed.", nil, nil),
		last:    prometheus.NewDesc("switchboard_raft_last_index", "Last index in this node's Raft log.", nil, nil),
		first:   prometheus.NewDesc("switchboard_raft_first_index", "First index still in this node's Raft log (earlier ones were truncated after a snapshot).", nil, nil),
		term:    prometheus.NewDesc("switchboard_raft_term", "Current Raft term.", nil, nil),
		pos:     prometheus.NewDesc("switchboard_log_last_position", "Global position of the last event in the local store.", nil, nil),
	}
	m.pebble = raftstore.NewDBCollector()
	m.pebble.Add("raft", n.db)
	m.pebble.Add("events", n.evdb)
	for _, c := range append(m.collectors(), m.collectorState, m.pebble) {
		_ = m.reg.Register(c)
	}
}

func (m *metrics) unwatch() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
	if m.collectorState != nil {
		m.reg.Unregister(m.collectorState)
	}
	if m.pebble != nil {
		m.reg.Unregister(m.pebble)
	}
}

func (m *metrics) observeAppend(start time.Time, err error) {
	switch {
	case err == nil:
		m.appends.WithLabelValues("ok").Inc()
	case isUnavailable(err):
		m.appends.WithLabelValues("unavailable").Inc()
	default:
		m.appends.WithLabelValues("rejected").Inc()
	}
	m.appendLatency.Observe(time.Since(start).Seconds())
}

type stateCollector struct {
	n                                              *Node
	state, applied, commit, last, first, term, pos *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.applied, c.commit, c.last, c.first, c.term, c.pos} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.n.raft
	cur := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(c.n.fsm.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(r.LastIndex()))
	if first, err := c.n.store.FirstIndex(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.first, prometheus.GaugeValue, float64(first))
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(c.pos, prometheus.GaugeValue, float64(c.n.fsm.LastPosition()))
}
