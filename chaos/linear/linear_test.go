package linear

import (
	"testing"
	"time"
)

func add(h *History, c int, in Input, out Output, call, ret int64) { h.Add(c, in, out, call, ret) }

func TestLinearizableHistory(t *testing.T) {
	h := NewHistory()
	add(h, 0, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "a"}, Output{OK: true, Version: 1}, 0, 10)
	add(h, 1, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "b"}, Output{Version: 1}, 5, 15)
	add(h, 1, Input{Stream: "s", Kind: Append, Expected: 1, Payload: "c"}, Output{Unknown: true}, 16, 0)
	add(h, 2, Input{Stream: "s", Kind: Read}, Output{OK: true, Payloads: []string{"a"}}, 11, 12)
	add(h, 2, Input{Stream: "s", Kind: Read}, Output{OK: true, Payloads: []string{"a", "c"}}, 30, 40)
	add(h, 3, Input{Stream: "t", Kind: Read}, Output{OK: true}, 0, 1)
	if err := Check(h, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStaleReadIsCaught(t *testing.T) {
	h := NewHistory()
	add(h, 0, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "a"}, Output{OK: true, Version: 1}, 0, 10)
	// A read that starts after the append returned must see it.
	add(h, 1, Input{Stream: "s", Kind: Read}, Output{OK: true}, 11, 12)
	if err := Check(h, 10*time.Second); err == nil {
		t.Fatal("stale read accepted")
	}
}

func TestLostAcknowledgedAppendIsCaught(t *testing.T) {
	h := NewHistory()
	add(h, 0, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "a"}, Output{OK: true, Version: 1}, 0, 10)
	add(h, 1, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "b"}, Output{OK: true, Version: 1}, 11, 20)
	if err := Check(h, 10*time.Second); err == nil {
		t.Fatal("two appends at the same expected version both acknowledged: accepted")
	}
}

func TestDuplicateIsCaught(t *testing.T) {
	h := NewHistory()
	add(h, 0, Input{Stream: "s", Kind: Append, Expected: 0, Payload: "a"}, Output{Unknown: true}, 0, 0)
	add(h, 1, Input{Stream: "s", Kind: Read}, Output{OK: true, Payloads: []string{"a", "a"}}, 11, 12)
	if err := Check(h, 10*time.Second); err == nil {
		t.Fatal("a payload applied twice was accepted")
	}
}
