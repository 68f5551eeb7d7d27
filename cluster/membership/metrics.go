package membership

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on Config.Registerer in Start and unregistered by
// Shutdown, so a process may restart its membership on the same registry.
type metrics struct {
	reg          prometheus.Registerer
	registered   []prometheus.Collector
	joins        prometheus.Counter
	leaves       *prometheus.CounterVec
	declaredDead *prometheus.CounterVec
	state        *stateCollector
}

// stateCollector reports gauges computed at scrape time from the member map
// and memberlist's health score.
type stateCollector struct {
	m       *Membership
	members *prometheus.Desc
	health  *prometheus.Desc
}

func newMetrics(reg prometheus.Registerer, m *Membership) *metrics {
	return &metrics{
		reg: reg,
		joins: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "membership", Name: "joins_total",
			Help: "Members seen joining (including dead or left members coming back).",
		}),
		leaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "membership", Name: "leaves_total",
			Help: "Members seen leaving, by state: left (graceful) or dead (declared failed).",
		}, []string{"state"}),
		declaredDead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "membership", Name: "declared_dead_total",
			Help: "Times this node learned the cluster had declared it dead, by the signal that told it first (watchdog, refute, merge).",
		}, []string{"signal"}),
		state: &stateCollector{m: m,
			members: prometheus.NewDesc("switchboard_membership_members",
				"Members known to this node (itself included), by state.", []string{"state"}, nil),
			health: prometheus.NewDesc("switchboard_membership_health_score",
				"memberlist's awareness score of this node: 0 is healthy; higher means it is missing its soft real-time deadlines and probes more slowly.", nil, nil),
		},
	}
}

func (x *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{x.joins, x.leaves, x.declaredDead, x.state}
}

func (x *metrics) register() error {
	if x.reg == nil {
		return nil
	}
	var errs []error
	for _, c := range x.collectors() {
		if err := x.reg.Register(c); err != nil {
			errs = append(errs, err)
			continue
		}
		x.registered = append(x.registered, c)
	}
	if len(errs) > 0 {
		x.unregister()
		return fmt.Errorf("membership: register metrics: %w", errors.Join(errs...))
	}
	return nil
}

func (x *metrics) unregister() {
	for _, c := range x.registered {
		x.reg.Unregister(c)
	}
	x.registered = nil
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.health
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.m.countByState()
	for _, s := range []State{Alive, Suspect, Dead, Left} {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(counts[s]), s.String())
	}
	ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, float64(c.m.ml.GetHealthScore()))
}

var _ prometheus.Collector = (*stateCollector)(nil)
