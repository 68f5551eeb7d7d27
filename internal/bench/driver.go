package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// parseDriverFlags parses args into fs for `switchboard bench <name>`: -h
// returns an error wrapping flag.ErrHelp followed by the usage text, and a
// positional argument is refused.
func parseDriverFlags(fs *flag.FlagSet, name string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return fmt.Errorf("%w\nusage: switchboard bench %s [flags]\n%s", flag.ErrHelp, name, b.String())
		}
		return fmt.Errorf("bench %s: %w", name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench %s: unexpected argument %q", name, fs.Arg(0))
	}
	return nil
}

// startDriver is what every driver does once its flags are parsed: on
// --help print the usage to stderr and return flag.ErrHelp, on a flag error
// return it; otherwise cancel the returned context on SIGINT and SIGTERM
// (call stop when done) and log progress to stderr.
func startDriver(ctx context.Context, parseErr error, stderr io.Writer) (_ context.Context, stop func(), _ *slog.Logger, err error) {
	if errors.Is(parseErr, flag.ErrHelp) {
		fmt.Fprintln(stderr, strings.TrimPrefix(parseErr.Error(), flag.ErrHelp.Error()+"\n"))
		return nil, nil, nil, flag.ErrHelp
	}
	if parseErr != nil {
		return nil, nil, nil, parseErr
	}
	ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, stop, slog.New(slog.NewTextHandler(stderr, nil)), nil
}
