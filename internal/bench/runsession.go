package bench

import (
	"context"
	"errors"
	"io"
)

// RunSession runs the relayed-session benchmark (`make bench-session`).
func RunSession(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("bench session: not implemented yet")
}
