package fsm

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateCommand(t *testing.T) {
	l := DefaultLimits()
	ev := func(size int) Event { return Event{Type: "t", Data: make([]byte, size-1)} }
	cases := []struct {
		name string
		cmd  Command
		err  error
		want string
	}{
		{"ok append", appendCmd("s", Exact(0), events("a")...), nil, ""},
		{"ok claim", claimCmd("s"), nil, ""},
		{"max sizes", appendCmd(strings.Repeat("x", 256), Any(), Event{Type: strings.Repeat("t", 128)}, ev(l.MaxEventSize)), nil, ""},
		{"unicode stream", appendCmd("grüße/会话", Any(), events("a")...), nil, ""},
		{"neither", Command{}, ErrInvalid, "events: invalid request: command: exactly one of claim and append must be set, neither is"},
		{"both", Command{Claim: &Claim{Stream: "s"}, Append: &Append{}}, ErrInvalid, "events: invalid request: command: exactly one of claim and append must be set, both are"},
		{"empty stream", appendCmd("", Any(), events("a")...), ErrInvalid, "events: invalid request: stream id is empty"},
		{"claim empty stream", claimCmd(""), ErrInvalid, "events: invalid request: stream id is empty"},
		{"long stream", claimCmd(strings.Repeat("x", 257)), ErrInvalid, "events: invalid request: stream id is 257 bytes, limit 256"},
		{"bad utf8", claimCmd("\xc3"), ErrInvalid, "events: invalid request: stream id is not valid UTF-8"},
		{"nul", claimCmd("a\x00"), ErrInvalid, "events: invalid request: stream id has control character U+0000 at byte 1"},
		{"del", claimCmd("\x7f"), ErrInvalid, "events: invalid request: stream id has control character U+007F at byte 0"},
		{"c1", claimCmd("ab\u0085"), ErrInvalid, "events: invalid request: stream id has control character U+0085 at byte 2"},
		{"unset expected", appendCmd("s", Expected{}, events("a")...), ErrInvalid, "events: invalid request: expected version: unknown form 0"},
		{"unknown expected", appendCmd("s", Expected{Kind: 4}, events("a")...), ErrInvalid, "events: invalid request: expected version: unknown form 4"},
		{"no events", appendCmd("s", Any()), ErrInvalid, "events: invalid request: events: append has no events"},
		{"too many events", appendCmd("s", Any(), make([]Event, 1001)...), ErrTooLarge, "events: too large: events: append has 1001 events, limit 1000"},
		{"empty type", appendCmd("s", Any(), events("a", "b", "")...), ErrInvalid, "events: invalid request: event 2: type is empty"},
		{"long type", appendCmd("s", Any(), Event{Type: strings.Repeat("t", 129)}), ErrInvalid, "events: invalid request: event 0: type is 129 bytes, limit 128"},
		{"type byte", appendCmd("s", Any(), Event{Type: "café"}), ErrInvalid, "events: invalid request: event 0: type has byte 0xc3 at offset 3; only printable ASCII (0x20..0x7e) is allowed"},
		{"event too large", appendCmd("s", Any(), ev(1), ev(1), ev(1), ev(1048600)), ErrTooLarge, "events: too large: event 3 is 1048600 bytes, limit 1048576"},
		{"append too large", appendCmd("s", Any(), ev(1<<20), ev(1<<20), ev(1<<20), ev(1<<20), ev(1)), ErrTooLarge, "events: too large: append is 4194305 bytes, limit 4194304"},
	}
	for _, tc := range cases {
		err := ValidateCommand(tc.cmd, l)
		if tc.err == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.err) || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
	}
}

// The result built from a validation error carries the detail only, so that
// Result.Err does not repeat the sentinel's text.
func TestValidationResultMessage(t *testing.T) {
	r := resultOf(ValidateCommand(claimCmd(""), DefaultLimits()))
	if r.Code != CodeInvalid || r.Message != "stream id is empty" {
		t.Fatalf("%+v", r)
	}
	if err := r.Err("", Expected{}, 0); err.Error() != "events: invalid request: stream id is empty" {
		t.Fatalf("%v", err)
	}
}
