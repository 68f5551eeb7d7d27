package fsm

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// commandError is a validation failure: the sentinel gives the class (and the
// Result code inside apply), msg the detail without the sentinel's text.
type commandError struct {
	code     Code
	sentinel error
	msg      string
}

func (e *commandError) Error() string { return e.sentinel.Error() + ": " + e.msg }
func (e *commandError) Unwrap() error { return e.sentinel }

func invalidf(format string, args ...any) error {
	return &commandError{code: CodeInvalid, sentinel: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

func tooLargef(format string, args ...any) error {
	return &commandError{code: CodeTooLarge, sentinel: ErrTooLarge, msg: fmt.Sprintf(format, args...)}
}

// resultOf converts a validation error into a failed Result.
func resultOf(err error) Result {
	var ce *commandError
	if errors.As(err, &ce) {
		return Result{Code: ce.code, Message: ce.msg}
	}
	return Result{Code: CodeInvalid, Message: err.Error()}
}

// ValidateCommand checks a command against the limits. The proposer calls it
// before proposing, so that bad input writes nothing and costs no consensus
// round; the FSM calls it again inside apply (it is deterministic: its outcome
// depends only on c and l), so every node rejects the same commands.
//
// Rules: exactly one of Claim and Append is set; the stream id is
// 1..MaxStreamIDLen bytes of valid UTF-8 without control characters (Unicode
// category Cc). An append also needs a known expected-version form and
// 1..MaxEventsPerAppend events (more is ErrTooLarge); each event a type of
// 1..MaxTypeLen printable ASCII bytes (0x20..0x7e) and a Size() of at most
// MaxEventSize (ErrTooLarge); all events together at most MaxAppendSize
// (ErrTooLarge). Events are numbered from 0, as in Append.Events.
//
// Errors wrap ErrInvalid or ErrTooLarge and name the field, e.g.
// "events: invalid request: stream id is empty" or
// "events: too large: event 3 is 1048600 bytes, limit 1048576".
func ValidateCommand(c Command, l Limits) error {
	switch {
	case c.Claim != nil && c.Append != nil:
		return invalidf("command: exactly one of claim and append must be set, both are")
	case c.Claim != nil:
		return validateStream(c.Claim.Stream, l)
	case c.Append != nil:
		return validateAppend(c.Append, l)
	}
	return invalidf("command: exactly one of claim and append must be set, neither is")
}

func validateStream(s string, l Limits) error {
	if s == "" {
		return invalidf("stream id is empty")
	}
	if len(s) > l.MaxStreamIDLen {
		return invalidf("stream id is %d bytes, limit %d", len(s), l.MaxStreamIDLen)
	}
	if !utf8.ValidString(s) {
		return invalidf("stream id is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return invalidf("stream id has control character %U at byte %d", r, i)
		}
	}
	return nil
}

func validateAppend(a *Append, l Limits) error {
	if err := validateStream(a.Stream, l); err != nil {
		return err
	}
	if !a.Expected.Valid() {
		return invalidf("expected version: unknown form %d", uint8(a.Expected.Kind))
	}
	switch n := len(a.Events); {
	case n == 0:
		return invalidf("events: append has no events")
	case n > l.MaxEventsPerAppend:
		return tooLargef("events: append has %d events, limit %d", n, l.MaxEventsPerAppend)
	}
	total := 0
	for i, ev := range a.Events {
		if err := validateType(i, ev.Type, l); err != nil {
			return err
		}
		size := ev.Size()
		if size > l.MaxEventSize {
			return tooLargef("event %d is %d bytes, limit %d", i, size, l.MaxEventSize)
		}
		total += size
	}
	if total > l.MaxAppendSize {
		return tooLargef("append is %d bytes, limit %d", total, l.MaxAppendSize)
	}
	return nil
}

func validateType(i int, t string, l Limits) error {
	if t == "" {
		return invalidf("event %d: type is empty", i)
	}
	if len(t) > l.MaxTypeLen {
		return invalidf("event %d: type is %d bytes, limit %d", i, len(t), l.MaxTypeLen)
	}
	for j := 0; j < len(t); j++ {
		if c := t[j]; c < 0x20 || c > 0x7e {
			return invalidf("event %d: type has byte 0x%02x at offset %d; only printable ASCII (0x20..0x7e) is allowed", i, c, j)
		}
	}
	return nil
}
