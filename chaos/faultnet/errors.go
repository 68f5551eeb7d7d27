package faultnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ErrBlocked is matched (with errors.Is) by every error faultnet returns
// because a link is blocked.
var ErrBlocked = errors.New("faultnet: link blocked")

// ErrReset is matched by the errors of Read and Write (wrapped in a
// *net.OpError) on a connection closed by [Network.ResetConnections]. It
// matches syscall.ECONNRESET, like the error a real connection reports after
// an RST.
var ErrReset = fmt.Errorf("faultnet: connection reset: %w", syscall.ECONNRESET)

// BlockedError reports that a dial, Read or Write could not proceed because
// Link is blocked. It implements net.Error: Timeout reports true when the
// operation ended because a deadline passed (or, for a dial refused at once,
// because a real dial would have timed out).
type BlockedError struct {
	// Link is the blocked direction. For a dial it may be the reverse of the
	// direction dialed: the handshake needs both.
	Link Link
	// Err is what ended the wait: os.ErrDeadlineExceeded, the dial context's
	// error, or nil when the dial was refused without waiting.
	Err error
}

// Error returns e.g. "faultnet: n1 -> n2 blocked: i/o timeout".
func (e *BlockedError) Error() string {
	msg := "faultnet: " + e.Link.String() + " blocked"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrBlocked and, when set, Err.
func (e *BlockedError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBlocked}
	}
	return []error{ErrBlocked, e.Err}
}

// Timeout reports whether the operation timed out (see BlockedError).
func (e *BlockedError) Timeout() bool {
	return e.Err == nil || errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, context.DeadlineExceeded)
}

// Temporary reports the same as Timeout: a blocked link may heal.
//
// Deprecated: as for net.Error, use Timeout.
func (e *BlockedError) Temporary() bool { return e.Timeout() }

// errStopped is returned internally by a wait that ended because its stop
// channel was closed; callers turn it into the connection's close error.
var errStopped = errors.New("faultnet: stopped")

var _ net.Error = (*BlockedError)(nil)
