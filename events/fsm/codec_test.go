package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func sampleEntry() Entry {
	return Entry{
		Time: t0,
		Commands: []Command{
			{Claim: &Claim{Stream: "session-1"}},
			{Claim: &Claim{Stream: "session-2", ID: idOf(1)}},
			{Append: &Append{Stream: "session-1", Expected: Exact(7), Epoch: 3, ID: idOf(2), Events: []Event{
				{Type: "frame.sent", Data: []byte("hello"), Meta: []byte(`{"by":"x"}`)},
				{Type: "t"},
			}}},
			{Append: &Append{Stream: "ü-stream", Expected: Any(), Events: []Event{{Type: "a", Data: []byte{0}}}}},
			{Append: &Append{Stream: "n", Expected: NoStream(), Events: []Event{{Type: "a", Meta: []byte{1}}}}},
		},
	}
}

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []Entry{sampleEntry(), {}, {Time: -5}, {Time: math.MinInt64}, {Time: math.MaxInt64}} {
		b, err := EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != formatV1 {
			t.Fatalf("version byte %d", b[0])
		}
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
		}
		// The result does not alias the input.
		for i := range b {
			b[i] = 0xee
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatal("decoded entry aliases its input")
		}
	}
}

func TestEntryEncodingDetails(t *testing.T) {
	// The version of a non-exact expectation is not encoded; empty slices
	// decode as nil.
	e := Entry{Commands: []Command{{Append: &Append{Stream: "s", Expected: Expected{Kind: ExpectAny, Version: 9}, Events: []Event{{Type: "t", Data: []byte{}}}}}}}
	b, _ := EncodeEntry(e)
	got, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	a := got.Commands[0].Append
	if a.Expected != Any() || a.Events[0].Data != nil {
		t.Fatalf("%+v", a)
	}
	// Unknown expected-version kinds survive the codec (validation rejects them).
	e.Commands[0].Append.Expected = Expected{Kind: 200}
	b, _ = EncodeEntry(e)
	got, err = DecodeEntry(b)
	if err != nil || got.Commands[0].Append.Expected.Kind != 200 {
		t.Fatalf("%+v %v", got, err)
	}
	for _, c := range []Command{{}, {Claim: &Claim{}, Append: &Append{}}} {
		if _, err := EncodeEntry(Entry{Commands: []Command{c}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "command 0: exactly one of claim and append") {
			t.Fatalf("EncodeEntry(%+v): %v", c, err)
		}
	}
}

func TestDecodeEntryErrors(t *testing.T) {
	good, _ := EncodeEntry(sampleEntry())
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		in   []byte
		want string
	}{
		{nil, "entry: format version: truncated"},
		{[]byte{9}, "entry: format version: unknown format version 9 (want 1)"},
		{[]byte{1}, "entry: time: truncated varint"},
		{[]byte{1, 0x80, 0x00, 0}, "entry: time: non-canonical varint"},
		{cat([]byte{1}, bytes.Repeat([]byte{0xff}, 10), []byte{0}), "entry: time: varint overflows 64 bits"},
		{cat([]byte{1, 0}, uv(1<<60)), "entry: command count: 1152921504606846976 elements cannot fit in the 0 remaining bytes"},
		{[]byte{1, 0, 1, 7, 0, 0}, "entry: command 0: command tag: unknown command tag 7"},
		{[]byte{1, 0, 1, tagClaim, 50, 'a', 0}, "entry: command 0: stream: length 50 exceeds the 2 remaining bytes"},
		{[]byte{1, 0, 1, tagClaim, 1, 'a', 2}, "entry: command 0: id flag: unknown id flag 2"},
		{cat([]byte{1, 0, 1, tagClaim, 1, 'a', 1}, make([]byte, 16)), "entry: command 0: id: present but zero"},
		{[]byte{1, 0, 1, tagClaim, 1, 'a', 1, 5}, "entry: command 0: id: truncated: 1 of 16 bytes"},
		{[]byte{1, 0, 1, tagClaim, 1, 'a', 0, 0}, "entry: end: 1 trailing bytes"},
		{[]byte{1, 0, 1, tagAppend, 1, 's', byte(ExpectAny), 0, 0, 1, 1, 't', 9}, "entry: command 0: event 0: data: length 9 exceeds the 0 remaining bytes"},
		{[]byte{1, 0, 1, tagAppend, 1, 's', byte(ExpectAny), 0, 0, 100, 1, 't', 0}, "entry: command 0: event count: 100 elements cannot fit in the 3 remaining bytes"},
		{good[:len(good)-1], "entry: command 4: event 0: meta: length 1 exceeds the 0 remaining bytes"},
	}
	for _, tc := range cases {
		_, err := DecodeEntry(tc.in)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeEntry(%x):\n got %v\nwant ...%s", tc.in, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "events: invalid request: entry") {
			t.Errorf("error text %q", err)
		}
	}
	// Every truncation fails.
	for n := range good {
		if _, err := DecodeEntry(good[:n]); err == nil {
			t.Fatalf("truncated to %d decoded", n)
		}
	}
}

// TestDecodeAllocatesInProportion feeds inputs that claim huge counts and
// lengths: the decoders must reject them without allocating for the claim.
func TestDecodeAllocatesInProportion(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	inputs := [][]byte{
		append([]byte{1, 0}, uv(math.MaxUint64)...),
		append([]byte{1, 0, 1, tagAppend, 1, 's', byte(ExpectAny), 0, 0}, uv(1<<40)...),
		append([]byte{1, 0, 1, tagClaim}, uv(1<<40)...),
	}
	for _, in := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < 100; i++ {
			if _, err := DecodeEntry(in); err == nil {
				t.Fatalf("decoded %x", in)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 4096 {
			t.Fatalf("DecodeEntry(%x) allocated %d bytes per call", in, per)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bad := append([]byte(snapshotMagic), snapshotFormat, 0, 1, recRecord, 9, nsEvent, 0, 0, 0, 0, 0, 0, 0, 1)
	bad = append(bad, uv(maxSnapshotValueLen)...)
	if _, _, err := readSnapshot(bytes.NewReader(bad), func(_, _ []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("readSnapshot: %v", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("readSnapshot of a truncated 16 MiB value allocated %d bytes", got)
	}
}

func TestStoredValueRoundTrips(t *testing.T) {
	ev := RecordedEvent{Stream: "s", Version: 3, Position: 99, Epoch: 2, Time: -7, Type: "t", Data: []byte("d"), Meta: []byte("m")}
	b := encodeRecordedEvent(nil, ev)
	got, err := decodeRecordedEvent(99, b)
	if err != nil || !reflect.DeepEqual(got, ev) {
		t.Fatalf("%+v %v", got, err)
	}
	m := streamMeta{Version: 1 << 40, Epoch: 3}
	if got, err := decodeStreamMeta(encodeStreamMeta(nil, m)); err != nil || got != m {
		t.Fatalf("%+v %v", got, err)
	}
	st := appliedState{Index: 5, Position: math.MaxUint64}
	if got, err := decodeAppliedState(encodeAppliedState(nil, st)); err != nil || got != st {
		t.Fatalf("%+v %v", got, err)
	}
	rec := dedupRecord{Time: t0, Kind: tagAppend, Stream: "s", Result: Result{Code: OK, Epoch: 1, Version: 2, FirstPosition: 3, LastPosition: 4}}
	if got, err := decodeDedupRecord(encodeDedupRecord(nil, rec)); err != nil || got != rec {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := decodeDedupRecord([]byte{1, 0, 9}); err == nil || !strings.Contains(err.Error(), "dedup record: kind: unknown command kind 9") {
		t.Fatalf("%v", err)
	}
	if _, err := decodeStreamMeta([]byte{1, 1, 1, 0}); err == nil || !strings.Contains(err.Error(), "stream meta: end: 1 trailing bytes") {
		t.Fatalf("%v", err)
	}
}

func TestKeysDoNotCollide(t *testing.T) {
	k := keyspace{p: DefaultPrefix}
	// "a" version 0x62... must not fall inside stream "ab"'s range and vice versa.
	a := k.versionPrefix(nil, "a")
	ab := k.version(nil, "ab", 1)
	if bytes.HasPrefix(ab, a) {
		t.Fatal("stream keys collide")
	}
	if got := successor([]byte{1, 0xff}); !bytes.Equal(got, []byte{2}) {
		t.Fatalf("successor: %x", got)
	}
	if successor([]byte{0xff}) != nil {
		t.Fatal("successor of 0xff")
	}
	for _, tm := range [][2]int64{{math.MinInt64, -1}, {-1, 0}, {0, 1}, {1, math.MaxInt64}} {
		if bytes.Compare(k.expiry(nil, tm[0], AppendID{}), k.expiry(nil, tm[1], AppendID{})) >= 0 {
			t.Fatalf("expiry keys out of order for %v", tm)
		}
	}
}
