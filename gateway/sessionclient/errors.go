package sessionclient

import (
	"errors"
	"fmt"
)

// Errors of the library itself.
var (
	// ErrEnded: the session has ended. Recv returns it (as an *EndedError
	// carrying the reason) once every message before the end was returned.
	ErrEnded = errors.New("sessionclient: session ended")
	// ErrClosed: Close or Leave was called.
	ErrClosed = errors.New("sessionclient: session closed")
	// ErrUnavailable: no node answered within Config.GiveUpAfter (or the
	// server's `unavailable` code).
	ErrUnavailable = errors.New("sessionclient: unavailable")
)

// Sentinels of the protocol's error codes (docs/protocol.md, "Errors"):
// errors.Is(err, ErrBadSecret) holds for an *Error with code bad_secret.
var (
	ErrBadRequest         = errors.New("sessionclient: bad_request")
	ErrUnauthorized       = errors.New("sessionclient: unauthorized")
	ErrBadSecret          = errors.New("sessionclient: bad_secret")
	ErrBadResumeToken     = errors.New("sessionclient: bad_resume_token")
	ErrNotHost            = errors.New("sessionclient: not_host")
	ErrUnknownSession     = errors.New("sessionclient: unknown_session")
	ErrUnknownParticipant = errors.New("sessionclient: unknown_participant")
	ErrUnsupportedVersion = errors.New("sessionclient: unsupported_version")
	ErrSessionEnded       = errors.New("sessionclient: session_ended")
	ErrSessionFull        = errors.New("sessionclient: session_full")
	ErrResumeFromFuture   = errors.New("sessionclient: resume_from_future")
	ErrFrameTooLarge      = errors.New("sessionclient: frame_too_large")
	ErrInternal           = errors.New("sessionclient: internal")
)

var codeSentinels = map[string]error{
	"bad_request":         ErrBadRequest,
	"unauthorized":        ErrUnauthorized,
	"bad_secret":          ErrBadSecret,
	"bad_resume_token":    ErrBadResumeToken,
	"not_host":            ErrNotHost,
	"unknown_session":     ErrUnknownSession,
	"unknown_participant": ErrUnknownParticipant,
	"unsupported_version": ErrUnsupportedVersion,
	"session_ended":       ErrSessionEnded,
	"session_full":        ErrSessionFull,
	"resume_from_future":  ErrResumeFromFuture,
	"frame_too_large":     ErrFrameTooLarge,
	"unavailable":         ErrUnavailable,
	"internal":            ErrInternal,
}

// Error is an error the server reported (or, for frame_too_large, that Send
// detected before sending). Match it with errors.Is and the sentinels above,
// or errors.As for the code and message.
type Error struct {
	Code    string // the protocol's error code, e.g. "bad_secret"
	Message string // the server's explanation
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "sessionclient: " + e.Code
	}
	return fmt.Sprintf("sessionclient: %s: %s", e.Code, e.Message)
}

// Is matches the sentinel of e's code; session_ended also matches ErrEnded.
func (e *Error) Is(target error) bool {
	if target == ErrEnded && e.Code == "session_ended" {
		return true
	}
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}

// EndedError is returned by Recv (and then by every other method) after the
// session ended; errors.Is(err, ErrEnded) holds.
type EndedError struct {
	// Reason: host, admin, expired, idle, or the text given to End.
	Reason string
}

func (e *EndedError) Error() string {
	if e.Reason == "" {
		return ErrEnded.Error()
	}
	return ErrEnded.Error() + ": " + e.Reason
}

// Is reports whether target is ErrEnded.
func (e *EndedError) Is(target error) bool { return target == ErrEnded }

// retryable reports whether a fatal server error code means "try again on
// another node" rather than "give up".
func retryable(code string) bool {
	return code == "unavailable" || code == "internal"
}
