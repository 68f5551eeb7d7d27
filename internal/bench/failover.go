package bench

import (
	"context"
	"errors"
	"io"
)

// RunFailover runs the session failover benchmark (`make bench-failover`).
func RunFailover(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("bench failover: not implemented yet")
}
