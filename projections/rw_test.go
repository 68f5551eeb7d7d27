package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/switchboard-io/switchboard/events"
)

// counting counts every event in one row with a Get and a Set per event,
// and fails its apply once, after reading and before returning, at the
// batch holding position failAt.
type counting struct {
	failAt uint64
	failed atomic.Bool
}

func (*counting) Name() string    { return "counting" }
func (*counting) Version() uint32 { return 1 }
func (c *counting) Apply(w *Writer, evs []events.RecordedEvent) error {
	for _, ev := range evs {
		v, _, err := w.Get([]byte("n"))
		if err != nil {
			return err
		}
		var n uint64
		if len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		if err := w.Set([]byte("n"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
			return err
		}
		if ev.Position == c.failAt && c.failed.CompareAndSwap(false, true) {
			return errors.New("injected failure")
		}
	}
	return nil
}

// Writer.Get serves committed rows it read before from the runner's cache:
// each commit must update the cached rows it wrote and a failed batch must
// not leave its reads or writes behind, or a read-modify-write row drifts
// from the log.
func TestCachedReadsFollowCommitsAndFailures(t *testing.T) {
	const n = 1000
	log := make([]events.RecordedEvent, n)
	for i := range log {
		log[i] = events.RecordedEvent{Position: uint64(i + 1), Stream: fmt.Sprintf("s-%d", i%7), Version: uint64(i/7 + 1), Type: "t"}
	}
	db := memDB(t, vfs.NewMem())
	p := &counting{failAt: 333}
	e, err := Open(Config{DB: db, Logger: quiet, BatchEvents: 10}, &sliceSource{evs: log}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.WaitPosition(ctx, "counting", n); err != nil {
		t.Fatal(err)
	}
	if !p.failed.Load() {
		t.Fatal("the injected failure never happened")
	}
	var got uint64
	if err := e.View("counting", func(r *Reader) error {
		v, _, err := r.Get([]byte("n"))
		if len(v) == 8 {
			got = binary.BigEndian.Uint64(v)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("counted %d events, want %d", got, n)
	}
}
