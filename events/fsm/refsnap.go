package fsm

// Reference snapshots.
//
// A Raft snapshot of a large event store is expensive to write: every key is
// read and copied (341 MB in 3.9 s after two minutes of bench log), every
// SnapshotInterval, to serve a lagging follower that rarely exists. Yet the
// only reason Raft snapshots at all on a healthy node is to truncate its log,
// and for that it suffices that the store itself is durable at the
// snapshot's index: the store is the snapshot.
//
// With Options.ReferenceSnapshots, Persist makes the store durable and writes
// only a reference (format 2 of the snapshot stream):
//
//	magic "SBFSMSNP" | format byte (2) | applied index uvarint | last position uvarint
//	CRC-32C of the bytes before it (4 bytes, big endian); nothing follows
//
// The full stream (format 1) is produced when a snapshot is opened, by
// SnapshotStore.Open, from a consistent view of the store as it is then: at
// an applied index at or after the reference's. A node that installs it
// holds state ahead of the snapshot's Raft index, which is safe because
// ApplyBatch skips entries at or below the stored applied index, and every
// applied entry is committed. The size of the full stream, which Raft must
// send before the data, is measured by writing the stream once to a counter;
// the same view then streams the same bytes.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hashicorp/raft"
)

const snapshotFormatReference = 2

// maxReferenceBytes bounds a reference: magic, format, two varints, CRC.
const maxReferenceBytes = len(snapshotMagic) + 1 + 2*binary.MaxVarintLen64 + 4

// errReference is returned by readSnapshot for a reference: it holds no data.
var errReference = errors.New("a reference snapshot holds no data (it names the event store of the node that took it); open it through that node's fsm.SnapshotStore")

// writeReference writes the reference to st.
func writeReference(w io.Writer, st appliedState) (int64, error) {
	b := append([]byte(snapshotMagic), snapshotFormatReference)
	b = binary.AppendUvarint(b, st.Index)
	b = binary.AppendUvarint(b, st.Position)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	n, err := w.Write(b)
	return int64(n), err
}

// decodeReference reads a whole reference and checks its CRC and end.
// Errors from the content wrap ErrInvalid.
func decodeReference(r byteReader) (appliedState, error) {
	sr := &snapReader{r: r, record: -1}
	magic, err := sr.full("magic", len(snapshotMagic), &sr.vbuf)
	if err != nil {
		return appliedState{}, err
	}
	if string(magic) != snapshotMagic {
		return appliedState{}, sr.fail("magic", "not an event store snapshot (magic %q)", magic)
	}
	format, err := sr.byte("format")
	if err != nil {
		return appliedState{}, err
	}
	if format != snapshotFormatReference {
		return appliedState{}, sr.fail("format", "format %d is not a reference (%d)", format, snapshotFormatReference)
	}
	var st appliedState
	if st.Index, err = sr.uvarint("applied index"); err != nil {
		return appliedState{}, err
	}
	if st.Position, err = sr.uvarint("last position"); err != nil {
		return appliedState{}, err
	}
	want := sr.crc
	got, err := sr.raw("checksum", 4)
	if err != nil {
		return appliedState{}, err
	}
	if binary.BigEndian.Uint32(got) != want {
		return appliedState{}, sr.fail("checksum", "mismatch: stored %08x, computed %08x", binary.BigEndian.Uint32(got), want)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return appliedState{}, fmt.Errorf("fsm: snapshot: read after reference: %w", err)
		}
		return appliedState{}, sr.fail("reference", "data after the checksum")
	}
	return st, nil
}

// SnapshotStore is a raft.SnapshotStore for an FSM with
// Options.ReferenceSnapshots: it stores snapshots in the wrapped store as
// they come (references written by Persist, full snapshots received from a
// leader) and expands references into full snapshots when they are opened.
type SnapshotStore struct {
	raft.SnapshotStore
	f *FSM
}

// SnapshotStore wraps inner (raft's file snapshot store of this node) for
// this FSM.
func (f *FSM) SnapshotStore(inner raft.SnapshotStore) *SnapshotStore {
	return &SnapshotStore{SnapshotStore: inner, f: f}
}

// Open opens snapshot id. A full snapshot is returned as stored. A reference
// is returned as a full snapshot of the store as it is now (at or after the
// reference's applied index), with meta.Size set to that stream's length; it
// fails when the store is behind the reference or needs a restore (the data
// the reference named is gone: the node must be rebuilt from a leader's
// snapshot, docs/operations.md). Closing the reader releases the store's view.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	if !errors.Is(checkSnapshotHeader(br), errReference) {
		// A full snapshot (or something Restore will reject with a
		// precise error): as stored.
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	ref, err := decodeReference(br)
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("fsm: snapshot %s: %w", id, err)
	}
	f := s.f
	if f.NeedsRestore() || f.AppliedIndex() < ref.Index {
		return nil, nil, fmt.Errorf("%w: fsm: snapshot %s refers to this node's event store at applied index %d, but the store is at %d (restore needed: %v): the data it named is gone",
			ErrUnavailable, id, ref.Index, f.AppliedIndex(), f.NeedsRestore())
	}
	fs, err := f.Snapshot()
	if err != nil {
		return nil, nil, fmt.Errorf("fsm: expand snapshot %s: %w", id, err)
	}
	snap := fs.(*Snapshot)
	at, err := f.readApplied(snap.snap)
	if err != nil {
		snap.Release()
		return nil, nil, fmt.Errorf("fsm: expand snapshot %s: %w", id, err)
	}
	size, err := snap.WriteTo(io.Discard)
	if err != nil {
		snap.Release()
		return nil, nil, fmt.Errorf("fsm: expand snapshot %s: measure: %w", id, err)
	}
	full := *meta
	full.Size = size
	pr, pw := io.Pipe()
	go func() {
		n, err := snap.WriteTo(pw)
		snap.Release()
		if err == nil && n != size {
			err = fmt.Errorf("fsm: expand snapshot %s: wrote %d bytes, measured %d", id, n, size)
		}
		if err == nil {
			f.metrics.snapStreams.Inc()
			f.metrics.snapStreamBytes.Add(float64(n))
		}
		pw.CloseWithError(err)
	}()
	f.log.Info("expanding a reference snapshot into a full one", "snapshot", id, "reference_index", ref.Index, "store_index", at.Index, "bytes", size)
	return &full, pr, nil
}
