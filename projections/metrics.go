package projections

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/events/raftstore"
)

type metrics struct {
	reg          prometheus.Registerer
	applied      *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	errors       *prometheus.CounterVec
	rebuilds     *prometheus.CounterVec
	batchSeconds *prometheus.HistogramVec
	collectors   []prometheus.Collector
}

// lagCollector reports position and lag at scrape time.
type lagCollector struct {
	e        *Engine
	position *prometheus.Desc
	lag      *prometheus.Desc
}

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.position; ch <- c.lag }
func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.e.Status() {
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), s.Name)
	}
}

func newMetrics(reg prometheus.Registerer, e *Engine) *metrics {
	m := &metrics{
		reg: reg,
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_projection_events_total",
			Help: "Events folded into a projection (every generation)."}, []string{"projection"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_projection_skipped_events_total",
			Help: "Events a projection could not fold (undecodable or inconsistent)."}, []string{"projection"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_projection_batch_errors_total",
			Help: "Batches that failed (storage errors) and were retried."}, []string{"projection"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_projection_rebuilds_total",
			Help: "Rebuilds started."}, []string{"projection"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_projection_batch_seconds",
			Help: "Time to fold and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"projection"}),
	}
	lc := lagCollector{e: e,
		position: prometheus.NewDesc("switchboard_projection_position", "Last log position folded into the projection's active generation.", []string{"projection"}, nil),
		lag:      prometheus.NewDesc("switchboard_projection_lag_events", "Events applied on this node but not yet folded into the projection.", []string{"projection"}, nil),
	}
	m.collectors = []prometheus.Collector{m.applied, m.skipped, m.errors, m.rebuilds, m.batchSeconds, lc}
	if e.ownDB {
		pc := raftstore.NewDBCollector()
		pc.Add("views", e.db)
		m.collectors = append(m.collectors, pc)
	}
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
