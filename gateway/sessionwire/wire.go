// Package sessionwire is the wire format of the session protocol (version 1,
// docs/protocol.md): binary frames and JSON control messages. The session
// edge (gateway/sessionedge) and the client library (gateway/sessionclient)
// both use it, so both sides agree byte for byte.
//
// Decoding never panics and never allocates more than the input's size;
// every error names what is wrong and matches one of the sentinel errors.
package sessionwire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Version is the protocol version this package speaks.
const Version = 1

// Frame kinds: the first byte of a binary message.
const (
	KindDurable        byte = 0x01 // client → server: cseq, payload
	KindStream         byte = 0x02 // client → server: payload
	KindDeliverDurable byte = 0x81 // server → client: seq, prev_seq, from, payload
	KindDeliverStream  byte = 0x82 // server → client: from, payload
)

// MaxFromLen bounds a participant id in a frame.
const MaxFromLen = 255

// Sentinel errors of DecodeFrame.
var (
	// ErrBadFrame: the message is empty or shorter than its kind's fixed part.
	ErrBadFrame = errors.New("bad_frame")
	// ErrUnknownKind: the first byte is not a known frame kind.
	ErrUnknownKind = errors.New("unknown_frame_kind")
)

// Frame is one decoded binary message. Which fields are set depends on Kind.
type Frame struct {
	Kind    byte
	CSeq    uint64 // KindDurable
	Seq     uint64 // KindDeliverDurable
	PrevSeq uint64 // KindDeliverDurable
	From    string // KindDeliverDurable, KindDeliverStream
	// Payload aliases the decoded message's bytes.
	Payload []byte
}

// DecodeFrame decodes one binary message. The returned Payload aliases b.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) == 0 {
		return Frame{}, fmt.Errorf("%w: empty binary message", ErrBadFrame)
	}
	f := Frame{Kind: b[0]}
	rest := b[1:]
	switch f.Kind {
	case KindDurable:
		if len(rest) < 8 {
			return Frame{}, fmt.Errorf("%w: durable frame needs an 8-byte cseq, has %d bytes", ErrBadFrame, len(rest))
		}
		f.CSeq = binary.BigEndian.Uint64(rest)
		f.Payload = rest[8:]
	case KindStream:
		f.Payload = rest
	case KindDeliverDurable:
		if len(rest) < 17 {
			return Frame{}, fmt.Errorf("%w: delivered durable frame needs 17 header bytes, has %d", ErrBadFrame, len(rest))
		}
		f.Seq = binary.BigEndian.Uint64(rest)
		f.PrevSeq = binary.BigEndian.Uint64(rest[8:])
		n := int(rest[16])
		rest = rest[17:]
		if len(rest) < n {
			return Frame{}, fmt.Errorf("%w: sender id of %d bytes, message has %d left", ErrBadFrame, n, len(rest))
		}
		f.From, f.Payload = string(rest[:n]), rest[n:]
	case KindDeliverStream:
		if len(rest) < 1 {
			return Frame{}, fmt.Errorf("%w: delivered stream frame needs a sender length byte", ErrBadFrame)
		}
		n := int(rest[0])
		rest = rest[1:]
		if len(rest) < n {
			return Frame{}, fmt.Errorf("%w: sender id of %d bytes, message has %d left", ErrBadFrame, n, len(rest))
		}
		f.From, f.Payload = string(rest[:n]), rest[n:]
	default:
		return Frame{}, fmt.Errorf("%w: 0x%02x", ErrUnknownKind, f.Kind)
	}
	return f, nil
}

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	switch f.Kind {
	case KindDurable:
		dst = append(dst, f.Kind)
		dst = binary.BigEndian.AppendUint64(dst, f.CSeq)
	case KindStream:
		dst = append(dst, f.Kind)
	case KindDeliverDurable, KindDeliverStream:
		if len(f.From) > MaxFromLen {
			return dst, fmt.Errorf("sessionwire: sender id of %d bytes is over %d", len(f.From), MaxFromLen)
		}
		dst = append(dst, f.Kind)
		if f.Kind == KindDeliverDurable {
			dst = binary.BigEndian.AppendUint64(dst, f.Seq)
			dst = binary.BigEndian.AppendUint64(dst, f.PrevSeq)
		}
		dst = append(dst, byte(len(f.From)))
		dst = append(dst, f.From...)
	default:
		return dst, fmt.Errorf("sessionwire: cannot encode frame kind 0x%02x", f.Kind)
	}
	return append(dst, f.Payload...), nil
}

// Control message types.
const (
	TypeOpen    = "open"
	TypeJoin    = "join"
	TypeResume  = "resume"
	TypeWelcome = "welcome"
	TypeAck     = "ack"
	TypePing    = "ping"
	TypePong    = "pong"
	TypeLeave   = "leave"
	TypeEnd     = "end"
	TypeSent    = "sent"
	TypeEvent   = "event"
	TypeGap     = "gap"
	TypeError   = "error"
)

// Limits of a session (docs/protocol.md, "open").
type Limits struct {
	MaxParticipants uint32 `json:"max_participants,omitempty"`
	MaxFrameBytes   uint32 `json:"max_frame_bytes,omitempty"`
	FramesPerSecond uint32 `json:"frames_per_second,omitempty"`
	Burst           uint32 `json:"burst,omitempty"`
	IdleTimeoutS    uint32 `json:"idle_timeout_s,omitempty"`
	ExpiresAtUnixMs int64  `json:"expires_at_unix_ms,omitempty"`
}

// Participant as listed in a welcome.
type Participant struct {
	ID       string `json:"id"`
	Role     string `json:"role"`
	Name     string `json:"name"`
	Attached bool   `json:"attached"`
	Left     bool   `json:"left"`
}

// Control is every control message: Type says which fields are meaningful
// (docs/protocol.md lists them per type).
type Control struct {
	Type string `json:"type"`
	V    int    `json:"v,omitempty"`

	// open / join / resume
	Token       string  `json:"token,omitempty"`
	Name        string  `json:"name,omitempty"`
	Limits      *Limits `json:"limits,omitempty"`
	Session     string  `json:"session,omitempty"`
	Secret      string  `json:"secret,omitempty"`
	Participant string  `json:"participant,omitempty"`
	ResumeToken string  `json:"resume_token,omitempty"`
	LastSeq     uint64  `json:"last_seq,omitempty"`

	// welcome
	Role         string        `json:"role,omitempty"`
	JoinSecret   string        `json:"join_secret,omitempty"`
	LastCSeq     uint64        `json:"last_cseq,omitempty"`
	HeartbeatS   int           `json:"heartbeat_s,omitempty"`
	Participants []Participant `json:"participants,omitempty"`
	Node         string        `json:"node,omitempty"`

	// welcome, ack, sent, event
	Seq     uint64 `json:"seq,omitempty"`
	PrevSeq uint64 `json:"prev_seq,omitempty"`
	// sent, error
	CSeq      uint64 `json:"cseq,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// event
	Event  string `json:"event,omitempty"`
	Reason string `json:"reason,omitempty"`
	// gap
	From string `json:"from,omitempty"`
	// ping / pong
	T int64 `json:"t,omitempty"`
	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Fatal   bool   `json:"fatal,omitempty"`
}

// ErrBadControl: a text message is not a JSON object with a known type.
var ErrBadControl = errors.New("bad_request")

var knownTypes = map[string]bool{
	TypeOpen: true, TypeJoin: true, TypeResume: true, TypeWelcome: true, TypeAck: true, TypePing: true,
	TypePong: true, TypeLeave: true, TypeEnd: true, TypeSent: true, TypeEvent: true, TypeGap: true, TypeError: true,
}

// DecodeControl decodes one text message. Unknown fields are ignored.
func DecodeControl(b []byte) (Control, error) {
	var c Control
	if !utf8.Valid(b) {
		return Control{}, fmt.Errorf("%w: text message is not UTF-8", ErrBadControl)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Control{}, fmt.Errorf("%w: not a JSON object of the protocol: %v", ErrBadControl, err)
	}
	if c.Type == "" {
		return Control{}, fmt.Errorf("%w: field \"type\" is missing", ErrBadControl)
	}
	if !knownTypes[c.Type] {
		return Control{}, fmt.Errorf("%w: unknown type %q", ErrBadControl, c.Type)
	}
	return c, nil
}

// EncodeControl encodes c as a text message.
func EncodeControl(c Control) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// Control has only strings, numbers, bools and slices of them.
		panic(fmt.Sprintf("sessionwire: encode control: %v", err))
	}
	return b
}

// Error codes (docs/protocol.md, "Errors") and their numbers; a fatal error
// closes the WebSocket with code 4000+number.
var ErrorNumbers = map[string]int{
	"bad_request": 400, "unauthorized": 401, "bad_secret": 403, "bad_resume_token": 403, "not_host": 403,
	"unknown_session": 404, "unknown_participant": 404, "unsupported_version": 426, "session_ended": 410,
	"session_full": 409, "resume_from_future": 416, "bad_frame": 422, "unknown_frame_kind": 422,
	"frame_too_large": 413, "bad_sequence": 422, "rate_limited": 429, "unavailable": 503, "internal": 500,
}

// CloseCode returns the WebSocket close code of a fatal error code.
func CloseCode(code string) int {
	if n, ok := ErrorNumbers[code]; ok {
		return 4000 + n
	}
	return 4500
}
