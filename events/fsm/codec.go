package fsm

// Binary formats of the state machine: the raft log entry (network and raft
// log), and the values it stores in Pebble (disk). All of them:
//
//   - start with a format-version byte (formatV1);
//   - write integers as canonical (shortest) unsigned varints, signed integers
//     zig-zag encoded; the decoders reject non-canonical varints, unknown flag
//     bits and trailing bytes, so every accepted input re-encodes to exactly
//     the same bytes (the fuzz targets check this);
//   - write byte strings as uvarint length + bytes; a decoder checks every
//     length against the bytes that remain before it allocates, so a decoder
//     never allocates more than a small multiple of its input and never panics.
//
// Decoding errors wrap ErrInvalid and name the object, the field and the offset.
//
// Entry (formatV1):
//
//	version byte | time zigzag | command count uvarint | command...
//	command = 0x01 claim  | stream | id
//	        | 0x02 append | stream | expected kind byte | [version uvarint, only for ExpectExact]
//	                      | epoch uvarint | id | event count uvarint | event...
//	id      = 0x00 (none) | 0x01 + 16 bytes (non-zero)
//	event   = type | data | meta   (each uvarint length + bytes)
//
// Stored values (formatV1), see keys.go for the keys:
//
//	applied state  = version | applied index uvarint | last position uvarint
//	stream meta    = version | version uvarint | epoch uvarint
//	recorded event = version | stream | version uvarint | epoch uvarint | time zigzag | type | data | meta
//	                 (the global position is the key)
//	dedup record   = version | entry time zigzag | kind byte (1 claim, 2 append) | stream
//	                 | code byte | message | epoch | version | first position | last position

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// formatV1 is the first byte of every encoded entry and stored value.
const formatV1 byte = 1

const (
	tagClaim  byte = 1
	tagAppend byte = 2

	idAbsent  byte = 0
	idPresent byte = 1

	// Smallest possible encodings; used to bound counts before allocating.
	minClaimLen   = 1 + 1 + 1             // tag, empty stream, id flag
	minAppendLen  = 1 + 1 + 1 + 1 + 1 + 1 // tag, stream, kind, epoch, id flag, event count
	minEventLen   = 3                     // three empty strings
	minCommandLen = minClaimLen
)

// EncodeEntry encodes a raft log entry payload. It fails (ErrInvalid) only on
// commands that cannot be represented: a command must set exactly one of Claim
// and Append. It does not check the limits: call ValidateCommand first.
func EncodeEntry(e Entry) ([]byte, error) {
	n := 1 + binary.MaxVarintLen64*2
	for i, c := range e.Commands {
		switch {
		case c.Claim != nil && c.Append == nil:
			n += minClaimLen + binary.MaxVarintLen64 + len(c.Claim.Stream) + len(AppendID{})
		case c.Append != nil && c.Claim == nil:
			a := c.Append
			n += minAppendLen + 4*binary.MaxVarintLen64 + len(a.Stream) + len(AppendID{})
			for _, ev := range a.Events {
				n += 3*binary.MaxVarintLen64 + ev.Size()
			}
		default:
			return nil, fmt.Errorf("%w: entry: command %d: exactly one of claim and append must be set", ErrInvalid, i)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, zigzag(e.Time))
	b = binary.AppendUvarint(b, uint64(len(e.Commands)))
	for _, c := range e.Commands {
		if c.Claim != nil {
			b = append(b, tagClaim)
			b = appendString(b, c.Claim.Stream)
			b = appendID(b, c.Claim.ID)
			continue
		}
		a := c.Append
		b = append(b, tagAppend)
		b = appendString(b, a.Stream)
		b = append(b, byte(a.Expected.Kind))
		if a.Expected.Kind == ExpectExact {
			b = binary.AppendUvarint(b, a.Expected.Version)
		}
		b = binary.AppendUvarint(b, a.Epoch)
		b = appendID(b, a.ID)
		b = binary.AppendUvarint(b, uint64(len(a.Events)))
		for _, ev := range a.Events {
			b = appendString(b, ev.Type)
			b = appendBytes(b, ev.Data)
			b = appendBytes(b, ev.Meta)
		}
	}
	return b, nil
}

// DecodeEntry decodes a raft log entry payload encoded by EncodeEntry. The
// result does not alias b (the events' Data and Meta share one private copy of
// b). Empty Data and Meta decode as nil. Errors wrap ErrInvalid. DecodeEntry
// checks the format only; the commands still need ValidateCommand.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: bytes.Clone(b), what: "entry", cmd: -1, ev: -1}
	var e Entry
	if err := d.version(); err != nil {
		return Entry{}, err
	}
	t, err := d.uvarint("time")
	if err != nil {
		return Entry{}, err
	}
	e.Time = unzigzag(t)
	n, err := d.count("command count", minCommandLen)
	if err != nil {
		return Entry{}, err
	}
	if n > 0 {
		e.Commands = make([]Command, n)
	}
	for i := range e.Commands {
		d.cmd = i
		tag, err := d.byte("command tag")
		if err != nil {
			return Entry{}, err
		}
		switch tag {
		case tagClaim:
			c := &Claim{}
			if c.Stream, err = d.string("stream"); err != nil {
				return Entry{}, err
			}
			if c.ID, err = d.id(); err != nil {
				return Entry{}, err
			}
			e.Commands[i].Claim = c
		case tagAppend:
			a, err := d.append()
			if err != nil {
				return Entry{}, err
			}
			e.Commands[i].Append = a
		default:
			return Entry{}, d.fail("command tag", "unknown command tag %d", tag)
		}
	}
	d.cmd = -1
	if err := d.end(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

func (d *decoder) append() (*Append, error) {
	a := &Append{}
	var err error
	if a.Stream, err = d.string("stream"); err != nil {
		return nil, err
	}
	k, err := d.byte("expected version kind")
	if err != nil {
		return nil, err
	}
	// Unknown kinds are kept: ValidateCommand rejects them with a clear
	// message, deterministically, inside apply.
	a.Expected.Kind = ExpectedKind(k)
	if a.Expected.Kind == ExpectExact {
		if a.Expected.Version, err = d.uvarint("expected version"); err != nil {
			return nil, err
		}
	}
	if a.Epoch, err = d.uvarint("epoch"); err != nil {
		return nil, err
	}
	if a.ID, err = d.id(); err != nil {
		return nil, err
	}
	n, err := d.count("event count", minEventLen)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		a.Events = make([]Event, n)
	}
	for j := range a.Events {
		d.ev = j
		ev := &a.Events[j]
		if ev.Type, err = d.string("type"); err != nil {
			return nil, err
		}
		if ev.Data, err = d.bytes("data"); err != nil {
			return nil, err
		}
		if ev.Meta, err = d.bytes("meta"); err != nil {
			return nil, err
		}
	}
	d.ev = -1
	return a, nil
}

// appliedState is the FSM's bookkeeping, stored under the meta key and written
// in the same batch as the commands it accounts for.
type appliedState struct {
	Index    uint64 // last raft log index applied
	Position uint64 // last global position written
}

func encodeAppliedState(dst []byte, s appliedState) []byte {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, s.Index)
	return binary.AppendUvarint(dst, s.Position)
}

func decodeAppliedState(b []byte) (appliedState, error) {
	d := decoder{b: b, what: "applied state", cmd: -1, ev: -1}
	var s appliedState
	var err error
	if err = d.version(); err != nil {
		return appliedState{}, err
	}
	if s.Index, err = d.uvarint("applied index"); err != nil {
		return appliedState{}, err
	}
	if s.Position, err = d.uvarint("last position"); err != nil {
		return appliedState{}, err
	}
	return s, d.end()
}

// streamMeta is a stream's stored state. A stream exists iff its meta exists.
type streamMeta struct {
	Version uint64 // number of events in the stream
	Epoch   uint64 // current activation epoch; 0 = never claimed
}

func encodeStreamMeta(dst []byte, m streamMeta) []byte {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, m.Version)
	return binary.AppendUvarint(dst, m.Epoch)
}

func decodeStreamMeta(b []byte) (streamMeta, error) {
	d := decoder{b: b, what: "stream meta", cmd: -1, ev: -1}
	var m streamMeta
	var err error
	if err = d.version(); err != nil {
		return streamMeta{}, err
	}
	if m.Version, err = d.uvarint("version"); err != nil {
		return streamMeta{}, err
	}
	if m.Epoch, err = d.uvarint("epoch"); err != nil {
		return streamMeta{}, err
	}
	return m, d.end()
}

// appendRecordedValue appends the stored form of an event; the global
// position is not part of the value (it is the key).
func appendRecordedValue(dst []byte, stream string, version, epoch uint64, time int64, ev Event) []byte {
	dst = append(dst, formatV1)
	dst = appendString(dst, stream)
	dst = binary.AppendUvarint(dst, version)
	dst = binary.AppendUvarint(dst, epoch)
	dst = binary.AppendUvarint(dst, zigzag(time))
	dst = appendString(dst, ev.Type)
	dst = appendBytes(dst, ev.Data)
	return appendBytes(dst, ev.Meta)
}

func encodeRecordedEvent(dst []byte, e RecordedEvent) []byte {
	return appendRecordedValue(dst, e.Stream, e.Version, e.Epoch, e.Time, Event{Type: e.Type, Data: e.Data, Meta: e.Meta})
}

// decodeRecordedEvent decodes a stored event value found under position pos.
// The result does not alias b (Data and Meta share one private copy).
func decodeRecordedEvent(pos uint64, b []byte) (RecordedEvent, error) {
	d := decoder{b: bytes.Clone(b), what: "recorded event", cmd: -1, ev: -1}
	e := RecordedEvent{Position: pos}
	var err error
	if err = d.version(); err != nil {
		return RecordedEvent{}, err
	}
	if e.Stream, err = d.string("stream"); err != nil {
		return RecordedEvent{}, err
	}
	if e.Version, err = d.uvarint("version"); err != nil {
		return RecordedEvent{}, err
	}
	if e.Epoch, err = d.uvarint("epoch"); err != nil {
		return RecordedEvent{}, err
	}
	t, err := d.uvarint("time")
	if err != nil {
		return RecordedEvent{}, err
	}
	e.Time = unzigzag(t)
	if e.Type, err = d.string("type"); err != nil {
		return RecordedEvent{}, err
	}
	if e.Data, err = d.bytes("data"); err != nil {
		return RecordedEvent{}, err
	}
	if e.Meta, err = d.bytes("meta"); err != nil {
		return RecordedEvent{}, err
	}
	return e, d.end()
}

// dedupRecord remembers the result of an idempotent command (see fsm.go for
// the policy: only OK results are stored).
type dedupRecord struct {
	Time   int64 // entry time of the original command; drives expiry
	Kind   byte  // tagClaim or tagAppend
	Stream string
	Result Result // Duplicate is not stored
}

func encodeDedupRecord(dst []byte, r dedupRecord) []byte {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, zigzag(r.Time))
	dst = append(dst, r.Kind)
	dst = appendString(dst, r.Stream)
	dst = append(dst, byte(r.Result.Code))
	dst = appendString(dst, r.Result.Message)
	dst = binary.AppendUvarint(dst, r.Result.Epoch)
	dst = binary.AppendUvarint(dst, r.Result.Version)
	dst = binary.AppendUvarint(dst, r.Result.FirstPosition)
	return binary.AppendUvarint(dst, r.Result.LastPosition)
}

func decodeDedupRecord(b []byte) (dedupRecord, error) {
	d := decoder{b: b, what: "dedup record", cmd: -1, ev: -1}
	var r dedupRecord
	if err := d.version(); err != nil {
		return dedupRecord{}, err
	}
	t, err := d.uvarint("time")
	if err != nil {
		return dedupRecord{}, err
	}
	r.Time = unzigzag(t)
	if r.Kind, err = d.byte("kind"); err != nil {
		return dedupRecord{}, err
	}
	if r.Kind != tagClaim && r.Kind != tagAppend {
		return dedupRecord{}, d.fail("kind", "unknown command kind %d", r.Kind)
	}
	if r.Stream, err = d.string("stream"); err != nil {
		return dedupRecord{}, err
	}
	c, err := d.byte("code")
	if err != nil {
		return dedupRecord{}, err
	}
	r.Result.Code = Code(c)
	if r.Result.Message, err = d.string("message"); err != nil {
		return dedupRecord{}, err
	}
	for _, f := range []struct {
		name string
		v    *uint64
	}{
		{"epoch", &r.Result.Epoch},
		{"version", &r.Result.Version},
		{"first position", &r.Result.FirstPosition},
		{"last position", &r.Result.LastPosition},
	} {
		if *f.v, err = d.uvarint(f.name); err != nil {
			return dedupRecord{}, err
		}
	}
	return r, d.end()
}

// Primitives.

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, p []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

func appendID(dst []byte, id AppendID) []byte {
	if id.IsZero() {
		return append(dst, idAbsent)
	}
	dst = append(dst, idPresent)
	return append(dst, id[:]...)
}

// decoder reads one encoded object. It never panics and never reads past b.
// cmd and ev (-1 when not inside one) only serve error messages.
type decoder struct {
	b    []byte
	off  int
	what string
	cmd  int
	ev   int
}

func (d *decoder) fail(field, format string, args ...any) error {
	where := d.what
	if d.cmd >= 0 {
		where += fmt.Sprintf(": command %d", d.cmd)
	}
	if d.ev >= 0 {
		where += fmt.Sprintf(": event %d", d.ev)
	}
	return fmt.Errorf("%w: %s: %s: %s (offset %d)", ErrInvalid, where, field, fmt.Sprintf(format, args...), d.off)
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) version() error {
	v, err := d.byte("format version")
	if err != nil {
		return err
	}
	if v != formatV1 {
		d.off--
		return d.fail("format version", "unknown format version %d (want %d)", v, formatV1)
	}
	return nil
}

func (d *decoder) byte(field string) (byte, error) {
	if d.remaining() < 1 {
		return 0, d.fail(field, "truncated")
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

// uvarint reads a canonical unsigned varint: at most 10 bytes, no overflow and
// no redundant trailing zero groups.
func (d *decoder) uvarint(field string) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; ; i++ {
		if i == binary.MaxVarintLen64 {
			return 0, d.fail(field, "varint overflows 64 bits")
		}
		if d.off+i >= len(d.b) {
			return 0, d.fail(field, "truncated varint")
		}
		c := d.b[d.off+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, d.fail(field, "varint overflows 64 bits")
			}
			if i > 0 && c == 0 {
				return 0, d.fail(field, "non-canonical varint")
			}
			d.off += i + 1
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
}

// length reads a length and checks it against the remaining bytes.
func (d *decoder) length(field string) (int, error) {
	start := d.off
	n, err := d.uvarint(field + " length")
	if err != nil {
		return 0, err
	}
	if rem := d.remaining(); n > uint64(rem) {
		d.off = start
		return 0, d.fail(field, "length %d exceeds the %d remaining bytes", n, rem)
	}
	return int(n), nil
}

// count reads an element count and checks that the remaining bytes can hold
// that many elements of at least minLen bytes each.
func (d *decoder) count(field string, minLen int) (int, error) {
	start := d.off
	n, err := d.uvarint(field)
	if err != nil {
		return 0, err
	}
	if rem := d.remaining(); n > uint64(rem/minLen) {
		d.off = start
		return 0, d.fail(field, "%d elements cannot fit in the %d remaining bytes", n, rem)
	}
	return int(n), nil
}

// bytes returns a sub-slice of d.b with its capacity clipped, or nil when empty.
func (d *decoder) bytes(field string) ([]byte, error) {
	n, err := d.length(field)
	if err != nil || n == 0 {
		return nil, err
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) string(field string) (string, error) {
	n, err := d.length(field)
	if err != nil || n == 0 {
		return "", err
	}
	s := string(d.b[d.off : d.off+n])
	d.off += n
	return s, nil
}

func (d *decoder) id() (AppendID, error) {
	flag, err := d.byte("id flag")
	if err != nil {
		return AppendID{}, err
	}
	var id AppendID
	switch flag {
	case idAbsent:
		return id, nil
	case idPresent:
		if d.remaining() < len(id) {
			return id, d.fail("id", "truncated: %d of %d bytes", d.remaining(), len(id))
		}
		copy(id[:], d.b[d.off:])
		if id.IsZero() {
			return id, d.fail("id", "present but zero")
		}
		d.off += len(id)
		return id, nil
	}
	d.off--
	return id, d.fail("id flag", "unknown id flag %d", flag)
}

func (d *decoder) end() error {
	if d.remaining() != 0 {
		return d.fail("end", "%d trailing bytes", d.remaining())
	}
	return nil
}
