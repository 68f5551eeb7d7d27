package main

import (
	"context"
	"errors"
	"io"
)

// sessionCmd runs `switchboard session open|join ...`.
func sessionCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) error {
	return errors.New("session: not implemented yet")
}
