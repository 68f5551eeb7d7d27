// Package fsm is Switchboard's event store state machine: per-stream,
// append-only event streams with optimistic concurrency, activation epochs,
// idempotent appends and a dense global position, kept in Pebble and driven by
// hashicorp/raft as a raft.BatchingFSM.
//
// The package is pure with respect to the network: it decodes raft log entries,
// applies them deterministically to its Pebble keyspace and answers reads. The
// events package wires it to Raft, forwarding and subscriptions.
package fsm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code classifies the outcome of one command.
type Code uint8

const (
	// OK: the command took effect (or, for a duplicate append id, had taken
	// effect before; see Result.Duplicate).
	OK Code = iota
	// CodeConflict: the stream's version did not match the expected version.
	CodeConflict
	// CodeFenced: the append carried an epoch older than the stream's current one.
	CodeFenced
	// CodeTooLarge: an event or the whole append exceeds the configured limits.
	CodeTooLarge
	// CodeInvalid: the command is malformed (bad stream id, unknown expected
	// version form, epoch never issued, ...).
	CodeInvalid
)

func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case CodeConflict:
		return "conflict"
	case CodeFenced:
		return "fenced"
	case CodeTooLarge:
		return "too_large"
	case CodeInvalid:
		return "invalid"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Sentinel errors. Callers test with errors.Is; the concrete error types below
// carry the details and are found with errors.As.
var (
	ErrConflict    = errors.New("events: wrong expected version")
	ErrFenced      = errors.New("events: fenced by a newer activation epoch")
	ErrTooLarge    = errors.New("events: too large")
	ErrInvalid     = errors.New("events: invalid request")
	ErrUnavailable = errors.New("events: log unavailable")
	ErrNotFound    = errors.New("events: not found")
)

// ConflictError reports an optimistic concurrency failure.
type ConflictError struct {
	Stream   string
	Expected Expected
	Current  uint64 // the stream's version when the append was applied (0 = no stream)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("events: stream %q: expected %s, current version %d", e.Stream, e.Expected, e.Current)
}
func (e *ConflictError) Unwrap() error { return ErrConflict }

// FencedError reports an append from a stale activation.
type FencedError struct {
	Stream  string
	Epoch   uint64 // the epoch the append carried
	Current uint64 // the stream's current epoch
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("events: stream %q: epoch %d fenced by epoch %d", e.Stream, e.Epoch, e.Current)
}
func (e *FencedError) Unwrap() error { return ErrFenced }

// ExpectedKind is the form of an expected-version condition.
type ExpectedKind uint8

const (
	// The zero value is rejected as invalid so that a forgotten condition
	// never silently means "any".
	_ ExpectedKind = iota
	// ExpectExact: the stream must be at exactly Version (0 means "no events yet";
	// a claimed stream without events is at version 0).
	ExpectExact
	// ExpectAny: no condition.
	ExpectAny
	// ExpectNoStream: the stream must not exist (never claimed, never appended).
	ExpectNoStream
	maxExpectedKind = ExpectNoStream
)

// Expected is an optimistic concurrency condition on a stream's version.
type Expected struct {
	Kind    ExpectedKind
	Version uint64 // only for ExpectExact
}

// Exact expects the stream to be at version v.
func Exact(v uint64) Expected { return Expected{Kind: ExpectExact, Version: v} }

// Any places no condition on the stream's version.
func Any() Expected { return Expected{Kind: ExpectAny} }

// NoStream expects the stream not to exist.
func NoStream() Expected { return Expected{Kind: ExpectNoStream} }

func (e Expected) String() string {
	switch e.Kind {
	case ExpectExact:
		return fmt.Sprintf("version %d", e.Version)
	case ExpectAny:
		return "any version"
	case ExpectNoStream:
		return "no stream"
	}
	return fmt.Sprintf("unknown expected-version form %d", uint8(e.Kind))
}

// Valid reports whether the form is known.
func (e Expected) Valid() bool { return e.Kind >= ExpectExact && e.Kind <= maxExpectedKind }

// Event is an event to append.
type Event struct {
	Type string // 1..Limits.MaxTypeLen bytes, printable ASCII, e.g. "session.opened"
	Data []byte // opaque payload (jobs use protobuf)
	Meta []byte // opaque metadata (who, from where); may be nil
}

// Size is the number of bytes the event counts against the limits.
func (e Event) Size() int { return len(e.Type) + len(e.Data) + len(e.Meta) }

// RecordedEvent is an event as stored in the log.
type RecordedEvent struct {
	Stream   string
	Version  uint64 // 1-based, dense within the stream
	Position uint64 // 1-based, dense across the whole log
	Epoch    uint64 // activation epoch the append carried (0 = unfenced)
	Time     int64  // unix nanoseconds, stamped by the proposer (deterministic on every node)
	Type     string
	Data     []byte
	Meta     []byte
}

// AppendID identifies an append so that a retry after a timeout is not written
// twice. The zero value means "not idempotent".
type AppendID [16]byte

// IsZero reports whether id is the zero value.
func (id AppendID) IsZero() bool { return id == AppendID{} }

// Claim asks for a new activation epoch on a stream. Applying it increments
// the stream's epoch; it creates the stream's metadata (at version 0) if the
// stream did not exist.
type Claim struct {
	Stream string
	// ID makes a retried claim return the epoch of the first attempt. Optional.
	ID AppendID
}

// Append appends events to a stream, atomically: all or none.
type Append struct {
	Stream   string
	Expected Expected
	// Epoch is the activation epoch of the writer. 0 = unfenced writer: allowed
	// only while the stream has never been claimed. A non-zero epoch must equal
	// the stream's current epoch; an older one is fenced, a newer one (never
	// issued) is invalid.
	Epoch  uint64
	ID     AppendID
	Events []Event
}

// Command is one request inside a raft log entry: exactly one of the fields is set.
type Command struct {
	Claim  *Claim
	Append *Append
}

// Entry is the payload of one raft log entry: commands packed by group commit,
// applied in order, each succeeding or failing on its own.
type Entry struct {
	// Time is the proposer's wall clock, unix nanoseconds. It is the Time of
	// every event written by the entry and the clock for expiring append ids,
	// so apply stays deterministic.
	Time     int64
	Commands []Command
}

// Result is the outcome of one command.
type Result struct {
	Code    Code
	Message string // human-readable detail when Code != OK
	// Claim: the new epoch. Fenced: the stream's current epoch.
	Epoch uint64
	// Append: the stream's version after the append. Claim: the stream's current
	// version. Conflict: the stream's current version.
	Version uint64
	// Append: global positions of the first and last event written.
	FirstPosition, LastPosition uint64
	// Duplicate: the command's id had already been applied; the result is the
	// original one and nothing was written.
	Duplicate bool
}

// Err converts a non-OK result into a typed error (nil when OK). stream and
// expected complete the details of conflict and fencing errors.
func (r Result) Err(stream string, expected Expected, epoch uint64) error {
	switch r.Code {
	case OK:
		return nil
	case CodeConflict:
		return &ConflictError{Stream: stream, Expected: expected, Current: r.Version}
	case CodeFenced:
		return &FencedError{Stream: stream, Epoch: epoch, Current: r.Epoch}
	case CodeTooLarge:
		return fmt.Errorf("%w: %s", ErrTooLarge, r.Message)
	case CodeInvalid:
		return fmt.Errorf("%w: %s", ErrInvalid, r.Message)
	}
	return fmt.Errorf("%w: unknown result code %d: %s", ErrInvalid, r.Code, r.Message)
}

// Limits bound what one append may carry. They are part of the replicated
// state machine's rules: every node of a cluster must run with the same limits.
type Limits struct {
	MaxStreamIDLen     int // bytes; default 256
	MaxTypeLen         int // bytes; default 128
	MaxEventSize       int // bytes of Type+Data+Meta; default 1 MiB
	MaxEventsPerAppend int // default 1000
	MaxAppendSize      int // bytes of all events of one append; default 4 MiB
	// AppendIDRetention is how long (by entry time) an append id is remembered
	// for deduplication, in nanoseconds; default 10 minutes.
	AppendIDRetention int64
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxStreamIDLen:     256,
		MaxTypeLen:         128,
		MaxEventSize:       1 << 20,
		MaxEventsPerAppend: 1000,
		MaxAppendSize:      4 << 20,
		AppendIDRetention:  int64(10 * 60 * 1e9),
	}
}

// Validate reports every problem with the limits at once.
func (l Limits) Validate() error {
	var errs []string
	if l.MaxStreamIDLen < 1 || l.MaxStreamIDLen > 1024 {
		errs = append(errs, fmt.Sprintf("max_stream_id_len: %d is out of range 1..1024", l.MaxStreamIDLen))
	}
	if l.MaxTypeLen < 1 || l.MaxTypeLen > 1024 {
		errs = append(errs, fmt.Sprintf("max_type_len: %d is out of range 1..1024", l.MaxTypeLen))
	}
	if l.MaxEventSize < 1 || l.MaxEventSize > 16<<20 {
		errs = append(errs, fmt.Sprintf("max_event_size: %d is out of range 1..16777216", l.MaxEventSize))
	}
	if l.MaxEventsPerAppend < 1 || l.MaxEventsPerAppend > 100000 {
		errs = append(errs, fmt.Sprintf("max_events_per_append: %d is out of range 1..100000", l.MaxEventsPerAppend))
	}
	if l.MaxAppendSize < l.MaxEventSize || l.MaxAppendSize > 64<<20 {
		errs = append(errs, fmt.Sprintf("max_append_size: %d must be at least max_event_size (%d) and at most 67108864", l.MaxAppendSize, l.MaxEventSize))
	}
	if l.AppendIDRetention < 1e9 {
		errs = append(errs, fmt.Sprintf("append_id_retention: %v is shorter than 1s", time.Duration(l.AppendIDRetention)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: limits: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}
