package projections

import "encoding/binary"

// Key layout of the views database (one Pebble database per node, nothing
// else in it):
//
//	0x00 'm' name            → active generation (8, BE) + layout version (4, BE)
//	0x00 'c' name 0x00 gen   → checkpoint: last position folded (8, BE)
//	0x01 name 0x00 gen key   → a row of the projection, key chosen by it
//
// Names never contain 0x00 (see nameRE), so no name's keys are a prefix of
// another's.
const (
	spaceMeta byte = 0x00
	spaceRows byte = 0x01
)

func metaKey(name string) []byte {
	return append([]byte{spaceMeta, 'm'}, name...)
}

func checkpointKey(name string, gen uint64) []byte {
	k := append([]byte{spaceMeta, 'c'}, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, gen)
}

func rowPrefix(name string, gen uint64) []byte {
	k := append([]byte{spaceRows}, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, gen)
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (nil when there is none: p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func encodeU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
