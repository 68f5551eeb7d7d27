package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"time"

	"github.com/hashicorp/raft"
)

// Record format, version 1 (all varints are the minimal encoding of
// encoding/binary's Uvarint / Varint):
//
//	version    1 byte   = 1
//	flags      1 byte   bit 0: AppendedAt present; other bits must be 0
//	type       1 byte   raft.LogType
//	index      uvarint
//	term       uvarint
//	[seconds   varint   AppendedAt.Unix()          if flag bit 0]
//	[nanos     uvarint  AppendedAt.Nanosecond()    if flag bit 0]
//	data len   uvarint, then the bytes of Data
//	ext len    uvarint, then the bytes of Extensions
//	crc        4 bytes  little-endian CRC-32C (Castagnoli) of all bytes above
//
// The encoding is canonical: a byte string that DecodeLog accepts is exactly
// what EncodeLog produces for the decoded entry. A zero AppendedAt is encoded
// by leaving the flag clear; nil and empty Data (or Extensions) encode alike
// and decode as nil.
const (
	codecVersion1  byte = 1
	flagAppendedAt byte = 1 << 0
	knownFlags          = flagAppendedAt
	crcLen              = 4
	// minRecordLen is version, flags, type, index, term, two empty lengths
	// and the checksum.
	minRecordLen = 3 + 1 + 1 + 1 + 1 + crcLen
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is matched (errors.Is) by every error reporting a log record
// that fails its checksum or does not parse. Such an error names the index
// (when known) and the problem.
var ErrCorrupt = errors.New("corrupt log record")

// EncodeLog returns the binary encoding of l (format version 1, checksummed).
// It never fails; every raft.Log value has an encoding. DecodeLog reverses it.
func EncodeLog(l *raft.Log) []byte {
	return appendLog(make([]byte, 0, encodedLen(l)), l)
}

// DecodeLog decodes a record produced by EncodeLog into l, overwriting every
// field of l. Data and Extensions are copied: l never aliases b, so b may be
// reused or released afterwards. On error l is left unchanged and the error
// matches ErrCorrupt. DecodeLog never panics, whatever b holds.
func DecodeLog(b []byte, l *raft.Log) error {
	if reason := decodeLog(b, l); reason != "" {
		return fmt.Errorf("raftstore: decode log: %w: %s", ErrCorrupt, reason)
	}
	return nil
}

// encodedLen returns the exact length of l's encoding.
func encodedLen(l *raft.Log) int {
	n := 3 + uvarintLen(l.Index) + uvarintLen(l.Term)
	if !l.AppendedAt.IsZero() {
		n += uvarintLen(zigzag(l.AppendedAt.Unix())) + uvarintLen(uint64(l.AppendedAt.Nanosecond()))
	}
	n += uvarintLen(uint64(len(l.Data))) + len(l.Data)
	n += uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
	return n + crcLen
}

// appendLog appends l's encoding to dst and returns the extended slice.
func appendLog(dst []byte, l *raft.Log) []byte {
	start := len(dst)
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	dst = append(dst, codecVersion1, flags, byte(l.Type))
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	if flags&flagAppendedAt != 0 {
		dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
	}
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeLog decodes b into l and returns "" on success, or a description of
// the problem (l untouched). Every length is checked against the bytes left
// before it is used, as an unsigned comparison, so no input can panic.
func decodeLog(b []byte, l *raft.Log) string {
	if len(b) < minRecordLen {
		return fmt.Sprintf("record is %d bytes, shorter than the %d-byte minimum", len(b), minRecordLen)
	}
	if b[0] != codecVersion1 {
		return fmt.Sprintf("unsupported record version %d", b[0])
	}
	body := b[:len(b)-crcLen]
	stored := binary.LittleEndian.Uint32(b[len(body):])
	if computed := crc32.Checksum(body, castagnoli); stored != computed {
		return fmt.Sprintf("checksum mismatch (stored %08x, computed %08x over %d bytes)", stored, computed, len(body))
	}
	flags := body[1]
	if flags&^knownFlags != 0 {
		return fmt.Sprintf("unknown flags %#02x", flags)
	}
	d := decoder{b: body, pos: 3}
	var out raft.Log
	out.Type = raft.LogType(body[2])
	out.Index = d.uvarint("index")
	out.Term = d.uvarint("term")
	if d.err != "" {
		return d.err
	}
	at := fmt.Sprintf("record index %d: ", out.Index)
	if flags&flagAppendedAt != 0 {
		sec := d.varint("appended-at seconds")
		nsec := d.uvarint("appended-at nanoseconds")
		if d.err != "" {
			return at + d.err
		}
		if nsec >= uint64(time.Second) {
			return fmt.Sprintf("%sappended-at nanoseconds %d out of range", at, nsec)
		}
		out.AppendedAt = time.Unix(sec, int64(nsec))
		if out.AppendedAt.IsZero() {
			return at + "appended-at flag set on the zero time"
		}
	}
	out.Data = d.bytes("data")
	out.Extensions = d.bytes("extensions")
	if d.err != "" {
		return at + d.err
	}
	if rest := len(body) - d.pos; rest != 0 {
		return fmt.Sprintf("%s%d trailing bytes", at, rest)
	}
	*l = out
	return ""
}

// decoder reads fields from b; after the first problem it records err and
// every later read returns zero values.
type decoder struct {
	b   []byte
	pos int
	err string
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != "" {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.pos:])
	switch {
	case n == 0:
		d.err = fmt.Sprintf("%s truncated at offset %d", field, d.pos)
		return 0
	case n < 0:
		d.err = fmt.Sprintf("%s overflows 64 bits at offset %d", field, d.pos)
		return 0
	case n != uvarintLen(v):
		d.err = fmt.Sprintf("%s at offset %d is not minimally encoded", field, d.pos)
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	return int64(u>>1) ^ -int64(u&1)
}

// bytes reads a length-prefixed byte string and returns a copy of it (nil
// when empty).
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != "" {
		return nil
	}
	if rest := uint64(len(d.b) - d.pos); n > rest {
		d.err = fmt.Sprintf("%s length %d exceeds the %d bytes left", field, n, rest)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	d.pos += copy(out, d.b[d.pos:])
	return out
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

// zigzag maps a signed value to the unsigned value binary.AppendVarint
// encodes.
func zigzag(v int64) uint64 {
	return uint64(v<<1) ^ uint64(v>>63)
}
