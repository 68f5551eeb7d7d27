package fsm

// Key layout. Every key starts with the FSM's one-byte prefix P (0x02 by
// convention; the raft log store uses 0x01 in the same Pebble DB), then a
// namespace byte:
//
//	P 'd' appendID(16)                     → dedup record
//	P 'g' position(8 BE)                   → recorded event (global order)
//	P 'm' 'a'                              → applied state {applied index, last position}
//	P 'm' 'r'                              → restore-in-progress marker
//	P 's' streamkey                        → stream meta {version, epoch}
//	P 't' time(8 BE, sign-flipped) appendID(16) → empty (dedup expiry index)
//	P 'v' streamkey version(8 BE)          → version entry
//
// A version entry locates the events of one append: version is the first
// event's version, the value its position (8 BE) followed, when the append
// holds n > 1 events, by uvarint(n); those events have the next n versions
// and the next n positions. (Stores written before entries covered whole
// appends hold one 8-byte entry per event, which reads the same way.)
//
// streamkey = uvarint(len(stream)) + stream, so that no stream's keys are a
// prefix of another stream's keys. Every iterator is bounded to one namespace
// or one stream.

import (
	"encoding/binary"
	"fmt"
)

const (
	nsDedup   byte = 'd'
	nsEvent   byte = 'g'
	nsMeta    byte = 'm'
	nsStream  byte = 's'
	nsExpiry  byte = 't'
	nsVersion byte = 'v'

	metaApplied byte = 'a'
	metaRestore byte = 'r'
)

// keyspace builds keys under one prefix. The append-style methods write into
// dst so that apply can reuse one scratch buffer (Pebble copies keys on Set).
type keyspace struct{ p byte }

func (k keyspace) ns(dst []byte, ns byte) []byte { return append(dst, k.p, ns) }

func (k keyspace) applied() []byte { return []byte{k.p, nsMeta, metaApplied} }
func (k keyspace) marker() []byte  { return []byte{k.p, nsMeta, metaRestore} }

// lower and upper bound the whole keyspace.
func (k keyspace) lower() []byte { return []byte{k.p} }
func (k keyspace) upper() []byte { return []byte{k.p + 1} } // New rejects prefix 0xff

func appendStreamKey(dst []byte, stream string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(stream)))
	return append(dst, stream...)
}

func (k keyspace) stream(dst []byte, stream string) []byte {
	return appendStreamKey(k.ns(dst, nsStream), stream)
}

// versionPrefix is the prefix of all version keys of a stream.
func (k keyspace) versionPrefix(dst []byte, stream string) []byte {
	return appendStreamKey(k.ns(dst, nsVersion), stream)
}

func (k keyspace) version(dst []byte, stream string, v uint64) []byte {
	return binary.BigEndian.AppendUint64(k.versionPrefix(dst, stream), v)
}

func (k keyspace) event(dst []byte, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(k.ns(dst, nsEvent), pos)
}

func (k keyspace) dedup(dst []byte, id AppendID) []byte {
	return append(k.ns(dst, nsDedup), id[:]...)
}

func (k keyspace) expiry(dst []byte, t int64, id AppendID) []byte {
	dst = binary.BigEndian.AppendUint64(k.ns(dst, nsExpiry), orderedTime(t))
	return append(dst, id[:]...)
}

// appendVersionEntry appends the value of a version entry for n >= 1
// events from position pos.
func appendVersionEntry(dst []byte, pos, n uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, pos)
	if n > 1 {
		dst = binary.AppendUvarint(dst, n)
	}
	return dst
}

// decodeVersionEntry decodes a version entry's value into its first
// position and number of events.
func decodeVersionEntry(v []byte) (pos, n uint64, err error) {
	if len(v) < 8 {
		return 0, 0, fmt.Errorf("version entry has %d bytes, want at least 8", len(v))
	}
	pos, n = binary.BigEndian.Uint64(v), 1
	if len(v) > 8 {
		var k int
		n, k = binary.Uvarint(v[8:])
		switch {
		case k <= 0:
			return 0, 0, fmt.Errorf("version entry's event count does not decode")
		case k != len(binary.AppendUvarint(nil, n)):
			return 0, 0, fmt.Errorf("version entry's event count is not in its shortest form")
		case 8+k != len(v):
			return 0, 0, fmt.Errorf("version entry has %d bytes after its event count", len(v)-8-k)
		case n < 2:
			return 0, 0, fmt.Errorf("version entry's event count is %d, must be written only when over 1", n)
		}
	}
	if pos == 0 {
		return 0, 0, fmt.Errorf("version entry has position 0")
	}
	if pos+n-1 < pos {
		return 0, 0, fmt.Errorf("version entry's %d events from position %d overflow", n, pos)
	}
	return pos, n, nil
}

// orderedTime maps int64 to uint64 preserving order, so that big-endian keys
// sort by time even for (insane) negative clocks.
func orderedTime(t int64) uint64 { return uint64(t) ^ (1 << 63) }

func unorderedTime(u uint64) int64 { return int64(u ^ (1 << 63)) }

// successor returns the smallest key greater than every key with prefix p, or
// nil if there is none (p is all 0xff).
func successor(p []byte) []byte {
	s := append([]byte(nil), p...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// checkKey validates a key relative to the prefix (without the prefix byte),
// as carried in a snapshot. It accepts only the namespaces a snapshot holds
// (not meta) with their exact shapes.
func checkKey(rel []byte) error {
	if len(rel) == 0 {
		return fmt.Errorf("empty key")
	}
	body := rel[1:]
	switch rel[0] {
	case nsDedup:
		if len(body) != len(AppendID{}) {
			return fmt.Errorf("dedup key has %d bytes, want %d", len(body), len(AppendID{}))
		}
	case nsEvent:
		if len(body) != 8 {
			return fmt.Errorf("event key has %d bytes, want 8", len(body))
		}
		if binary.BigEndian.Uint64(body) == 0 {
			return fmt.Errorf("event key has position 0")
		}
	case nsExpiry:
		if len(body) != 8+len(AppendID{}) {
			return fmt.Errorf("expiry key has %d bytes, want %d", len(body), 8+len(AppendID{}))
		}
	case nsStream:
		rest, err := checkStreamKey(body)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return fmt.Errorf("stream key has %d trailing bytes", len(rest))
		}
	case nsVersion:
		rest, err := checkStreamKey(body)
		if err != nil {
			return err
		}
		if len(rest) != 8 {
			return fmt.Errorf("version key has %d bytes after the stream, want 8", len(rest))
		}
		if binary.BigEndian.Uint64(rest) == 0 {
			return fmt.Errorf("version key has version 0")
		}
	case nsMeta:
		return fmt.Errorf("meta key in snapshot records")
	default:
		return fmt.Errorf("unknown key namespace %q", rel[0])
	}
	return nil
}

func checkStreamKey(b []byte) (rest []byte, err error) {
	d := decoder{b: b, what: "stream key", cmd: -1, ev: -1}
	n, err := d.length("stream")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > maxStreamIDBytes {
		return nil, fmt.Errorf("stream key has a stream id of %d bytes", n)
	}
	return b[d.off+n:], nil
}
