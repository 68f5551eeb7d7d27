package fsm

import (
	"encoding/binary"
	"testing"
)

func seqID(i int) AppendID {
	var id AppendID
	binary.BigEndian.PutUint64(id[:8], uint64(i)+1)
	return id
}

// After a reopen the append-id filter learns the stored ids a chunk per
// batch; while it learns and once it is ready, every retried id is still
// recognized as a duplicate (the filter may say "maybe", never a wrong "no").
func TestDuplicatesRecognizedWhileAndAfterFilterRebuild(t *testing.T) {
	h := newHarness(t)
	const n = filterScanChunk*2 + 100 // more than two scan chunks
	cmds := make([]Command, 0, 500)
	first := map[AppendID]Result{}
	for i := 0; i < n; i++ {
		a := &Append{Stream: "s", Expected: Any(), ID: seqID(i), Events: events("e")}
		cmds = append(cmds, Command{Append: a})
		if len(cmds) == cap(cmds) || i == n-1 {
			rs := h.apply(cmds...)
			for j, c := range cmds {
				first[c.Append.ID] = rs[j]
			}
			cmds = cmds[:0]
		}
	}
	// Reopen on the same DB: the filter starts empty and not ready.
	h.f = newFSM(t, h.db)
	if h.f.ids.ready {
		t.Fatal("filter ready before scanning")
	}
	retry := func(i int) {
		t.Helper()
		id := seqID(i)
		r := h.apply1(Command{Append: &Append{Stream: "s", Expected: Any(), ID: id, Events: events("e")}})
		if !r.Duplicate || r.Version != first[id].Version {
			t.Fatalf("retry of id %d: %+v, want duplicate of %+v", i, r, first[id])
		}
	}
	// Each batch scans one chunk: the last ids are found before the scan
	// reaches them (the filter still says "maybe").
	retry(n - 1)
	if h.f.ids.ready {
		t.Fatal("filter ready after one chunk of a three-chunk scan")
	}
	for i := 0; i < 4 && !h.f.ids.ready; i++ {
		retry(i)
	}
	if !h.f.ids.ready {
		t.Fatal("filter never became ready")
	}
	for _, i := range []int{0, 1, filterScanChunk, filterScanChunk + 1, n - 2, n - 1} {
		retry(i)
	}
	// A fresh id is not a duplicate.
	r := h.mustOK(Command{Append: &Append{Stream: "s", Expected: Any(), ID: seqID(n + 5), Events: events("e")}})
	if r.Duplicate {
		t.Fatal("fresh id reported as duplicate")
	}
}

// The stream metadata cache follows restores: after a restore of an older
// state, appends see the restored versions, not the cached newer ones.
func TestMetaCacheFollowsRestore(t *testing.T) {
	h := newHarness(t)
	h.mustOK(appendCmd("s", Exact(0), events("a")...))
	snap := snapshotBytes(t, h.f)
	h.mustOK(appendCmd("s", Exact(1), events("b")...))
	h.mustOK(appendCmd("s", Exact(2), events("c")...))
	if err := h.f.Restore(nopCloser(snap)); err != nil {
		t.Fatal(err)
	}
	r := h.apply1(appendCmd("s", Exact(3), events("d")...))
	if r.Code != CodeConflict || r.Version != 1 {
		t.Fatalf("append at the pre-restore version: %+v, want conflict at version 1", r)
	}
	h.mustOK(appendCmd("s", Exact(1), events("b2")...))
}
