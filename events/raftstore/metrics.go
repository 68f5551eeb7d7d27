package raftstore

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// DBCollector exports the state of the node's Pebble databases as
// Prometheus metrics, labelled db=<name> (raft, events, views): flushes and
// compactions with the bytes they wrote (their ratio to what the
// application wrote is the write amplification), L0's depth (read
// amplification; a deep L0 precedes write stalls), memtable and disk sizes.
// Values are read from DB.Metrics at each scrape.
//
// Add databases with Add before they are scraped; Remove one before closing
// it. Safe for concurrent use.
type DBCollector struct {
	mu  sync.Mutex
	dbs map[string]*pebble.DB
}

// NewDBCollector returns a collector with no databases.
func NewDBCollector() *DBCollector { return &DBCollector{dbs: map[string]*pebble.DB{}} }

// Add exports db under name (replacing a database of that name).
func (c *DBCollector) Add(name string, db *pebble.DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dbs[name] = db
}

// Remove stops exporting the database of that name.
func (c *DBCollector) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.dbs, name)
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("switchboard_pebble_"+name, help, append([]string{"db"}, labels...), nil)
}

var (
	descFlushes        = desc("flushes_total", "Memtable flushes.")
	descFlushedBytes   = desc("flushed_bytes_total", "Bytes written to sstables by flushes.")
	descCompactions    = desc("compactions_total", "Compactions by kind (default rewrites data; move, delete_only and elision_only do not).", "kind")
	descCompactedBytes = desc("compacted_bytes_total", "Bytes written by compactions (rewritten data).")
	descCompactReads   = desc("compaction_read_bytes_total", "Bytes read by compactions.")
	descMovedBytes     = desc("moved_bytes_total", "Bytes moved to a lower level without rewriting.")
	descL0Sublevels    = desc("l0_sublevels", "Sublevels in L0: the read amplification of L0; Pebble slows writes as it grows.")
	descL0Files        = desc("l0_files", "Sstables in L0.")
	descMemtable       = desc("memtable_bytes", "Bytes allocated by memtables, the mutable one and those waiting for a flush.")
	descDiskBytes      = desc("disk_bytes", "Bytes on disk: sstables, blob files, WAL and the rest.")
)

// Describe implements prometheus.Collector. It describes nothing: the
// collector is unchecked, so that the event log and the projections can each
// register one for their own databases in the same registry (the db label
// keeps their series apart).
func (c *DBCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *DBCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, db := range c.dbs {
		m := db.Metrics()
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{name}, labels...)...)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		var flushed, compacted, read, moved uint64
		for _, l := range m.Levels {
			flushed += l.TableBytesFlushed
			compacted += l.TableBytesCompacted
			read += l.TableBytesRead
			moved += l.TableBytesMoved
		}
		counter(descFlushes, float64(m.Flush.Count))
		counter(descFlushedBytes, float64(flushed))
		counter(descCompactions, float64(m.Compact.DefaultCount), "default")
		counter(descCompactions, float64(m.Compact.MoveCount), "move")
		counter(descCompactions, float64(m.Compact.DeleteOnlyCount), "delete_only")
		counter(descCompactions, float64(m.Compact.ElisionOnlyCount), "elision_only")
		counter(descCompactions, float64(m.Compact.Count-m.Compact.DefaultCount-m.Compact.MoveCount-m.Compact.DeleteOnlyCount-m.Compact.ElisionOnlyCount), "other")
		counter(descCompactedBytes, float64(compacted))
		counter(descCompactReads, float64(read))
		counter(descMovedBytes, float64(moved))
		gauge(descL0Sublevels, float64(m.Levels[0].Sublevels))
		gauge(descL0Files, float64(m.Levels[0].TablesCount))
		gauge(descMemtable, float64(m.MemTable.Size))
		gauge(descDiskBytes, float64(m.DiskSpaceUsage()))
	}
}

var _ prometheus.Collector = (*DBCollector)(nil)
