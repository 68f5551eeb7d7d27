package fsm

import (
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"reflect"
	"testing"
)

func tailEv(pos uint64, size int) RecordedEvent {
	return RecordedEvent{Position: pos, Stream: "s", Type: "t", Data: make([]byte, size)}
}

// The tail holds a contiguous run ending at the newest event, evicts the
// oldest by count and by bytes, starts over on a gap, and answers only what
// it holds, with ReadAll's bounds.
func TestTailKeepsTheNewestRun(t *testing.T) {
	tl := newTail(4, 1000)
	if _, ok := tl.read(1, 10, 0); ok {
		t.Fatal("an empty tail answered")
	}
	tl.push([]RecordedEvent{tailEv(1, 10), tailEv(2, 10), tailEv(3, 10)})
	tl.push([]RecordedEvent{tailEv(4, 10), tailEv(5, 10)}) // 1 evicted (count)
	positions := func(evs []RecordedEvent) []uint64 {
		var ps []uint64
		for _, e := range evs {
			ps = append(ps, e.Position)
		}
		return ps
	}
	if _, ok := tl.read(1, 10, 0); ok {
		t.Error("evicted position 1 answered")
	}
	if evs, ok := tl.read(2, 10, 0); !ok || !reflect.DeepEqual(positions(evs), []uint64{2, 3, 4, 5}) {
		t.Errorf("read(2): %v %v", positions(evs), ok)
	}
	if evs, ok := tl.read(3, 1, 0); !ok || !reflect.DeepEqual(positions(evs), []uint64{3}) {
		t.Errorf("read(3, max 1): %v %v", positions(evs), ok)
	}
	// maxBytes: type (1) + data (10) = 11 per event; the first always comes.
	if evs, ok := tl.read(2, 10, 25); !ok || !reflect.DeepEqual(positions(evs), []uint64{2, 3}) {
		t.Errorf("read(2, 25 bytes): %v %v", positions(evs), ok)
	}
	if evs, ok := tl.read(2, 10, 5); !ok || !reflect.DeepEqual(positions(evs), []uint64{2}) {
		t.Errorf("read(2, 5 bytes): %v %v", positions(evs), ok)
	}
	if _, ok := tl.read(6, 10, 0); ok {
		t.Error("a position past the newest answered")
	}
	// A 971-byte event: 2 goes by count (4 held at most), then 3 by bytes
	// (33 + 971 > 1000).
	tl.push([]RecordedEvent{tailEv(6, 970)})
	if evs, ok := tl.read(4, 10, 0); !ok || !reflect.DeepEqual(positions(evs), []uint64{4, 5, 6}) {
		t.Errorf("after a big event: %v %v", positions(evs), ok)
	}
	if _, ok := tl.read(3, 10, 0); ok {
		t.Error("position 3 should have been evicted by bytes")
	}
	// A gap (a restore moved the log on) starts a new run.
	tl.push([]RecordedEvent{tailEv(100, 1)})
	if _, ok := tl.read(6, 10, 0); ok {
		t.Error("the run before a gap still answered")
	}
	if evs, ok := tl.read(100, 10, 0); !ok || !reflect.DeepEqual(positions(evs), []uint64{100}) {
		t.Errorf("after a gap: %v %v", positions(evs), ok)
	}
	tl.reset()
	if _, ok := tl.read(100, 10, 0); ok {
		t.Error("a reset tail answered")
	}
}

// ReadAll served from the tail returns exactly what it returns from Pebble
// (a second FSM on the same database has an empty tail).
func TestReadAllFromTailEqualsStore(t *testing.T) {
	h := newHarness(t)
	for i := range 40 {
		evs := []Event{{Type: fmt.Sprintf("t%d", i%3), Data: []byte(fmt.Sprintf("data %d", i)), Meta: []byte("m")}}
		if i%5 == 0 {
			evs = append(evs, Event{Type: "empty"}) // no data, no meta
		}
		h.mustOK(appendCmd(fmt.Sprintf("s%d", i%4), Expected{Kind: ExpectAny}, evs...))
		h.time++
	}
	cold := newFSM(t, h.db)
	last := h.f.LastPosition()
	for _, c := range []struct {
		from      uint64
		max, max2 int
	}{{1, 1000, 0}, {1, 5, 0}, {7, 1000, 40}, {last, 10, 0}, {last - 3, 2, 1}} {
		hot, err := h.f.ReadAll(c.from, c.max, c.max2)
		if err != nil {
			t.Fatal(err)
		}
		want, err := cold.ReadAll(c.from, c.max, c.max2)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !reflect.DeepEqual(hot, want) {
			t.Errorf("ReadAll(%d, %d, %d): tail %+v, store %+v", c.from, c.max, c.max2, hot, want)
		}
	}
	if n := testutilCount(h.f); n == 0 {
		t.Error("no read was served from the tail")
	}
}

func testutilCount(f *FSM) float64 {
	var m dto.Metric
	if err := f.metrics.tailReads.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
