package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// Lines of memberlist v0.7.0 (state.go) that carry state this package needs
// and memberlist tells no delegate:
//   - deadNode, when it receives a DEAD message about this node and refutes
//     it: "[WARN] memberlist: Refuting a dead message (from: %s)";
//   - probeNode, when this node's probe of a member failed and it starts
//     suspecting it: "[INFO] memberlist: Suspect %s has failed, no acks received".
const (
	refuteDeadPrefix = "Refuting a dead message (from: "
	suspectPrefix    = "Suspect "
	suspectSuffix    = " has failed, no acks received"
)

// logHooks are called for the lines above. They may run with memberlist's
// node lock held: they must only take Membership.mu and must not block.
type logHooks struct {
	refuteDead func(from string)
	suspect    func(member string)
}

// logWriter is the io.Writer behind memberlist's *log.Logger. Each Write is
// one line "[LEVEL] memberlist: text" (log.Logger writes a line per call);
// it becomes one slog record: [DEBUG] at Debug, [INFO] at Info, [WARN] at
// Warn, [ERR]/[ERROR] at Error, anything else at Info; the hooks see the
// lines listed above.
type logWriter struct {
	l     *slog.Logger
	hooks logHooks
}

func newStdLogger(l *slog.Logger, hooks logHooks) *log.Logger {
	return log.New(&logWriter{l: l, hooks: hooks}, "", 0)
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		w.line(string(line))
	}
	return len(p), nil
}

func (w *logWriter) line(s string) {
	level, msg := parseLine(s)
	if w.hooks.refuteDead != nil {
		if rest, ok := strings.CutPrefix(msg, refuteDeadPrefix); ok {
			w.hooks.refuteDead(strings.TrimSuffix(rest, ")"))
		}
	}
	if w.hooks.suspect != nil {
		if rest, ok := strings.CutPrefix(msg, suspectPrefix); ok {
			if name, ok := strings.CutSuffix(rest, suspectSuffix); ok {
				w.hooks.suspect(name)
			}
		}
	}
	if msg == "" || !w.l.Enabled(context.Background(), level) {
		return
	}
	w.l.Log(context.Background(), level, msg, "source", "memberlist")
}

// parseLine splits "[LEVEL] memberlist: text" into a slog level and the text.
func parseLine(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch s[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return level, s
}
