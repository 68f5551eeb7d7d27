package events_test

import (
	"io"
	"log/slog"
	"os"
)

// quietLogger logs warnings and errors only (all levels with SWITCHBOARD_TEST_LOG=debug).
func quietLogger() *slog.Logger {
	lv := slog.LevelError + 4
	if os.Getenv("SWITCHBOARD_TEST_LOG") == "debug" {
		lv = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}
