package fsm

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func nopCloser(b []byte) *readCloser { return &readCloser{Reader: bytes.NewReader(b)} }

// populate gives h a bit of every kind of state.
func populate(h *harness, streams ...string) {
	h.t.Helper()
	for i, s := range streams {
		h.mustOK(claimCmd(s))
		h.mustOK(Command{Append: &Append{Stream: s, Epoch: 1, Expected: Exact(0), ID: idOf(byte(i)), Events: events("a", "b")}})
		h.mustOK(appendEpoch(s, 1, Any(), Event{Type: "big", Data: bytes.Repeat([]byte{byte(i)}, 300)}))
	}
	h.mustOK(appendCmd(streams[0]+"-free", Any(), events("c")...))
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha", "beta", "gamma")
	sink := &memSink{}
	s, err := src.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
	s.Release() // idempotent
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v cancelled %v", sink.closed, sink.cancelled)
	}

	dst := newHarness(t)
	rc := nopCloser(sink.Bytes())
	if err := dst.f.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if !rc.closed {
		t.Fatal("Restore did not close its reader")
	}
	sameDump(t, "restored", dump(t, src.db), dump(t, dst.db))
	if dst.f.AppliedIndex() != src.f.AppliedIndex() || dst.f.LastPosition() != src.f.LastPosition() || dst.f.NeedsRestore() {
		t.Fatalf("applied %d/%d, position %d/%d", dst.f.AppliedIndex(), src.f.AppliedIndex(), dst.f.LastPosition(), src.f.LastPosition())
	}
	// The restored store persists to the same bytes.
	if again := snapshotBytes(t, dst.f); !bytes.Equal(again, sink.Bytes()) {
		t.Fatal("snapshot of the restored store differs")
	}
	// And keeps working: dedup, epochs and versions carried over.
	dst.next = src.next
	if r := dst.apply1(Command{Append: &Append{Stream: "alpha", Epoch: 1, Expected: Exact(0), ID: idOf(0), Events: events("a", "b")}}); !r.Duplicate {
		t.Fatalf("dedup lost: %+v", r)
	}
	if r := dst.apply1(appendEpoch("beta", 0, Any(), events("x")...)); r.Code != CodeFenced {
		t.Fatalf("epoch lost: %+v", r)
	}
	if r := dst.mustOK(appendEpoch("gamma", 1, Exact(3), events("x")...)); r.FirstPosition != src.f.LastPosition()+1 {
		t.Fatalf("positions: %+v", r)
	}
}

func TestRestoreReplacesExistingState(t *testing.T) {
	src := newHarness(t)
	populate(src, "new")
	snap := snapshotBytes(t, src.f)

	dst := newHarness(t)
	populate(dst, "old1", "old2", "old3", "old4")
	if err := dst.f.Restore(nopCloser(snap)); err != nil {
		t.Fatal(err)
	}
	sameDump(t, "restored over old state", dump(t, src.db), dump(t, dst.db))
	for _, s := range []string{"old1", "old4", "old1-free"} {
		if info, err := dst.f.Stream(s); err != nil || info.Exists {
			t.Fatalf("old stream %s survived: %+v %v", s, info, err)
		}
	}
	if dst.f.LastPosition() != src.f.LastPosition() {
		t.Fatalf("last position %d", dst.f.LastPosition())
	}
}

func TestRestoreEmptySnapshot(t *testing.T) {
	src := newHarness(t)
	snap := snapshotBytes(t, src.f)
	dst := newHarness(t)
	populate(dst, "x")
	if err := dst.f.Restore(nopCloser(snap)); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, dst.db); len(d) != 1 { // the applied state only
		t.Fatalf("%d keys left", len(d))
	}
	if dst.f.AppliedIndex() != 0 || dst.f.LastPosition() != 0 {
		t.Fatal("applied state not reset")
	}
}

// expectUnavailable checks that f refuses to serve.
func expectUnavailable(t *testing.T, h *harness) {
	t.Helper()
	if !h.f.NeedsRestore() {
		t.Fatal("NeedsRestore is false")
	}
	if _, err := h.f.ReadStream("alpha", 1, 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadStream: %v", err)
	}
	if _, err := h.f.ReadAll(1, 10, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadAll: %v", err)
	}
	if _, err := h.f.Stream("alpha"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Stream: %v", err)
	}
	if _, err := h.f.Stream("never-existed"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Stream: %v", err)
	}
	if _, err := h.f.Snapshot(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Snapshot: %v", err)
	}
	applied := h.f.AppliedIndex()
	resp := h.f.ApplyBatch([]*raft.Log{h.log(appendCmd("z", Any(), events("a")...))})
	if err, ok := resp[0].(error); !ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ApplyBatch: %v", resp[0])
	}
	h.next--
	if h.f.AppliedIndex() != applied {
		t.Fatal("applied index moved while unavailable")
	}
}

func TestCorruptSnapshotLeavesNeedsRestore(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha", "beta")
	good := snapshotBytes(t, src.f)

	dst := newHarness(t)
	populate(dst, "old")
	check := func(name string, bad []byte) {
		t.Helper()
		err := dst.f.Restore(nopCloser(bad))
		if err == nil {
			t.Fatalf("%s: restore succeeded", name)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: error does not wrap ErrInvalid: %v", name, err)
		}
		expectUnavailable(t, dst)
	}
	// A sample of corruptions through Restore (TestSnapshotCorruptionDetected
	// tries every byte against the parser).
	// (Corruptions of the magic and format byte change nothing:
	// TestRestoreRefusesNonSnapshotUntouched.)
	for _, off := range []int{9, 10, len(good) / 3, len(good) / 2, len(good) - 5, len(good) - 1} {
		bad := bytes.Clone(good)
		bad[off] ^= 0x5a
		check("flip", bad)
	}
	for _, n := range []int{9, 10, len(good) / 2, len(good) - 4, len(good) - 1} {
		check("truncate", good[:n])
	}
	check("trailing data", append(bytes.Clone(good), 0))

	// The marker survives a reopen.
	if err := dst.db.Close(); err != nil {
		t.Fatal(err)
	}
	db, _ := openDB(t, dst.fs)
	dst = &harness{t: t, db: db, fs: dst.fs, f: newFSM(t, db), next: 100, time: t0}
	expectUnavailable(t, dst)

	// A good snapshot heals it.
	if err := dst.f.Restore(nopCloser(good)); err != nil {
		t.Fatal(err)
	}
	if dst.f.NeedsRestore() {
		t.Fatal("NeedsRestore after a good restore")
	}
	sameDump(t, "healed", dump(t, src.db), dump(t, dst.db))
}

// A stream that is no full snapshot by its header (wrong magic, unknown
// format, a reference, too short to tell) is refused and the store keeps
// its state and keeps serving.
func TestRestoreRefusesNonSnapshotUntouched(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha")
	good := snapshotBytes(t, src.f)
	var ref bytes.Buffer
	if _, err := writeReference(&ref, appliedState{Index: 5, Position: 3}); err != nil {
		t.Fatal(err)
	}
	dst := newHarness(t)
	populate(dst, "old")
	before := dump(t, dst.db)
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:5],
		"magic":         append([]byte("SBFSMSNQ"), good[8:]...),
		"format":        append(append([]byte(snapshotMagic), 9), good[9:]...),
		"reference":     ref.Bytes(),
		"magic only":    good[:8],
		"flipped magic": append([]byte{good[0] ^ 0x5a}, good[1:]...),
	}
	for name, b := range cases {
		err := dst.f.Restore(nopCloser(b))
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: %v, want ErrInvalid", name, err)
		}
		if dst.f.NeedsRestore() {
			t.Fatalf("%s: the store needs a restore after a refused stream", name)
		}
		sameDump(t, name, before, dump(t, dst.db))
		if _, err := dst.f.ReadStream("old", 1, 10); err != nil {
			t.Fatalf("%s: the store stopped serving: %v", name, err)
		}
	}
}

func TestSnapshotCorruptionDetected(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha", "beta")
	good := snapshotBytes(t, src.f)
	if _, _, err := readSnapshot(bytes.NewReader(good), func(_, _ []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// Every single-byte corruption and every truncation is detected.
	for off := range good {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(good)
			bad[off] ^= x
			if _, _, err := readSnapshot(bytes.NewReader(bad), func(_, _ []byte) error { return nil }); !errors.Is(err, ErrInvalid) {
				t.Fatalf("flip 0x%02x at %d: %v", x, off, err)
			}
		}
	}
	for n := 0; n < len(good); n++ {
		if _, _, err := readSnapshot(bytes.NewReader(good[:n]), func(_, _ []byte) error { return nil }); !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

func TestRestoreErrorMessages(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha")
	good := snapshotBytes(t, src.f)
	dst := newHarness(t)
	cases := map[string][]byte{
		"not an event store snapshot": []byte("GARBAGE!........"),
		"truncated":                   good[:len(good)/2],
		"checksum mismatch":           append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0),
		"data after the trailer":      append(bytes.Clone(good), 1),
	}
	for want, b := range cases {
		err := dst.f.Restore(nopCloser(b))
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("want %q, got %v", want, err)
		}
	}
}

func TestSnapshotIsConsistentWhileApplying(t *testing.T) {
	src := newHarness(t)
	populate(src, "alpha", "beta")
	s, err := src.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	atSnapshot := dump(t, src.db)

	// Persist while applies continue.
	var wg sync.WaitGroup
	sink := &memSink{}
	var perr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		perr = s.Persist(sink)
	}()
	for i := 0; i < 50; i++ {
		src.mustOK(appendCmd("during", Any(), events("x", "y")...))
	}
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
	dst := newHarness(t)
	if err := dst.f.Restore(nopCloser(sink.Bytes())); err != nil {
		t.Fatal(err)
	}
	sameDump(t, "snapshot view", atSnapshot, dump(t, dst.db))
}

type failingSink struct {
	memSink
	failAfter int
}

func (s *failingSink) Write(p []byte) (int, error) {
	if s.Len()+len(p) > s.failAfter {
		return 0, errors.New("disk full")
	}
	return s.memSink.Write(p)
}

func TestPersistCancelsOnWriteError(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 200; i++ {
		h.mustOK(appendCmd("s", Any(), Event{Type: "t", Data: make([]byte, 4096)}))
	}
	s, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	sink := &failingSink{failAfter: 1000}
	if err := s.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("err %v, cancelled %v, closed %v", err, sink.cancelled, sink.closed)
	}
}

// TestReadsDuringRestore: a read concurrent with restores sees either a
// complete state or ErrUnavailable, never a mix.
func TestReadsDuringRestore(t *testing.T) {
	a := newHarness(t)
	populate(a, "a1", "a2")
	snapA := snapshotBytes(t, a.f)
	b := newHarness(t)
	populate(b, "b1", "b2", "b3")
	snapB := snapshotBytes(t, b.f)
	full := map[byte]int{'a': int(a.f.LastPosition()), 'b': int(b.f.LastPosition())}

	dst := newHarness(t)
	if err := dst.f.Restore(nopCloser(snapA)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	var served, refused int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			evs, err := dst.f.ReadAll(1, 1000, 0)
			if errors.Is(err, ErrUnavailable) {
				refused++
				continue
			}
			if err != nil {
				readErr = err
				return
			}
			served++
			if len(evs) == 0 {
				readErr = errors.New("empty read")
				return
			}
			set := evs[0].Stream[0]
			for _, e := range evs {
				if e.Stream[0] != set {
					readErr = errors.New("mixed state: " + e.Stream)
					return
				}
			}
			if len(evs) != full[set] {
				readErr = errors.New("partial state")
				return
			}
		}
	}()
	for i := 0; i < 40; i++ {
		snap := snapA
		if i%2 == 0 {
			snap = snapB
		}
		if err := dst.f.Restore(nopCloser(snap)); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	t.Logf("reads served %d, refused %d", served, refused)
}
