package logutil

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogWritesStructuredSlog(t *testing.T) {
	var buf bytes.Buffer
	l := HCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Debug("hidden")
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []int{1, 2}), "err", errors.New("boom"))
	l.Named("snap").Warn("slow")
	out := buf.String()
	for _, want := range []string{`msg="initial configuration"`, `logger=raft`, `servers="[1 2]"`, `err=boom`, `logger=raft.snap`, `level=WARN`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("debug line written at info level:\n%s", out)
	}
	if l.IsDebug() || !l.IsInfo() {
		t.Errorf("level checks: debug %v info %v", l.IsDebug(), l.IsInfo())
	}
}
