package voters

import (
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of a Reconciler, registered on Config.Registerer when set.
type metrics struct {
	voters     prometheus.Gauge
	nonvoters  prometheus.Gauge
	adds       prometheus.Counter
	readdress  prometheus.Counter
	promotions prometheus.Counter
	removals   prometheus.Counter
	bootstraps prometheus.Counter
	failures   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "voters", Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "voters", Name: name, Help: help})
	}
	m := &metrics{
		voters:     gauge("voters", "Voters in the Raft configuration as this node knows it."),
		nonvoters:  gauge("nonvoters", "Non-voters in the Raft configuration as this node knows it."),
		adds:       counter("adds_total", "Members added to the Raft configuration as non-voters by this node as leader."),
		readdress:  counter("address_changes_total", "Servers whose Raft address this node as leader updated."),
		promotions: counter("promotions_total", "Non-voters promoted to voters by this node as leader."),
		removals:   counter("removals_total", "Servers removed from the Raft configuration by this node as leader after the dead-server grace."),
		bootstraps: counter("bootstraps_total", "Clusters bootstrapped by this node (bootstrap_expect)."),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "voters", Name: "change_failures_total",
			Help: "Configuration changes that failed, by change (add, address, promote, remove, bootstrap).",
		}, []string{"change"}),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.voters, m.nonvoters, m.adds, m.readdress, m.promotions, m.removals, m.bootstraps, m.failures}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("voters: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(cfg raft.Configuration) {
	var v, nv int
	for _, s := range cfg.Servers {
		switch s.Suffrage {
		case raft.Voter:
			v++
		case raft.Nonvoter:
			nv++
		}
	}
	m.voters.Set(float64(v))
	m.nonvoters.Set(float64(nv))
}
