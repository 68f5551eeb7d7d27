package fsm

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

func TestExpectedVersion(t *testing.T) {
	h := newHarness(t)

	// NoStream on a new stream creates it.
	r := h.mustOK(appendCmd("s", NoStream(), events("a", "b")...))
	if r.Version != 2 || r.FirstPosition != 1 || r.LastPosition != 2 {
		t.Fatalf("first append: %+v", r)
	}
	// NoStream on an existing stream conflicts.
	r = h.apply1(appendCmd("s", NoStream(), events("c")...))
	if r.Code != CodeConflict || r.Version != 2 {
		t.Fatalf("no-stream on existing: %+v", r)
	}
	if err := r.Err("s", NoStream(), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("Err: %v", err)
	}
	// Exact: wrong version conflicts and reports the current version.
	for _, v := range []uint64{0, 1, 3} {
		r = h.apply1(appendCmd("s", Exact(v), events("c")...))
		var ce *ConflictError
		if r.Code != CodeConflict || r.Version != 2 || !errors.As(r.Err("s", Exact(v), 0), &ce) || ce.Current != 2 {
			t.Fatalf("exact %d: %+v", v, r)
		}
		if !strings.Contains(r.Message, "expected version") {
			t.Fatalf("message: %q", r.Message)
		}
	}
	r = h.mustOK(appendCmd("s", Exact(2), events("c")...))
	if r.Version != 3 || r.FirstPosition != 3 || r.LastPosition != 3 {
		t.Fatalf("exact append: %+v", r)
	}
	// Any always succeeds.
	r = h.mustOK(appendCmd("s", Any(), events("d", "e")...))
	if r.Version != 5 || r.FirstPosition != 4 || r.LastPosition != 5 {
		t.Fatalf("any append: %+v", r)
	}
	// Exact(0) on a stream that does not exist.
	r = h.mustOK(appendCmd("t", Exact(0), events("x")...))
	if r.Version != 1 || r.FirstPosition != 6 {
		t.Fatalf("exact 0 on new stream: %+v", r)
	}
	// Any on a new stream.
	h.mustOK(appendCmd("u", Any(), events("x")...))

	info, err := h.f.Stream("s")
	if err != nil || info != (StreamInfo{Exists: true, Version: 5}) {
		t.Fatalf("Stream: %+v %v", info, err)
	}
	info, err = h.f.Stream("nope")
	if err != nil || info.Exists {
		t.Fatalf("Stream of missing: %+v %v", info, err)
	}
}

func TestClaimEpochsAndFencing(t *testing.T) {
	h := newHarness(t)

	// A claim creates the stream at version 0, epoch 1.
	r := h.mustOK(claimCmd("s"))
	if r.Epoch != 1 || r.Version != 0 {
		t.Fatalf("claim: %+v", r)
	}
	if info, _ := h.f.Stream("s"); info != (StreamInfo{Exists: true, Epoch: 1}) {
		t.Fatalf("after claim: %+v", info)
	}
	// NoStream fails after a claim; Exact(0) works.
	if r := h.apply1(appendEpoch("s", 1, NoStream(), events("a")...)); r.Code != CodeConflict {
		t.Fatalf("no-stream after claim: %+v", r)
	}
	h.mustOK(appendEpoch("s", 1, Exact(0), events("a")...))

	// A second claim fences epoch 1 and keeps the version.
	r = h.mustOK(claimCmd("s"))
	if r.Epoch != 2 || r.Version != 1 {
		t.Fatalf("second claim: %+v", r)
	}
	before := dumpData(t, h.db)
	r = h.apply1(appendEpoch("s", 1, Any(), events("b")...))
	if r.Code != CodeFenced || r.Epoch != 2 || r.Version != 1 {
		t.Fatalf("old epoch: %+v", r)
	}
	var fe *FencedError
	if err := r.Err("s", Any(), 1); !errors.As(err, &fe) || fe.Epoch != 1 || fe.Current != 2 || !errors.Is(err, ErrFenced) {
		t.Fatalf("Err: %v", err)
	}
	// Epoch 0 on a claimed stream is fenced.
	r = h.apply1(appendEpoch("s", 0, Any(), events("b")...))
	if r.Code != CodeFenced || r.Epoch != 2 {
		t.Fatalf("epoch 0 on claimed stream: %+v", r)
	}
	// An epoch from the future is invalid.
	r = h.apply1(appendEpoch("s", 3, Any(), events("b")...))
	if r.Code != CodeInvalid || !strings.Contains(r.Message, "epoch 3 was never issued") {
		t.Fatalf("future epoch: %+v", r)
	}
	// A non-zero epoch on a stream never claimed is invalid too.
	r = h.apply1(appendEpoch("new", 1, Any(), events("b")...))
	if r.Code != CodeInvalid || !strings.Contains(r.Message, "never issued") {
		t.Fatalf("epoch on unclaimed stream: %+v", r)
	}
	sameDump(t, "rejected appends", before, dumpData(t, h.db))

	// The current epoch appends, and the event records it.
	r = h.mustOK(appendEpoch("s", 2, Exact(1), events("b")...))
	evs, err := h.f.ReadStream("s", 1, 10)
	if err != nil || len(evs) != 2 || evs[0].Epoch != 1 || evs[1].Epoch != 2 {
		t.Fatalf("events: %+v %v", evs, err)
	}
	// Epoch 0 (unfenced) works while the stream was never claimed.
	h.mustOK(appendEpoch("free", 0, Any(), events("a")...))
	h.mustOK(appendEpoch("free", 0, Any(), events("a")...))
}

func TestClaimDeduplicated(t *testing.T) {
	h := newHarness(t)
	c := Command{Claim: &Claim{Stream: "s", ID: idOf(1)}}
	r1 := h.mustOK(c)
	before := dumpData(t, h.db)
	r2 := h.apply1(c)
	if !r2.Duplicate || r2.Epoch != r1.Epoch || r2.Code != OK {
		t.Fatalf("retried claim: %+v (first %+v)", r2, r1)
	}
	sameDump(t, "retried claim", before, dumpData(t, h.db))
	if r := h.mustOK(claimCmd("s")); r.Epoch != 2 {
		t.Fatalf("claim without id: %+v", r)
	}
	// The same id on an append is refused.
	r := h.apply1(appendWithID("s", idOf(1), Any(), events("a")...))
	if r.Code != CodeInvalid || !strings.Contains(r.Message, "already used by a claim") {
		t.Fatalf("id reused across kinds: %+v", r)
	}
}

func TestIdempotentAppend(t *testing.T) {
	h := newHarness(t)
	h.mustOK(appendCmd("other", Any(), events("x")...))
	c := appendWithID("s", idOf(1), Exact(0), events("a", "b")...)
	r1 := h.mustOK(c)
	before := dumpData(t, h.db)
	beforePos := h.f.LastPosition()

	// The retry returns the original result, even though its expected
	// version no longer holds, and writes nothing.
	r2 := h.apply1(c)
	want := r1
	want.Duplicate = true
	if r2 != want {
		t.Fatalf("retry: %+v, want %+v", r2, want)
	}
	sameDump(t, "retry", before, dumpData(t, h.db))
	if h.f.LastPosition() != beforePos {
		t.Fatalf("last position moved: %d", h.f.LastPosition())
	}
	// Also from a stale epoch-less writer after a claim: the id wins.
	h.mustOK(claimCmd("s"))
	if r := h.apply1(c); !r.Duplicate || r.Version != 2 {
		t.Fatalf("retry after claim: %+v", r)
	}
	// The same id on another stream is refused.
	r := h.apply1(appendWithID("elsewhere", idOf(1), Any(), events("a")...))
	if r.Code != CodeInvalid || !strings.Contains(r.Message, `already used by an append on stream "s"`) {
		t.Fatalf("id on another stream: %+v", r)
	}
	if info, _ := h.f.Stream("elsewhere"); info.Exists {
		t.Fatal("refused append created a stream")
	}
}

func TestFailedCommandsAreNotRemembered(t *testing.T) {
	h := newHarness(t)
	h.mustOK(appendCmd("s", Any(), events("a")...))
	c := appendWithID("s", idOf(7), Exact(0), events("b")...)
	if r := h.apply1(c); r.Code != CodeConflict {
		t.Fatalf("first try: %+v", r)
	}
	if n := countNS(t, h.db, nsDedup); n != 0 {
		t.Fatalf("a failed command left %d dedup records", n)
	}
	// The retry with the right version is evaluated afresh.
	c.Append.Expected = Exact(1)
	if r := h.apply1(c); r.Code != OK || r.Duplicate || r.Version != 2 {
		t.Fatalf("retry: %+v", r)
	}
}

func TestAppendIDRetention(t *testing.T) {
	h := newHarness(t)
	ret := DefaultLimits().AppendIDRetention
	c := appendWithID("s", idOf(1), Any(), events("a")...)
	r1 := h.mustOK(c)

	// At exactly the retention the record is still live.
	h.time = t0 + ret
	if r := h.apply1(c); !r.Duplicate || r.FirstPosition != r1.FirstPosition {
		t.Fatalf("at retention: %+v", r)
	}
	// One nanosecond later (by entry time) it has expired: the command is
	// applied again, and the old record and its index entry are replaced.
	h.time = t0 + ret + 1
	r := h.apply1(c)
	if r.Code != OK || r.Duplicate || r.Version != 2 {
		t.Fatalf("after retention: %+v", r)
	}
	if d, x := countNS(t, h.db, nsDedup), countNS(t, h.db, nsExpiry); d != 1 || x != 1 {
		t.Fatalf("dedup records %d, expiry entries %d, want 1 and 1", d, x)
	}
	// Much later, any entry sweeps it away.
	h.time += 2 * ret
	h.mustOK(appendCmd("s", Any(), events("b")...))
	if d, x := countNS(t, h.db, nsDedup), countNS(t, h.db, nsExpiry); d != 0 || x != 0 {
		t.Fatalf("after sweep: dedup records %d, expiry entries %d", d, x)
	}
}

func TestExpirySweepIsBounded(t *testing.T) {
	h := newHarness(t)
	ret := DefaultLimits().AppendIDRetention
	const n = 700
	var cmds []Command
	for i := 0; i < n; i++ {
		id := AppendID{1, byte(i >> 8), byte(i)}
		cmds = append(cmds, appendWithID("s", id, Any(), events("a")...))
	}
	for _, r := range h.apply(cmds...) {
		if r.Code != OK {
			t.Fatalf("%+v", r)
		}
	}
	if got := countNS(t, h.db, nsDedup); got != n {
		t.Fatalf("dedup records: %d", got)
	}
	h.time = t0 + ret + 1
	// Each one-command entry deletes at most minExpirePerEntry records.
	want := n
	for want > 0 {
		h.mustOK(appendCmd("s", Any(), events("b")...))
		want = max(0, want-minExpirePerEntry)
		if got := countNS(t, h.db, nsDedup); got != want {
			t.Fatalf("dedup records after a sweep: %d, want %d", got, want)
		}
		if got := countNS(t, h.db, nsExpiry); got != want {
			t.Fatalf("expiry entries after a sweep: %d, want %d", got, want)
		}
	}
	// Expired records still unswept never count as duplicates: checked by
	// TestAppendIDRetention (the record there is replaced before any sweep).
}

// A sweep starts at the oldest remembered id, not at the first key of the
// expiry index: the keys it deleted stay behind as tombstones until a
// compaction, and stepping over all of them on every entry made apply slow
// down without bound once a node had taken appends for longer than the
// retention (262 appends/s after 1.5 retentions in BenchmarkApplyBatchSteady,
// against 160,000 fresh). Counted in internal iterator steps, not time.
func TestExpirySweepSkipsWhatItDeleted(t *testing.T) {
	h, reg := newMetricsHarness(t)
	const n = 2000
	ret := DefaultLimits().AppendIDRetention
	// n ids one millisecond apart, then n more one retention later: each
	// entry of the second round expires about one id of the first.
	for round := range 2 {
		for i := range n {
			h.time = t0 + int64(round)*ret + int64(i)*1e6
			h.mustOK(appendWithID("s", AppendID{1, byte(round), byte(i >> 8), byte(i)}, Any(), events("a")...))
		}
	}
	got := gather(t, reg)
	steps, expired := got["switchboard_fsm_dedup_sweep_steps_total"], got["switchboard_fsm_dedup_expired_total"]
	if expired < n-2 {
		t.Fatalf("%v ids expired, want about %d", expired, n)
	}
	// Per sweep: a seek, the expired id and the first live one.
	if steps > 4*n {
		t.Fatalf("the sweeps stepped %v times for %v expired ids: they walk over deleted keys", steps, expired)
	}
}

func TestExpiredButUnsweptRecordIsIgnored(t *testing.T) {
	h := newHarness(t)
	ret := DefaultLimits().AppendIDRetention
	var cmds []Command
	for i := 0; i < 600; i++ {
		cmds = append(cmds, appendWithID("s", AppendID{2, byte(i >> 8), byte(i)}, Any(), events("a")...))
	}
	h.apply(cmds...)
	// The last id is swept only by a later entry; retrying it now must apply it again.
	h.time = t0 + ret + 1
	last := AppendID{2, byte(599 >> 8), byte(599 & 0xff)}
	r := h.apply1(appendWithID("s", last, Any(), events("a")...))
	if r.Code != OK || r.Duplicate {
		t.Fatalf("expired id: %+v", r)
	}
	// Retried again (now live) it is a duplicate of the new result.
	if r2 := h.apply1(appendWithID("s", last, Any(), events("a")...)); !r2.Duplicate || r2.FirstPosition != r.FirstPosition {
		t.Fatalf("retry: %+v", r2)
	}
}

func TestInvalidCommandsWriteNothing(t *testing.T) {
	h := newHarness(t)
	h.mustOK(appendCmd("s", Any(), events("a")...))
	l := DefaultLimits()
	big := make([]byte, l.MaxEventSize)
	many := make([]Event, l.MaxEventsPerAppend+1)
	for i := range many {
		many[i] = Event{Type: "t"}
	}
	total := make([]Event, 5)
	for i := range total {
		total[i] = Event{Type: "t", Data: make([]byte, l.MaxEventSize-1)}
	}
	cases := []struct {
		name string
		cmd  Command
		code Code
		msg  string
	}{
		{"empty stream", appendCmd("", Any(), events("a")...), CodeInvalid, "stream id is empty"},
		{"long stream", appendCmd(strings.Repeat("x", 257), Any(), events("a")...), CodeInvalid, "stream id is 257 bytes, limit 256"},
		{"control", appendCmd("a\nb", Any(), events("a")...), CodeInvalid, "stream id has control character U+000A at byte 1"},
		{"utf8", appendCmd("a\xffb", Any(), events("a")...), CodeInvalid, "stream id is not valid UTF-8"},
		{"unset expected", appendCmd("s", Expected{}, events("a")...), CodeInvalid, "expected version: unknown form 0"},
		{"unknown expected", appendCmd("s", Expected{Kind: 9}, events("a")...), CodeInvalid, "expected version: unknown form 9"},
		{"no events", appendCmd("s", Any()), CodeInvalid, "events: append has no events"},
		{"too many", appendCmd("s", Any(), many...), CodeTooLarge, "events: append has 1001 events, limit 1000"},
		{"empty type", appendCmd("s", Any(), Event{}), CodeInvalid, "event 0: type is empty"},
		{"bad type", appendCmd("s", Any(), Event{Type: "ok"}, Event{Type: "b\tad"}), CodeInvalid, "event 1: type has byte 0x09 at offset 1"},
		{"big event", appendCmd("s", Any(), Event{Type: "a"}, Event{Type: "t", Data: big}), CodeTooLarge, "event 1 is 1048577 bytes, limit 1048576"},
		{"big append", appendCmd("s", Any(), total...), CodeTooLarge, "append is 5242880 bytes, limit 4194304"},
		{"bad claim", claimCmd(""), CodeInvalid, "stream id is empty"},
		{"neither", Command{}, CodeInvalid, "exactly one of claim and append must be set, neither is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpData(t, h.db)
			pos := h.f.LastPosition()
			var r Result
			if tc.cmd.Claim == nil && tc.cmd.Append == nil {
				// Not encodable (EncodeEntry refuses it, DecodeEntry never
				// yields it): only the proposer's check applies.
				r = resultOf(ValidateCommand(tc.cmd, l))
			} else {
				r = h.apply1(tc.cmd)
			}
			if r.Code != tc.code || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", r.Code, r.Message, tc.code, tc.msg)
			}
			sameDump(t, tc.name, before, dumpData(t, h.db))
			if h.f.LastPosition() != pos {
				t.Fatal("last position moved")
			}
		})
	}
}

func TestCommandsInOneEntrySeeEachOther(t *testing.T) {
	h := newHarness(t)
	rs := h.apply(
		claimCmd("s"),
		appendEpoch("s", 1, Exact(0), events("a")...),
		appendEpoch("s", 1, Exact(1), events("b", "c")...),
		appendWithID("t", idOf(1), NoStream(), events("x")...),
		appendWithID("t", idOf(1), NoStream(), events("x")...), // duplicate within the entry
	)
	want := []Result{
		{Code: OK, Epoch: 1},
		{Code: OK, Epoch: 1, Version: 1, FirstPosition: 1, LastPosition: 1},
		{Code: OK, Epoch: 1, Version: 3, FirstPosition: 2, LastPosition: 3},
		{Code: OK, Version: 1, FirstPosition: 4, LastPosition: 4},
		{Code: OK, Version: 1, FirstPosition: 4, LastPosition: 4, Duplicate: true},
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Fatalf("result %d: %+v, want %+v", i, rs[i], want[i])
		}
	}
	// Across entries of one raft batch too.
	resp := h.f.ApplyBatch([]*raft.Log{
		h.log(appendEpoch("s", 1, Exact(3), events("d")...)),
		h.log(appendEpoch("s", 1, Exact(4), events("e")...)),
	})
	for i, r := range resp {
		if rs := h.results(r); rs[0].Code != OK {
			t.Fatalf("entry %d: %+v", i, rs[0])
		}
	}
	if info, _ := h.f.Stream("s"); info.Version != 5 {
		t.Fatalf("version %d", info.Version)
	}
}

func TestFailedCommandDoesNotAffectOthers(t *testing.T) {
	h := newHarness(t)
	rs := h.apply(
		appendCmd("a", Exact(0), events("1")...),
		appendCmd("a", Exact(5), events("2")...), // conflict
		appendCmd("", Any(), events("3")...),     // invalid
		appendCmd("b", Any(), events("4", "5")...),
	)
	codes := []Code{OK, CodeConflict, CodeInvalid, OK}
	for i, c := range codes {
		if rs[i].Code != c {
			t.Fatalf("result %d: %+v", i, rs[i])
		}
	}
	if rs[3].FirstPosition != 2 || rs[3].LastPosition != 3 {
		t.Fatalf("positions not dense after a failure: %+v", rs[3])
	}
	all, err := h.f.ReadAll(0, 100, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("ReadAll: %d %v", len(all), err)
	}
}

func TestPositionsDenseAcrossStreams(t *testing.T) {
	h := newHarness(t)
	streams := []string{"a", "b", "c"}
	versions := map[string]uint64{}
	var logs []*raft.Log
	for i := 0; i < 30; i++ {
		s := streams[i%3]
		n := 1 + i%4
		evs := make([]Event, n)
		for j := range evs {
			evs[j] = Event{Type: "e", Data: []byte{byte(i), byte(j)}}
		}
		logs = append(logs, h.log(appendCmd(s, Exact(versions[s]), evs...)))
		versions[s] += uint64(n)
	}
	for _, r := range h.f.ApplyBatch(logs) {
		if h.results(r)[0].Code != OK {
			t.Fatalf("%+v", r)
		}
	}
	all, err := h.f.ReadAll(1, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	for i, e := range all {
		if e.Position != uint64(i+1) {
			t.Fatalf("event %d has position %d", i, e.Position)
		}
		seen[e.Stream]++
		if e.Version != seen[e.Stream] {
			t.Fatalf("stream %s: version %d, want %d", e.Stream, e.Version, seen[e.Stream])
		}
		if e.Time != t0 {
			t.Fatalf("time %d", e.Time)
		}
	}
	if uint64(len(all)) != h.f.LastPosition() {
		t.Fatalf("%d events, last position %d", len(all), h.f.LastPosition())
	}
	for s, v := range versions {
		if seen[s] != v {
			t.Fatalf("stream %s: %d events, want %d", s, seen[s], v)
		}
	}
}

func TestReapplyIsNoop(t *testing.T) {
	h := newHarness(t)
	var logs []*raft.Log
	for i := 0; i < 5; i++ {
		logs = append(logs, h.log(appendCmd("s", Any(), events("a")...)))
	}
	h.f.ApplyBatch(logs)
	before := dump(t, h.db)
	for i, r := range h.f.ApplyBatch(logs) {
		if r != nil {
			t.Fatalf("re-applied log %d answered %v", i, r)
		}
	}
	sameDump(t, "re-apply", before, dump(t, h.db))

	// A batch overlapping the applied index applies only the new part.
	next := h.log(appendCmd("s", Exact(5), events("b")...))
	resp := h.f.ApplyBatch([]*raft.Log{logs[3], logs[4], next})
	if resp[0] != nil || resp[1] != nil || h.results(resp[2])[0].Code != OK {
		t.Fatalf("overlapping batch: %v", resp)
	}
	if h.f.AppliedIndex() != next.Index || h.f.LastPosition() != 6 {
		t.Fatalf("applied %d, last position %d", h.f.AppliedIndex(), h.f.LastPosition())
	}
}

func TestNonCommandLogsAdvanceAppliedIndex(t *testing.T) {
	h := newHarness(t)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration, Data: []byte("cfg")},
		{Index: 2, Type: raft.LogNoop},
		{Index: 3, Type: raft.LogBarrier},
	}
	h.next = 4
	for i, r := range h.f.ApplyBatch(logs) {
		if r != nil {
			t.Fatalf("log %d answered %v", i, r)
		}
	}
	if h.f.AppliedIndex() != 3 {
		t.Fatalf("applied index %d", h.f.AppliedIndex())
	}
	st, err := h.f.readApplied(h.db)
	if err != nil || st.Index != 3 {
		t.Fatalf("stored applied index %d %v", st.Index, err)
	}
	if len(dumpData(t, h.db)) != 0 {
		t.Fatal("non-command logs wrote data")
	}
}

func TestUndecodableEntry(t *testing.T) {
	h := newHarness(t)
	l := &raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{formatV1, 0, 5}}
	resp := h.f.ApplyBatch([]*raft.Log{l})
	err, ok := resp[0].(error)
	if !ok || !errors.Is(err, ErrInvalid) {
		t.Fatalf("response %v", resp[0])
	}
	if h.f.AppliedIndex() != 1 || len(dumpData(t, h.db)) != 0 {
		t.Fatalf("applied %d", h.f.AppliedIndex())
	}
}

func TestReads(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 10; i++ {
		h.mustOK(appendCmd("s", Any(), Event{Type: "e", Data: []byte{byte(i)}, Meta: []byte("m")}))
		h.mustOK(appendCmd("t", Any(), Event{Type: "f", Data: make([]byte, 100)}))
	}
	evs, err := h.f.ReadStream("s", 4, 3)
	if err != nil || len(evs) != 3 {
		t.Fatalf("ReadStream: %d %v", len(evs), err)
	}
	for i, e := range evs {
		v := uint64(4 + i)
		if e.Stream != "s" || e.Version != v || e.Position != 2*v-1 || e.Data[0] != byte(v-1) || string(e.Meta) != "m" || e.Type != "e" {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	// The result does not alias storage.
	evs[0].Data[0] = 99
	again, _ := h.f.ReadStream("s", 4, 1)
	if again[0].Data[0] != 3 {
		t.Fatal("ReadStream result aliases storage")
	}
	if evs, _ := h.f.ReadStream("s", 0, 100); len(evs) != 10 {
		t.Fatalf("from 0: %d", len(evs))
	}
	if evs, _ := h.f.ReadStream("s", 11, 100); len(evs) != 0 {
		t.Fatalf("past the end: %d", len(evs))
	}
	if evs, err := h.f.ReadStream("missing", 1, 100); err != nil || len(evs) != 0 {
		t.Fatalf("missing stream: %v %v", evs, err)
	}
	// A stream whose id is a prefix of another's sees only its own events.
	h.mustOK(appendCmd("ss", Any(), events("x")...))
	if evs, _ := h.f.ReadStream("s", 1, 100); len(evs) != 10 {
		t.Fatalf("prefix stream: %d", len(evs))
	}
	if _, err := h.f.ReadStream("", 1, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty id: %v", err)
	}
	if _, err := h.f.ReadStream("s", 1, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("max 0: %v", err)
	}

	// Global order with max and maxBytes.
	all, err := h.f.ReadAll(5, 4, 0)
	if err != nil || len(all) != 4 || all[0].Position != 5 || all[3].Position != 8 {
		t.Fatalf("ReadAll: %+v %v", all, err)
	}
	// Position 5 is a 3-byte "s" event, 6 a 101-byte "t" event.
	all, _ = h.f.ReadAll(5, 100, 103)
	if len(all) != 1 {
		t.Fatalf("maxBytes 103: %d events", len(all))
	}
	all, _ = h.f.ReadAll(5, 100, 104)
	if len(all) != 2 {
		t.Fatalf("maxBytes 104: %d events", len(all))
	}
	// At least one event even if it exceeds maxBytes.
	all, _ = h.f.ReadAll(6, 100, 1)
	if len(all) != 1 || all[0].Position != 6 {
		t.Fatalf("maxBytes 1: %+v", all)
	}
	if all, _ := h.f.ReadAll(22, 10, 0); len(all) != 0 {
		t.Fatalf("past the end: %d", len(all))
	}
	if _, err := h.f.ReadAll(1, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("max 0: %v", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	h := newHarness(t)
	h.mustOK(claimCmd("s"))
	h.mustOK(Command{Append: &Append{Stream: "s", Epoch: 1, Expected: Exact(0), ID: idOf(1), Events: events("a", "b")}})
	h.f.ApplyBatch([]*raft.Log{{Index: h.next, Type: raft.LogBarrier}})
	h.next++
	before := dump(t, h.db)
	applied, pos := h.f.AppliedIndex(), h.f.LastPosition()
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}

	db, _ := openDB(t, h.fs)
	f := newFSM(t, db)
	sameDump(t, "reopen", before, dump(t, db))
	if f.AppliedIndex() != applied || f.LastPosition() != pos || applied != 3 || pos != 2 {
		t.Fatalf("applied %d (want %d), last position %d (want %d)", f.AppliedIndex(), applied, f.LastPosition(), pos)
	}
	evs, err := f.ReadStream("s", 1, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v %v", evs, err)
	}
	// Dedup and versions survive: the retry is a duplicate, the next append continues.
	h2 := &harness{t: t, db: db, f: f, next: h.next, time: t0}
	if r := h2.apply1(Command{Append: &Append{Stream: "s", Epoch: 1, Expected: Exact(0), ID: idOf(1), Events: events("a", "b")}}); !r.Duplicate {
		t.Fatalf("retry after reopen: %+v", r)
	}
	if r := h2.mustOK(appendEpoch("s", 1, Exact(2), events("c")...)); r.FirstPosition != 3 {
		t.Fatalf("after reopen: %+v", r)
	}
}

func TestSyncWritesOption(t *testing.T) {
	db, _ := openDB(t, nil)
	f, err := New(db, DefaultPrefix, DefaultLimits(), Options{SyncWrites: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, f: f, next: 1, time: t0}
	h.mustOK(appendCmd("s", Any(), events("a")...))
	if f.writeOpts != pebble.Sync {
		t.Fatal("SyncWrites not honoured")
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	db, _ := openDB(t, nil)
	if _, err := New(nil, DefaultPrefix, DefaultLimits(), Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil db: %v", err)
	}
	if _, err := New(db, 0xff, DefaultLimits(), Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("prefix 0xff: %v", err)
	}
	l := DefaultLimits()
	l.MaxEventSize = 0
	l.AppendIDRetention = 5
	_, err := New(db, DefaultPrefix, l, Options{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "max_event_size") || !strings.Contains(err.Error(), "append_id_retention: 5ns") {
		t.Fatalf("bad limits: %v", err)
	}
}

func TestPrefixIsolation(t *testing.T) {
	db, _ := openDB(t, nil)
	// Keys of other prefixes (the raft log at 0x01, something at 0x03) are never touched.
	for _, k := range [][]byte{{0x01, 'x'}, {0x03}, {0x02 - 1, 0xff, 0xff}} {
		if err := db.Set(k, []byte("keep"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, db: db, f: newFSM(t, db), next: 1, time: t0}
	h.mustOK(appendCmd("s", Any(), events("a")...))
	snap := snapshotBytes(t, h.f)
	if err := h.f.Restore(nopCloser(snap)); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{{0x01, 'x'}, {0x03}, {0x02 - 1, 0xff, 0xff}} {
		v, c, err := db.Get(k)
		if err != nil || string(v) != "keep" {
			t.Fatalf("key %x: %q %v", k, v, err)
		}
		c.Close()
	}
}

func TestMetrics(t *testing.T) {
	h, reg := newMetricsHarness(t)
	f := h.f
	// A second FSM on the same registry reuses the collectors.
	db2, _ := openDB(t, nil)
	if _, err := New(db2, DefaultPrefix, DefaultLimits(), Options{Registerer: reg}); err != nil {
		t.Fatalf("second FSM: %v", err)
	}
	c := appendWithID("s", idOf(1), Any(), Event{Type: "ab", Data: []byte("cd")})
	h.apply(c, c, appendCmd("s", Exact(9), events("x")...))
	sink := &memSink{}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	got := gather(t, reg)
	if got["switchboard_fsm_last_snapshot_bytes"] != float64(sink.Len()) || got["switchboard_fsm_last_snapshot_seconds"] <= 0 {
		t.Errorf("last snapshot: %v bytes, %v s; the sink got %d bytes", got["switchboard_fsm_last_snapshot_bytes"],
			got["switchboard_fsm_last_snapshot_seconds"], sink.Len())
	}
	want := map[string]float64{
		"switchboard_fsm_commands_applied_total{ok}":       2,
		"switchboard_fsm_commands_applied_total{conflict}": 1,
		"switchboard_fsm_events_appended_total":            1,
		"switchboard_fsm_event_bytes_appended_total":       4,
		"switchboard_fsm_dedup_hits_total":                 1,
		"switchboard_fsm_apply_batch_logs":                 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestEntryTimeExtremes(t *testing.T) {
	h := newHarness(t)
	for i, tm := range []int64{math.MinInt64, -1, 0, math.MaxInt64} {
		h.time = tm
		r := h.mustOK(appendWithID("s", AppendID{9, byte(i)}, Any(), events("a")...))
		evs, _ := h.f.ReadStream("s", r.Version, 1)
		if evs[0].Time != tm {
			t.Fatalf("time %d stored as %d", tm, evs[0].Time)
		}
	}
}

// One version entry covers a whole append: a stream written by appends of
// 3, 1 and 4 events (interleaved with another stream's) has three entries,
// and a read from any version with any max returns exactly the events from
// that version on, in order, across entries.
func TestReadStreamAcrossMultiEventAppends(t *testing.T) {
	h := newHarness(t)
	sizes := []int{3, 1, 4}
	total := 0
	for i, n := range sizes {
		evs := make([]Event, n)
		for j := range evs {
			evs[j] = Event{Type: "e", Data: []byte{byte(total + j + 1)}}
		}
		h.mustOK(appendCmd("s", Any(), evs...))
		h.mustOK(appendCmd("other", Any(), events(fmt.Sprint(i), "x")...))
		total += n
	}
	if got := countNS(t, h.db, nsVersion); got != 2*len(sizes) {
		t.Fatalf("%d version entries, want one per append (%d)", got, 2*len(sizes))
	}
	for from := uint64(0); from <= uint64(total)+1; from++ {
		for limit := 1; limit <= total+1; limit++ {
			evs, err := h.f.ReadStream("s", from, limit)
			if err != nil {
				t.Fatalf("from %d max %d: %v", from, limit, err)
			}
			first := max(from, 1)
			want := 0
			if first <= uint64(total) {
				want = min(limit, total-int(first)+1)
			}
			if len(evs) != want {
				t.Fatalf("from %d max %d: %d events, want %d", from, limit, len(evs), want)
			}
			for i, e := range evs {
				v := first + uint64(i)
				if e.Stream != "s" || e.Version != v || e.Data[0] != byte(v) {
					t.Fatalf("from %d max %d: event %d is %s v%d data %v, want s v%d", from, limit, i, e.Stream, e.Version, e.Data, v)
				}
			}
		}
	}
	if evs, err := h.f.ReadStream("s", math.MaxUint64, 10); err != nil || len(evs) != 0 {
		t.Fatalf("from the largest version: %v %v", evs, err)
	}
}

func TestVersionEntryCodec(t *testing.T) {
	for _, c := range []struct{ pos, n uint64 }{{1, 1}, {7, 2}, {1 << 40, 300}, {math.MaxUint64 - 9, 10}} {
		v := appendVersionEntry(nil, c.pos, c.n)
		if c.n == 1 && len(v) != 8 {
			t.Errorf("an entry of one event has %d bytes, want 8 (the per-event form)", len(v))
		}
		pos, n, err := decodeVersionEntry(v)
		if err != nil || pos != c.pos || n != c.n {
			t.Errorf("%d events at %d: decoded %d at %d, %v", c.n, c.pos, n, pos, err)
		}
	}
	for _, bad := range []struct {
		v    []byte
		want string
	}{
		{[]byte{0, 0, 0, 0, 0, 0, 1}, "at least 8"},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0}, "position 0"},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 1}, "only when over 1"},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 0x80}, "does not decode"},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0}, "after its event count"},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 0x82, 0x00}, "shortest form"},
		{appendVersionEntry(nil, math.MaxUint64, 2), "overflow"},
	} {
		if _, _, err := decodeVersionEntry(bad.v); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%x: %v, want an error with %q", bad.v, err, bad.want)
		}
	}
}
