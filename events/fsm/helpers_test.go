package fsm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// t0 is the entry time the tests start from (unix nanoseconds).
const t0 = int64(1_700_000_000_000_000_000)

type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...interface{})         {}
func (quietPebbleLogger) Errorf(string, ...interface{})        {}
func (quietPebbleLogger) Fatalf(f string, args ...interface{}) { panic(fmt.Sprintf(f, args...)) }

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openDB opens a Pebble DB in fs (a fresh MemFS if nil) and closes it at the
// end of the test unless the test closed it.
func openDB(t testing.TB, fs vfs.FS) (*pebble.DB, vfs.FS) {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	t.Cleanup(func() {
		defer func() { _ = recover() }() // the test closed it already
		_ = db.Close()
	})
	return db, fs
}

func newFSM(t testing.TB, db *pebble.DB) *FSM {
	t.Helper()
	f, err := New(db, DefaultPrefix, DefaultLimits(), Options{Logger: testLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// harness drives an FSM with raft logs of increasing index.
type harness struct {
	t    testing.TB
	db   *pebble.DB
	fs   vfs.FS
	f    *FSM
	next uint64 // next raft index
	time int64  // entry time of the next entry
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	db, fs := openDB(t, nil)
	return &harness{t: t, db: db, fs: fs, f: newFSM(t, db), next: 1, time: t0}
}

func (h *harness) log(cmds ...Command) *raft.Log {
	h.t.Helper()
	data, err := EncodeEntry(Entry{Time: h.time, Commands: cmds})
	if err != nil {
		h.t.Fatalf("EncodeEntry: %v", err)
	}
	l := &raft.Log{Index: h.next, Term: 1, Type: raft.LogCommand, Data: data}
	h.next++
	return l
}

// apply applies one entry holding cmds and returns its results.
func (h *harness) apply(cmds ...Command) []Result {
	h.t.Helper()
	resp := h.f.ApplyBatch([]*raft.Log{h.log(cmds...)})
	return h.results(resp[0])
}

// apply1 applies one command and returns its result.
func (h *harness) apply1(c Command) Result {
	h.t.Helper()
	return h.apply(c)[0]
}

func (h *harness) results(resp interface{}) []Result {
	h.t.Helper()
	rs, ok := resp.([]Result)
	if !ok {
		h.t.Fatalf("response is %T (%v), want []Result", resp, resp)
	}
	return rs
}

func (h *harness) mustOK(c Command) Result {
	h.t.Helper()
	r := h.apply1(c)
	if r.Code != OK {
		h.t.Fatalf("command failed: %v %q", r.Code, r.Message)
	}
	return r
}

func events(types ...string) []Event {
	evs := make([]Event, len(types))
	for i, ty := range types {
		evs[i] = Event{Type: ty, Data: []byte("data-" + ty), Meta: []byte("meta")}
	}
	return evs
}

func appendCmd(stream string, exp Expected, evs ...Event) Command {
	return Command{Append: &Append{Stream: stream, Expected: exp, Events: evs}}
}

func appendEpoch(stream string, epoch uint64, exp Expected, evs ...Event) Command {
	return Command{Append: &Append{Stream: stream, Expected: exp, Epoch: epoch, Events: evs}}
}

func appendWithID(stream string, id AppendID, exp Expected, evs ...Event) Command {
	return Command{Append: &Append{Stream: stream, Expected: exp, ID: id, Events: evs}}
}

func claimCmd(stream string) Command { return Command{Claim: &Claim{Stream: stream}} }

func idOf(n byte) AppendID { return AppendID{0: 0xa5, 15: n} }

type kv struct{ k, v []byte }

// dump returns every key/value of the whole DB.
func dump(t testing.TB, db *pebble.DB) []kv {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{0}, UpperBound: []byte{0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []kv
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kv{bytes.Clone(it.Key()), bytes.Clone(v)})
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpData is dump without the applied-state key (which every applied
// batch rewrites).
func dumpData(t testing.TB, db *pebble.DB) []kv {
	t.Helper()
	applied := keyspace{p: DefaultPrefix}.applied()
	var out []kv
	for _, e := range dump(t, db) {
		if !bytes.Equal(e.k, applied) {
			out = append(out, e)
		}
	}
	return out
}

func sameDump(t testing.TB, what string, a, b []kv) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d keys vs %d keys", what, len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].k, b[i].k) || !bytes.Equal(a[i].v, b[i].v) {
			t.Fatalf("%s: key %d differs: %x=%x vs %x=%x", what, i, a[i].k, a[i].v, b[i].k, b[i].v)
		}
	}
}

func countNS(t testing.TB, db *pebble.DB, ns byte) int {
	t.Helper()
	n := 0
	for _, e := range dump(t, db) {
		if len(e.k) >= 2 && e.k[0] == DefaultPrefix && e.k[1] == ns {
			n++
		}
	}
	return n
}

// snapshotBytes takes a snapshot of f and persists it to memory.
func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer s.Release()
	var buf bytes.Buffer
	if _, err := s.(*Snapshot).WriteTo(&buf); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	return buf.Bytes()
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// newMetricsHarness is newHarness with the FSM's metrics on a registry of
// its own.
func newMetricsHarness(t testing.TB) (*harness, *prometheus.Registry) {
	t.Helper()
	return newHarnessWith(t, Options{})
}

// newHarnessWith is newMetricsHarness with opts (its Registerer and Logger
// are set here).
func newHarnessWith(t testing.TB, opts Options) (*harness, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	db, fs := openDB(t, nil)
	opts.Registerer, opts.Logger = reg, testLogger()
	f, err := New(db, DefaultPrefix, DefaultLimits(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{t: t, db: db, fs: fs, f: f, next: 1, time: t0}, reg
}

// gather reads reg: name{label values} → counter or gauge value, or a
// histogram's sample count.
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "{" + lp.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				got[name] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[name] = float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				got[name] = m.Gauge.GetValue()
			}
		}
	}
	return got
}
