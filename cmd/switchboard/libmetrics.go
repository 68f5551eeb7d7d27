package main

import (
	"fmt"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// libMetricsPrefix prefixes what hashicorp/raft and memberlist report about
// themselves, so that their names (raft.commitTime → <prefix>_raft_commitTime)
// never meet the node's own switchboard_* names.
const libMetricsPrefix = "switchboard_hashicorp"

// exportLibraryMetrics publishes on reg the timings and counters that
// hashicorp/raft and memberlist emit through go-metrics (a process-wide
// sink: one node per process). Summaries of series not updated for ten
// minutes are dropped, so that a departed peer's labels go away.
func exportLibraryMetrics(reg prometheus.Registerer) error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 10 * time.Minute})
	if err != nil {
		return fmt.Errorf("library metrics: %w", err)
	}
	conf := gometrics.DefaultConfig(libMetricsPrefix)
	conf.EnableHostname = false       // one node per process: the scrape target says which
	conf.EnableRuntimeMetrics = false // the Go collector already exports them
	if _, err := gometrics.NewGlobal(conf, sink); err != nil {
		return fmt.Errorf("library metrics: %w", err)
	}
	return nil
}
