package events

import "time"

// SetUnaryRetry sets how long a leader without Submit gets unary Forward
// calls before a stream is tried again, and returns the function that
// restores the previous value.
func SetUnaryRetry(d time.Duration) (restore func()) {
	old := unaryFor.Swap(int64(d))
	return func() { unaryFor.Store(old) }
}
