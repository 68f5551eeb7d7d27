package bench

import (
	"context"
	"errors"
	"io"
)

// RunCluster runs the cluster benchmark (`make bench-cluster`).
func RunCluster(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("bench cluster: not implemented yet")
}
