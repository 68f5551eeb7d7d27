// Package logutil adapts the loggers of third-party libraries to log/slog, so
// that the whole node writes one structured log.
package logutil

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger (used by hashicorp/raft) that writes to l.
// hclog Trace maps to slog Debug-4.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return &hcAdapter{l: l, name: name}
}

type hcAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hcAdapter)(nil)

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// Log implements hclog.Logger.
func (h *hcAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	if !h.l.Enabled(context.Background(), lv) {
		return
	}
	if h.name != "" {
		args = append([]any{"logger", h.name}, args...)
	}
	h.l.Log(context.Background(), lv, msg, normalize(args)...)
}

// normalize turns hclog's key/value pairs into slog arguments; values that
// are errors are logged by their text.
func normalize(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		key := fmt.Sprint(args[i])
		if i+1 >= len(args) {
			out = append(out, slog.Any("extra", args[i]))
			break
		}
		v := args[i+1]
		switch t := v.(type) {
		case error:
			v = t.Error()
		case hclog.Format:
			if len(t) > 0 {
				if f, ok := t[0].(string); ok {
					v = fmt.Sprintf(f, t[1:]...)
				}
			}
		}
		out = append(out, slog.Any(key, v))
	}
	return out
}

func (h *hcAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcAdapter) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), toSlog(l))
}
func (h *hcAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcAdapter) ImpliedArgs() []any { return h.implied }

func (h *hcAdapter) With(args ...any) hclog.Logger {
	return &hcAdapter{l: h.l.With(normalize(args)...), name: h.name, implied: append(append([]any{}, h.implied...), args...)}
}
func (h *hcAdapter) Name() string { return h.name }
func (h *hcAdapter) Named(name string) hclog.Logger {
	n := name
	if h.name != "" {
		n = h.name + "." + name
	}
	return &hcAdapter{l: h.l, name: n, implied: h.implied}
}
func (h *hcAdapter) ResetNamed(name string) hclog.Logger {
	return &hcAdapter{l: h.l, name: name, implied: h.implied}
}

// SetLevel is a no-op: the level belongs to the slog handler.
func (h *hcAdapter) SetLevel(hclog.Level) {}

// GetLevel reports the most verbose level the slog handler lets through.
func (h *hcAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Error
}

func (h *hcAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		msg := strings.TrimSpace(string(p))
		level := hclog.Info
		switch {
		case strings.HasPrefix(msg, "[ERR]"), strings.HasPrefix(msg, "[ERROR]"):
			level = hclog.Error
		case strings.HasPrefix(msg, "[WARN]"):
			level = hclog.Warn
		case strings.HasPrefix(msg, "[DEBUG]"):
			level = hclog.Debug
		}
		h.Log(level, msg)
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
