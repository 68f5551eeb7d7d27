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
	"path/filepath"
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

// defaultBinary returns binary, or the running executable when it is empty
// (the drivers start nodes of the binary they run in by default).
func defaultBinary(what, binary string) (string, error) {
	if binary != "" {
		return binary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%s: --binary not given and the running executable is unknown: %w", what, err)
	}
	return exe, nil
}

// checkBinary refuses a --binary that is not an executable file.
func checkBinary(what, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: --binary: %w", what, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: --binary: %s is not an executable file", what, path)
	}
	return nil
}

// runDir returns the directory of a run: a new temporary one, or keep (which
// must not hold any of the subdirectories a previous run leaves, listed in
// previous). cleanup, called with the run's error, removes a temporary
// directory after a successful run and keeps it (saying so) otherwise.
func runDir(keep, what string, previous []string, log *slog.Logger) (dir string, cleanup func(error), err error) {
	if keep == "" {
		if dir, err = os.MkdirTemp("", "switchboard-bench-"); err != nil {
			return "", nil, fmt.Errorf("%s: data directory: %w", what, err)
		}
	} else {
		if dir, err = filepath.Abs(keep); err != nil {
			return "", nil, fmt.Errorf("%s: --keep %s: %w", what, keep, err)
		}
		for _, sub := range previous {
			if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
				return "", nil, fmt.Errorf("%s: --keep %s: %s already exists (a previous run?); give an empty or new directory", what, keep, filepath.Join(dir, sub))
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("%s: --keep %s: %w", what, keep, err)
		}
	}
	return dir, func(err error) {
		switch {
		case keep != "":
			log.Info("data and logs kept", "dir", dir)
		case err != nil && !errors.Is(err, context.Canceled):
			log.Warn("run failed: data and logs kept for inspection", "dir", dir)
		default:
			if rerr := os.RemoveAll(dir); rerr != nil {
				log.Warn("remove data directory", "dir", dir, "err", rerr)
			}
		}
	}, nil
}
