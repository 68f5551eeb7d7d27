package bench

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseGatewayFlags(t *testing.T) {
	cfg, err := parseGatewayFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.events != 1_000_000 || cfg.sessions != 10_000 || cfg.live != 1_000 {
		t.Fatalf("defaults: %+v", cfg)
	}
	if _, err := parseGatewayFlags([]string{"--sessions", "5", "--live", "6"}); err == nil || !strings.Contains(err.Error(), "--live") {
		t.Fatalf("live > sessions: %v", err)
	}
	if _, err := parseGatewayFlags([]string{"--frames", "5000"}); err == nil {
		t.Fatal("too many frames per session accepted")
	}
}

// The driver end to end, scaled down: every view is measured through the
// admin API of a real node whose log holds the sessions and filler.
func TestRunGatewayScaledDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process: skipped under -short")
	}
	bin := buildSwitchboard(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := runGateway(ctx, []string{"--binary", bin, "--events", "6000", "--sessions", "200", "--live", "20", "--queries", "5", "--frames", "4"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	line := regexp.MustCompile(`(?m)^BENCH gateway view=(\w+) p50_ms=[0-9.]+ p99_ms=[0-9.]+ queries=5$`)
	views := map[string]bool{}
	for _, m := range line.FindAllStringSubmatch(out.String(), -1) {
		views[m[1]] = true
	}
	for _, want := range []string{"cluster", "live_sessions", "session", "history_user", "history_time", "history_all", "failover", "audit_recent", "audit_actor", "audit_type", "audit_stream", "accounts"} {
		if !views[want] {
			t.Errorf("no BENCH line for view %s:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`(?m)^BENCH gateway_summary events=6000 sessions=200 worst_p99_ms=[0-9.]+$`).MatchString(out.String()) {
		t.Errorf("no summary line:\n%s", out.String())
	}
}
