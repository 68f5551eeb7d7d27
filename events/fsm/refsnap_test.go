package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// persistTo persists a snapshot of f into store and returns its id.
func persistTo(t *testing.T, f *FSM, store raft.SnapshotStore) string {
	t.Helper()
	sink, err := store.Create(raft.SnapshotVersionMax, f.AppliedIndex(), 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func readAll(t *testing.T, store raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	return meta, b
}

// A reference snapshot stores a few bytes; opened through the FSM's
// snapshot store it is a full snapshot of the store as it is then (here
// ahead of the reference), of the size the meta announces, that restores
// into an identical store. The raw reference is refused by Restore.
func TestReferenceSnapshotExpandsOnOpen(t *testing.T) {
	src, reg := newHarnessWith(t, Options{ReferenceSnapshots: true})
	populate(src, "alpha", "beta")
	inner := raft.NewInmemSnapshotStore()
	id := persistTo(t, src.f, inner)
	refIndex := src.f.AppliedIndex()
	_, raw := readAll(t, inner, id)
	if len(raw) > maxReferenceBytes {
		t.Fatalf("the reference takes %d bytes", len(raw))
	}
	if got := gather(t, reg)["switchboard_fsm_last_snapshot_bytes"]; got != float64(len(raw)) {
		t.Fatalf("last_snapshot_bytes %v, want %d", got, len(raw))
	}
	src.mustOK(appendCmd("gamma", Any(), events("z", "zz")...)) // the store moves on after the snapshot

	meta, full := readAll(t, src.f.SnapshotStore(inner), id)
	if meta.Size != int64(len(full)) {
		t.Fatalf("meta announces %d bytes, the stream has %d", meta.Size, len(full))
	}
	if meta.Index != refIndex {
		t.Fatalf("meta index %d, want the snapshot's %d", meta.Index, refIndex)
	}
	if got := gather(t, reg)["switchboard_fsm_snapshot_streams_total"]; got != 1 {
		t.Fatalf("snapshot_streams_total %v, want 1", got)
	}
	dst := newHarness(t)
	if err := dst.f.Restore(nopCloser(full)); err != nil {
		t.Fatal(err)
	}
	sameDump(t, "restored from an expanded reference", dump(t, src.db), dump(t, dst.db))
	if dst.f.AppliedIndex() != src.f.AppliedIndex() || dst.f.AppliedIndex() <= refIndex {
		t.Fatalf("restored at %d, source at %d, reference at %d", dst.f.AppliedIndex(), src.f.AppliedIndex(), refIndex)
	}

	other := newHarness(t)
	err := other.f.Restore(nopCloser(raw))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reference") {
		t.Fatalf("restore of a raw reference: %v", err)
	}
}

// A reference to a store that is behind it (the data it named is gone)
// cannot be opened; a corrupt reference is named as such; a full snapshot
// passes through unchanged.
func TestReferenceSnapshotStoreRefusals(t *testing.T) {
	h, _ := newHarnessWith(t, Options{ReferenceSnapshots: true})
	populate(h, "alpha")
	inner := raft.NewInmemSnapshotStore()
	store := h.f.SnapshotStore(inner)

	ahead, err := inner.Create(raft.SnapshotVersionMax, 1000, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writeReference(ahead, appliedState{Index: h.f.AppliedIndex() + 1, Position: h.f.LastPosition() + 1}); err != nil {
		t.Fatal(err)
	}
	ahead.Close()
	if _, _, err := store.Open(ahead.ID()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("open of a reference ahead of the store: %v", err)
	}

	id := persistTo(t, h.f, inner)
	_, raw := readAll(t, inner, id)
	bad, err := inner.Create(raft.SnapshotVersionMax, 2000, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(raw)
	corrupt[len(corrupt)-1] ^= 1
	bad.Write(corrupt)
	bad.Close()
	if _, _, err := store.Open(bad.ID()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("open of a corrupt reference: %v", err)
	}

	plain := newHarness(t)
	populate(plain, "beta")
	fullID := persistTo(t, plain.f, inner)
	_, want := readAll(t, inner, fullID)
	if _, got := readAll(t, store, fullID); !bytes.Equal(got, want) {
		t.Fatal("a full snapshot was changed on its way through the store")
	}
}
