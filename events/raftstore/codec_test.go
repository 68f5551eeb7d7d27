package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func codecSamples() []*raft.Log {
	return []*raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("config")},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte{0}, Extensions: []byte{0xff},
			AppendedAt: time.Now()},
		{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogType(255),
			AppendedAt: time.Unix(-62135596800, 1)}, // one ns after the zero time
		{Index: 1 << 35, Term: 128, AppendedAt: time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC)},
		{Index: 300, Term: 2, Data: bytes.Repeat([]byte{0xab}, 300), Extensions: bytes.Repeat([]byte{1}, 128)},
		{Index: 7, Term: 7, AppendedAt: time.Unix(math.MaxInt64/2, 999_999_999)},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, want := range codecSamples() {
		enc := EncodeLog(want)
		if len(enc) != encodedLen(want) {
			t.Fatalf("index %d: encoded %d bytes, encodedLen says %d", want.Index, len(enc), encodedLen(want))
		}
		var got raft.Log
		if err := DecodeLog(enc, &got); err != nil {
			t.Fatalf("index %d: %v", want.Index, err)
		}
		if !sameLog(&got, want) {
			t.Fatalf("round trip: got %+v, want %+v", got, *want)
		}
		if re := EncodeLog(&got); !bytes.Equal(re, enc) {
			t.Fatalf("index %d: re-encoding differs:\n%x\n%x", want.Index, re, enc)
		}
		// The decoded entry does not alias the input.
		for i := range enc {
			enc[i] = 0
		}
		if !sameLog(&got, want) {
			t.Fatalf("index %d: decoded entry aliases the input", want.Index)
		}
	}
}

// withCRC replaces the last 4 bytes of rec with the checksum of the rest,
// so that a test (or the fuzzer) can reach the parser behind the checksum.
func withCRC(rec []byte) []byte {
	if len(rec) < crcLen {
		return rec
	}
	out := bytes.Clone(rec)
	body := out[:len(out)-crcLen]
	binary.LittleEndian.PutUint32(out[len(body):], crc32.Checksum(body, castagnoli))
	return out
}

func TestDecodeLogRejects(t *testing.T) {
	valid := EncodeLog(&raft.Log{Index: 5, Term: 2, Data: []byte("abc"), AppendedAt: time.Unix(10, 20)})
	// valid: 01 01 00 05 02 14 14 03 'a' 'b' 'c' 00 crc*4
	mod := func(f func(b []byte) []byte) []byte { return withCRC(f(bytes.Clone(valid))) }
	cases := []struct {
		name string
		rec  []byte
		want string
	}{
		{"empty", nil, "record is 0 bytes, shorter than the 11-byte minimum"},
		{"version", mod(func(b []byte) []byte { b[0] = 2; return b }), "unsupported record version 2"},
		{"checksum", func() []byte { b := bytes.Clone(valid); b[8] ^= 1; return b }(), "checksum mismatch"},
		{"flags", mod(func(b []byte) []byte { b[1] |= 0x80; return b }), "unknown flags 0x81"},
		{"non-minimal index", mod(func(b []byte) []byte {
			return append(append(b[:3:3], 0x85, 0x00), b[4:]...)
		}), "index at offset 3 is not minimally encoded"},
		{"nanoseconds", mod(func(b []byte) []byte {
			return append(binary.AppendUvarint(b[:6:6], 1e9), b[7:]...)
		}), "record index 5: appended-at nanoseconds 1000000000 out of range"},
		{"zero time flagged", withCRC(append(append([]byte{1, 1, 0, 5, 2},
			binary.AppendVarint(nil, -62135596800)...), 0, 0, 0, 0, 0, 0, 0)),
			"record index 5: appended-at flag set on the zero time"},
		{"data too long", mod(func(b []byte) []byte { b[7] = 0x7f; return b }), "record index 5: data length 127 exceeds the 4 bytes left"},
		{"huge data length", mod(func(b []byte) []byte {
			return append(append(b[:7:7], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), b[8:]...)
		}), "data length 18446744073709551615 exceeds"},
		{"varint overflow", mod(func(b []byte) []byte {
			return append(append(b[:4:4], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), b[5:]...)
		}), "term overflows 64 bits"},
		{"trailing", mod(func(b []byte) []byte {
			return append(append(b[:len(b)-crcLen:len(b)-crcLen], 0xee), 0, 0, 0, 0)
		}), "record index 5: 1 trailing bytes"},
		{"truncated extensions", mod(func(b []byte) []byte {
			// drop the extensions length: the body ends inside the record
			return append(b[:11:11], 0, 0, 0, 0)
		}), "extensions length truncated at offset 11"},
	}
	for _, c := range cases {
		sentinel := raft.Log{Index: 99, Data: []byte("keep")}
		l := sentinel
		err := DecodeLog(c.rec, &l)
		if err == nil || !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "raftstore: decode log: corrupt log record: ") ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if !sameLog(&l, &sentinel) {
			t.Errorf("%s: entry modified on error: %+v", c.name, l)
		}
	}
}

// TestDecodeLogEveryPrefixAndBitFlip: no truncation and no single-bit
// corruption of a record decodes.
func TestDecodeLogEveryPrefixAndBitFlip(t *testing.T) {
	for _, l := range codecSamples() {
		enc := EncodeLog(l)
		var got raft.Log
		for n := 0; n < len(enc); n++ {
			if err := DecodeLog(enc[:n], &got); err == nil {
				t.Fatalf("index %d: prefix of %d/%d bytes decoded", l.Index, n, len(enc))
			}
		}
		for i := 0; i < len(enc)*8; i++ {
			b := bytes.Clone(enc)
			b[i/8] ^= 1 << (i % 8)
			if err := DecodeLog(b, &got); err == nil {
				t.Fatalf("index %d: bit flip %d decoded", l.Index, i)
			}
		}
	}
}

// FuzzDecodeLog feeds arbitrary bytes from disk to the decoder: it never
// panics, and whatever decodes re-encodes to the same bytes. Each input is
// also tried with a repaired checksum so the fuzzer explores the parser.
func FuzzDecodeLog(f *testing.F) {
	for _, l := range codecSamples() {
		f.Add(EncodeLog(l))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		for _, in := range [][]byte{rec, withCRC(rec)} {
			var l raft.Log
			if err := DecodeLog(in, &l); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not match ErrCorrupt", err)
				}
				continue
			}
			if re := EncodeLog(&l); !bytes.Equal(re, in) {
				t.Fatalf("decoded %x as %+v, which re-encodes to %x", in, l, re)
			}
		}
	})
}
