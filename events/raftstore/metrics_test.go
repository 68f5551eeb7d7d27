package raftstore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value returns the value of the series name{db=db[,kind=kind]} in a
// gathering, and whether it exists.
func value(t *testing.T, reg *prometheus.Registry, name, db, kind string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["db"] != db || (kind != "" && labels["kind"] != kind) {
				continue
			}
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestDBCollectorReportsFlushesPerDatabase(t *testing.T) {
	a, b := openTestDB(t, vfs.NewMem()), openTestDB(t, vfs.NewMem())
	reg := prometheus.NewRegistry()
	c := NewDBCollector()
	c.Add("a", a)
	c.Add("b", b)
	reg.MustRegister(c)
	// A second collector for another database registers beside it (the
	// projections do that in the node's registry).
	c2 := NewDBCollector()
	reg.MustRegister(c2)

	for i := 0; i < 100; i++ {
		if err := a.Set([]byte{byte(i)}, make([]byte, 1000), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, ok := value(t, reg, "switchboard_pebble_flushes_total", "a", ""); !ok || n < 1 {
		t.Fatalf("flushes of a = %v (present %v), want >= 1", n, ok)
	}
	if n, _ := value(t, reg, "switchboard_pebble_flushed_bytes_total", "a", ""); n < 1000 {
		t.Fatalf("flushed bytes of a = %v, want the 100 kB written", n)
	}
	if n, ok := value(t, reg, "switchboard_pebble_flushes_total", "b", ""); !ok || n != 0 {
		t.Fatalf("flushes of b = %v (present %v), want 0", n, ok)
	}
	if n, _ := value(t, reg, "switchboard_pebble_l0_files", "a", ""); n < 1 {
		t.Fatalf("l0 files of a = %v after a flush", n)
	}
	if _, ok := value(t, reg, "switchboard_pebble_compactions_total", "a", "move"); !ok {
		t.Fatal("no compactions_total{kind=move} series")
	}

	c2.Add("c", openTestDB(t, vfs.NewMem()))
	if _, ok := value(t, reg, "switchboard_pebble_disk_bytes", "c", ""); !ok {
		t.Fatal("a database added after registration is not exported")
	}
	c.Remove("b")
	if _, ok := value(t, reg, "switchboard_pebble_flushes_total", "b", ""); ok {
		t.Fatal("a removed database is still exported")
	}
}
