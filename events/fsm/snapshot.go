package fsm

// Snapshot stream format (version 1):
//
//	magic "SBFSMSNP" | format byte (1) | applied index uvarint | last position uvarint
//	record*  = 0x01 | key length uvarint | key | value length uvarint | value
//	trailer  = 0x00 | record count uvarint | CRC-32C (4 bytes, big endian)
//
// Keys are relative to the FSM's prefix (the prefix byte is left out, so a
// snapshot restores under any prefix), strictly ascending, and never in the
// meta namespace (the header carries the applied state). The CRC covers every
// byte before it. Nothing may follow the trailer. Varints are canonical, so a
// restored snapshot persists again to exactly the same bytes.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

const (
	snapshotMagic  = "SBFSMSNP"
	snapshotFormat = 1

	recTrailer byte = 0
	recRecord  byte = 1

	// Bounds on one record. Stream ids are at most 1024 bytes (Limits.Validate)
	// and an event value at most 16 MiB plus its small header.
	maxSnapshotKeyLen   = 2 + binary.MaxVarintLen64 + 1024 + 8
	maxSnapshotValueLen = 16<<20 + 64<<10
	maxStreamIDBytes    = 1024

	// restoreBatchBytes bounds the memory of one restore write batch.
	restoreBatchBytes = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is a point-in-time view of the event store, returned by
// FSM.Snapshot. It implements raft.FSMSnapshot; WriteTo also serves online
// backups. Persist/WriteTo may run concurrently with applies, and more than
// once; Release frees the view (call it exactly when done; it is idempotent).
type Snapshot struct {
	f       *FSM
	snap    *pebble.Snapshot
	release sync.Once
}

// Snapshot captures a consistent view of the store and returns at once; the
// data is streamed later by Persist. It fails with ErrUnavailable while the
// store needs a restore.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.NeedsRestore() {
		return nil, fmt.Errorf("fsm: snapshot: %w", errUnavailable)
	}
	return &Snapshot{f: f, snap: f.db.NewSnapshot()}, nil
}

// Persist writes the snapshot to sink and closes it, or cancels it on error.
//
// With Options.NoWAL it first flushes the store: Raft truncates its log
// after a snapshot is persisted, so everything the snapshot covers must be on
// disk in the store by then.
//
// With Options.ReferenceSnapshots it writes only a reference to the store,
// made durable first (refsnap.go).
func (s *Snapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	flush := s.f.Flush
	if s.f.references {
		flush = s.f.durable
	}
	if err := flush(); err != nil {
		_ = sink.Cancel()
		s.f.log.Error("snapshot persist failed: flush", "sink", sink.ID(), "err", err)
		return err
	}
	var n int64
	var err error
	if s.f.references {
		var st appliedState
		if st, err = s.f.readApplied(s.snap); err == nil {
			n, err = writeReference(sink, st)
		}
	} else {
		n, err = s.WriteTo(sink)
	}
	if err != nil {
		_ = sink.Cancel()
		s.f.log.Error("snapshot persist failed", "sink", sink.ID(), "err", err)
		return err
	}
	if err := sink.Close(); err != nil {
		s.f.log.Error("snapshot persist failed", "sink", sink.ID(), "err", err)
		return fmt.Errorf("fsm: snapshot: close sink: %w", err)
	}
	took := time.Since(start)
	s.f.metrics.snapBytes.Set(float64(n))
	s.f.metrics.snapSeconds.Set(took.Seconds())
	s.f.log.Info("snapshot persisted", "sink", sink.ID(), "bytes", n, "duration", took)
	return nil
}

// Release frees the Pebble snapshot. Safe to call more than once.
func (s *Snapshot) Release() {
	s.release.Do(func() {
		if err := s.snap.Close(); err != nil {
			s.f.log.Warn("release snapshot", "err", err)
		}
	})
}

// WriteTo writes the snapshot stream to w and returns the number of bytes written.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	f := s.f
	st, err := f.readApplied(s.snap)
	if err != nil {
		return 0, fmt.Errorf("fsm: snapshot: %w", err)
	}
	sw := newSnapWriter(w)
	sw.header(st)
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: f.keys.lower(), UpperBound: f.keys.upper()})
	if err != nil {
		return sw.n, fmt.Errorf("fsm: snapshot: %w", err)
	}
	for ok := it.First(); ok && sw.err == nil; ok = it.Next() {
		k := it.Key()
		if len(k) >= 2 && k[1] == nsMeta {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return sw.n, fmt.Errorf("fsm: snapshot: read %x: %w", k, err)
		}
		sw.record(k[1:], v)
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sw.n, fmt.Errorf("fsm: snapshot: iterate: %w", err)
	}
	if err := sw.finish(); err != nil {
		return sw.n, fmt.Errorf("fsm: snapshot: write: %w", err)
	}
	return sw.n, nil
}

// snapWriter writes the snapshot format; errors are sticky.
type snapWriter struct {
	w       *bufio.Writer
	crc     uint32
	n       int64
	count   uint64
	scratch []byte
	err     error
}

func newSnapWriter(w io.Writer) *snapWriter {
	return &snapWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (sw *snapWriter) header(st appliedState) {
	sw.scratch = append(append(sw.scratch[:0], snapshotMagic...), snapshotFormat)
	sw.scratch = binary.AppendUvarint(sw.scratch, st.Index)
	sw.scratch = binary.AppendUvarint(sw.scratch, st.Position)
	sw.write(sw.scratch)
}

// record writes one key (relative to the prefix) and value.
func (sw *snapWriter) record(rel, v []byte) {
	sw.scratch = append(sw.scratch[:0], recRecord)
	sw.scratch = appendBytes(sw.scratch, rel)
	sw.scratch = binary.AppendUvarint(sw.scratch, uint64(len(v)))
	sw.write(sw.scratch)
	sw.write(v)
	sw.count++
}

// finish writes the trailer and flushes.
func (sw *snapWriter) finish() error {
	sw.scratch = append(sw.scratch[:0], recTrailer)
	sw.scratch = binary.AppendUvarint(sw.scratch, sw.count)
	sw.write(sw.scratch)
	sw.writeRaw(binary.BigEndian.AppendUint32(sw.scratch[:0], sw.crc))
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.err
}

func (sw *snapWriter) write(p []byte) {
	sw.crc = crc32.Update(sw.crc, castagnoli, p)
	sw.writeRaw(p)
}

func (sw *snapWriter) writeRaw(p []byte) {
	if sw.err != nil {
		return
	}
	n, err := sw.w.Write(p)
	sw.n += int64(n)
	sw.err = err
}

// Restore replaces all state under the prefix with the snapshot in rc (and
// closes rc). Raft calls it with no concurrent Apply; reads meanwhile return
// ErrUnavailable.
//
// Steps: a restore-in-progress marker is written and every other key under
// the prefix deleted, in one synced batch; records are written in batches of
// about 4 MiB as they are read and checked (key shape, ascending order,
// value format); the trailer (record count and CRC-32C) is verified; only
// then is the applied state written and the marker removed, synced. On any
// error Restore returns it (wrapping ErrInvalid for a malformed snapshot),
// the marker stays, NeedsRestore reports true, and the next Restore starts over
// — except for a stream whose header shows it is no full snapshot (wrong
// magic or format, a reference, empty): that is refused before the marker is
// written, and the store is left as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	start := time.Now()
	// A stream that is not a full snapshot at all (wrong magic or format, a
	// reference, nothing) is refused before anything is touched.
	br := bufio.NewReaderSize(rc, 64<<10)
	if err := checkSnapshotHeader(br); err != nil {
		f.log.Error("snapshot restore refused; the event store is unchanged", "err", err)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if !f.NeedsRestore() {
		f.restoreSeq.Add(1) // odd: in progress
	}
	f.applied.Store(0)
	f.lastPos.Store(0)
	f.tail.reset()
	f.log.Info("restoring from snapshot")

	if err := f.beginRestore(); err != nil {
		f.log.Error("snapshot restore failed", "err", err)
		return err
	}
	b := f.db.NewBatch()
	defer func() { _ = b.Close() }()
	hdr, count, err := readSnapshot(br, func(rel, value []byte) error {
		f.kbuf = append(append(f.kbuf[:0], f.keys.p), rel...)
		if err := b.Set(f.kbuf, value, nil); err != nil {
			return err
		}
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Reset()
		}
		return nil
	})
	if err != nil {
		f.log.Error("snapshot restore failed; the event store stays unavailable until a restore succeeds", "err", err)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	st := appliedState{Index: hdr.Index, Position: hdr.Position}
	f.vbuf = encodeAppliedState(f.vbuf[:0], st)
	if err := b.Set(f.keys.applied(), f.vbuf, nil); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := b.Delete(f.keys.marker(), nil); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	// The durable commit also makes every earlier (unsynced) record batch
	// durable: they precede it in the WAL (or, without a WAL, in the flushed
	// memtables).
	if err := f.commitDurable(b); err != nil {
		f.log.Error("snapshot restore failed", "err", err)
		return fmt.Errorf("fsm: restore: commit: %w", err)
	}
	f.expiryHint = math.MinInt64
	f.metas.clear()
	f.ids.reset()
	f.lastPos.Store(st.Position)
	f.applied.Store(st.Index)
	f.restoreSeq.Add(1) // even: complete
	f.log.Info("restored from snapshot", "applied_index", st.Index, "last_position", st.Position,
		"records", count, "duration", time.Since(start))
	f.wake()
	return nil
}

// beginRestore writes the marker and deletes all other keys, atomically and synced.
func (f *FSM) beginRestore() error {
	b := f.db.NewBatch()
	defer func() { _ = b.Close() }()
	marker := f.keys.marker()
	err := errors.Join(
		b.Set(marker, []byte{formatV1}, nil),
		b.DeleteRange(f.keys.lower(), marker, nil),
		b.DeleteRange(append(slices.Clone(marker), 0), f.keys.upper(), nil),
	)
	if err == nil {
		err = f.commitDurable(b)
	}
	if err != nil {
		return fmt.Errorf("fsm: restore: clear old state: %w", err)
	}
	return nil
}

// checkSnapshotHeader peeks at the magic and format byte of a snapshot
// stream and reports, wrapping ErrInvalid, when it is not a full snapshot.
// It consumes nothing.
func checkSnapshotHeader(br *bufio.Reader) error {
	head, err := br.Peek(len(snapshotMagic) + 1)
	if err != nil && !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return fmt.Errorf("fsm: snapshot: read header: %w", err)
	}
	switch {
	case len(head) < len(snapshotMagic)+1:
		return fmt.Errorf("%w: snapshot: header: truncated (%d bytes)", ErrInvalid, len(head))
	case string(head[:len(snapshotMagic)]) != snapshotMagic:
		return fmt.Errorf("%w: snapshot: magic: not an event store snapshot (magic %q)", ErrInvalid, head[:len(snapshotMagic)])
	case head[len(snapshotMagic)] == snapshotFormatReference:
		return fmt.Errorf("%w: snapshot: %w", ErrInvalid, errReference)
	case head[len(snapshotMagic)] != snapshotFormat:
		return fmt.Errorf("%w: snapshot: format: unknown snapshot format %d (want %d)", ErrInvalid, head[len(snapshotMagic)], snapshotFormat)
	}
	return nil
}

// readSnapshot parses and verifies a snapshot stream, calling fn for each
// record (key relative to the prefix; both slices valid only during the call)
// after checking it. It returns the header's applied state and the record
// count once the trailer is verified and the stream has ended. Errors from the
// stream's content wrap ErrInvalid; errors from fn are returned as they are.
func readSnapshot(r io.Reader, fn func(rel, value []byte) error) (appliedState, uint64, error) {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	sr := snapReader{r: br, record: -1}
	magic, err := sr.full("magic", len(snapshotMagic), &sr.vbuf)
	if err != nil {
		return appliedState{}, 0, err
	}
	if string(magic) != snapshotMagic {
		return appliedState{}, 0, sr.fail("magic", "not an event store snapshot (magic %q)", magic)
	}
	format, err := sr.byte("format")
	if err != nil {
		return appliedState{}, 0, err
	}
	if format == snapshotFormatReference {
		return appliedState{}, 0, fmt.Errorf("%w: snapshot: %w", ErrInvalid, errReference)
	}
	if format != snapshotFormat {
		return appliedState{}, 0, sr.fail("format", "unknown snapshot format %d (want %d)", format, snapshotFormat)
	}
	var hdr appliedState
	if hdr.Index, err = sr.uvarint("applied index"); err != nil {
		return appliedState{}, 0, err
	}
	if hdr.Position, err = sr.uvarint("last position"); err != nil {
		return appliedState{}, 0, err
	}

	var count uint64
	var prev []byte
	for sr.record = 0; ; sr.record++ {
		tag, err := sr.byte("record tag")
		if err != nil {
			return appliedState{}, 0, err
		}
		if tag == recTrailer {
			break
		}
		if tag != recRecord {
			return appliedState{}, 0, sr.fail("record tag", "unknown record tag %d", tag)
		}
		kn, err := sr.length("key", 1, maxSnapshotKeyLen)
		if err != nil {
			return appliedState{}, 0, err
		}
		key, err := sr.full("key", kn, &sr.kbuf)
		if err != nil {
			return appliedState{}, 0, err
		}
		if err := checkKey(key); err != nil {
			return appliedState{}, 0, sr.fail("key", "%v", err)
		}
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			return appliedState{}, 0, sr.fail("key", "keys are not in ascending order")
		}
		vn, err := sr.length("value", 0, maxSnapshotValueLen)
		if err != nil {
			return appliedState{}, 0, err
		}
		value, err := sr.full("value", vn, &sr.vbuf)
		if err != nil {
			return appliedState{}, 0, err
		}
		if err := checkValue(key, value, hdr.Position); err != nil {
			return appliedState{}, 0, sr.fail("value", "key %q: %v", key, err)
		}
		if err := fn(key, value); err != nil {
			return appliedState{}, 0, fmt.Errorf("record %d: %w", sr.record, err)
		}
		prev = append(prev[:0], key...)
		count++
	}
	sr.record = -1
	n, err := sr.uvarint("trailer record count")
	if err != nil {
		return appliedState{}, 0, err
	}
	if n != count {
		return appliedState{}, 0, sr.fail("trailer", "record count %d, but %d records were read", n, count)
	}
	want := sr.crc
	got, err := sr.raw("trailer checksum", 4)
	if err != nil {
		return appliedState{}, 0, err
	}
	if binary.BigEndian.Uint32(got) != want {
		return appliedState{}, 0, sr.fail("trailer", "checksum mismatch: stored %08x, computed %08x", binary.BigEndian.Uint32(got), want)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return appliedState{}, 0, fmt.Errorf("fsm: snapshot: read after trailer: %w", err)
		}
		return appliedState{}, 0, sr.fail("trailer", "data after the trailer")
	}
	return hdr, count, nil
}

// checkValue checks that a record's value has the format its key's
// namespace requires. lastPos is the header's last position.
func checkValue(rel, v []byte, lastPos uint64) error {
	switch rel[0] {
	case nsDedup:
		if AppendID(rel[1:]).IsZero() {
			return errors.New("zero append id")
		}
		_, err := decodeDedupRecord(v)
		return err
	case nsEvent:
		pos := binary.BigEndian.Uint64(rel[1:])
		if pos > lastPos {
			return fmt.Errorf("position %d is after the last position %d", pos, lastPos)
		}
		_, err := decodeRecordedEvent(pos, v)
		return err
	case nsStream:
		_, err := decodeStreamMeta(v)
		return err
	case nsExpiry:
		if AppendID(rel[9:]).IsZero() {
			return errors.New("zero append id")
		}
		if len(v) != 0 {
			return fmt.Errorf("expiry value has %d bytes, want 0", len(v))
		}
	case nsVersion:
		pos, n, err := decodeVersionEntry(v)
		if err != nil {
			return err
		}
		if pos+n-1 > lastPos {
			return fmt.Errorf("positions %d..%d are outside 1..%d", pos, pos+n-1, lastPos)
		}
	}
	return nil
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

// snapReader reads a snapshot stream, computing the CRC of what it reads. It
// allocates in step with the bytes actually read, never with a claimed length.
type snapReader struct {
	r          byteReader
	crc        uint32
	off        int64
	record     int // -1 outside records
	kbuf, vbuf []byte
	one        [1]byte
}

func (sr *snapReader) fail(field, format string, args ...any) error {
	where := "snapshot"
	if sr.record >= 0 {
		where += fmt.Sprintf(": record %d", sr.record)
	}
	return fmt.Errorf("%w: %s: %s: %s (offset %d)", ErrInvalid, where, field, fmt.Sprintf(format, args...), sr.off)
}

func (sr *snapReader) readErr(field string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return sr.fail(field, "truncated")
	}
	return fmt.Errorf("fsm: snapshot: read %s: %w", field, err)
}

func (sr *snapReader) byte(field string) (byte, error) {
	c, err := sr.r.ReadByte()
	if err != nil {
		return 0, sr.readErr(field, err)
	}
	sr.one[0] = c
	sr.crc = crc32.Update(sr.crc, castagnoli, sr.one[:])
	sr.off++
	return c, nil
}

// uvarint reads a canonical uvarint (see decoder.uvarint).
func (sr *snapReader) uvarint(field string) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := sr.byte(field)
		if err != nil {
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			if i > 0 && c == 0 {
				return 0, sr.fail(field, "non-canonical varint")
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, sr.fail(field, "varint overflows 64 bits")
}

func (sr *snapReader) length(field string, min, max int) (int, error) {
	n, err := sr.uvarint(field + " length")
	if err != nil {
		return 0, err
	}
	if n < uint64(min) || n > uint64(max) {
		return 0, sr.fail(field, "length %d is outside %d..%d", n, min, max)
	}
	return int(n), nil
}

// full reads n bytes into *buf (reused), growing it at most 64 KiB ahead of
// the bytes actually read, and adds them to the CRC.
func (sr *snapReader) full(field string, n int, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	for len(b) < n {
		chunk := min(n-len(b), 64<<10)
		b = slices.Grow(b, chunk)
		got, err := io.ReadFull(sr.r, b[len(b):len(b)+chunk])
		b = b[:len(b)+got]
		sr.off += int64(got)
		if err != nil {
			*buf = b
			return nil, sr.readErr(field, err)
		}
	}
	*buf = b
	sr.crc = crc32.Update(sr.crc, castagnoli, b)
	return b, nil
}

// raw reads n bytes without adding them to the CRC.
func (sr *snapReader) raw(field string, n int) ([]byte, error) {
	b := make([]byte, n)
	got, err := io.ReadFull(sr.r, b)
	sr.off += int64(got)
	if err != nil {
		return nil, sr.readErr(field, err)
	}
	return b, nil
}
