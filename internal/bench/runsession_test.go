package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildSwitchboard builds the product binary (the session benches start it
// as the nodes, and as the echo backend).
func buildSwitchboard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/switchboard").CombinedOutput(); err != nil {
		t.Fatalf("build switchboard: %v\n%s", err, out)
	}
	return bin
}

func TestParseSessionFlags(t *testing.T) {
	cfg, err := parseSessionFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sessions != 64 || cfg.duration != 10*time.Second || cfg.peer != PeerNone || cfg.rounds != 1 || cfg.frameSize != 128 || cfg.window != 256 {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = parseSessionFlags([]string{"--sessions", "2", "--peer", "nginx", "--node-args", "--enable-pprof --log-level warn"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sessions != 2 || cfg.peer != PeerNginx || strings.Join(cfg.nodeArgs, " ") != "--enable-pprof --log-level warn" {
		t.Fatalf("values: %+v", cfg)
	}
	_, err = parseSessionFlags([]string{"--sessions", "0", "--peer", "etcd", "--frame-size", "8"})
	for _, want := range []string{"--sessions", "--peer", "--frame-size"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestParseFailoverFlags(t *testing.T) {
	cfg, err := parseFailoverFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 10 || cfg.interval != 5*time.Millisecond || cfg.maxP99 != 2*time.Second {
		t.Fatalf("defaults: %+v", cfg)
	}
	_, err = parseFailoverFlags([]string{"--rounds", "0", "--interval", "0s"})
	for _, want := range []string{"--rounds", "--interval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestParseSessionMetrics(t *testing.T) {
	text := `# HELP switchboard_entity_active Entities active on this node by kind.
# TYPE switchboard_entity_active gauge
switchboard_entity_active{kind="counter"} 3
switchboard_entity_active{kind="session"} 2
switchboard_entity_commands_total{kind="session",outcome="ok"} 1234
switchboard_entity_commands_total{kind="session",outcome="rejected"} 7
switchboard_entity_commands_total{kind="counter",outcome="ok"} 99
`
	if got := parseSessionMetrics(strings.NewReader(text)); got != (sessionMetrics{activeSessions: 2, sessionCommandsOK: 1234}) {
		t.Fatalf("got %+v", got)
	}
	if got := parseSessionMetrics(strings.NewReader("up 1\n")); got != (sessionMetrics{}) {
		t.Fatalf("got %+v, want zero", got)
	}
}

func TestResumeQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := resumeQuantile(ds, 0.5), resumeQuantile(ds, 0.99); p50 != 5*time.Millisecond || p99 != 10*time.Millisecond {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
	if resumeQuantile(nil, 0.5) != 0 {
		t.Fatal("empty")
	}
}

// benchValues returns the key=value pairs of the first BENCH line starting
// with prefix.
func benchValues(t *testing.T, out, prefix string) map[string]string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			kv := map[string]string{}
			for _, f := range strings.Fields(strings.TrimPrefix(line, prefix)) {
				k, v, _ := strings.Cut(f, "=")
				kv[k] = v
			}
			return kv
		}
	}
	t.Fatalf("no line %q in output:\n%s", prefix, out)
	return nil
}

func positive(t *testing.T, kv map[string]string, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(kv[key], 64)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive number", key, kv[key])
	}
	return v
}

// nginxUsable reports whether the nginx peer can run here: nginx is
// installed, or we are root and apt-get can install it.
func nginxUsable() bool {
	if _, ok := lookNginx("nginx"); ok {
		return true
	}
	_, err := exec.LookPath("apt-get")
	return os.Geteuid() == 0 && err == nil
}

// TestRunSessionScaledDown runs `bench session` on a real three-node cluster
// with two sessions for one second per phase, and (when nginx is installed
// or installable) the nginx peer.
func TestRunSessionScaledDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster: skipped under -short")
	}
	bin := buildSwitchboard(t)
	peer := PeerNginx
	if !nginxUsable() {
		t.Log("nginx neither installed nor installable (not root): running without the nginx peer")
		peer = PeerNone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := runSession(ctx, []string{"--binary", bin, "--sessions", "2", "--duration", "1s", "--warmup", "200ms",
		"--peer", peer, "--keep", t.TempDir(), "--node-args", "--log-level warn"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("output:\n%s", out)
	durable := benchValues(t, out, "BENCH session")
	positive(t, durable, "durable_frames_per_s")
	positive(t, durable, "p99_ms")
	if durable["errors"] != "0" || durable["sessions"] != "2" {
		t.Fatalf("durable line: %v", durable)
	}
	if !regexp.MustCompile(`(?m)^BENCH session stream_frames_per_s=[1-9][0-9]* p50_ms=[0-9.]+ p99_ms=[0-9.]+ sessions=2 lost=-?[0-9]+$`).MatchString(out) {
		t.Fatalf("no valid stream line:\n%s", out)
	}
	if peer == PeerNginx {
		e := benchValues(t, out, "BENCH nginx_ws")
		positive(t, e, "echo_msgs_per_s")
		r := benchValues(t, out, "BENCH session_vs_nginx")
		positive(t, r, "durable_ratio")
		positive(t, r, "stream_ratio")
	}
}

// TestRunFailoverOneRound kills the guest's node once under traffic and
// checks the summary: resumed, nothing lost or duplicated.
func TestRunFailoverOneRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills node processes: skipped under -short")
	}
	bin := buildSwitchboard(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// --max-p99 is generous: the test checks the driver, not the machine.
	err := runFailover(ctx, []string{"--binary", bin, "--rounds", "1", "--max-p99", "30s", "--keep", t.TempDir(),
		"--node-args", "--log-level warn"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("output:\n%s", out)
	r := benchValues(t, out, "BENCH failover_round")
	if r["n"] != "1" || (r["killed"] != "client" && r["killed"] != "both") {
		t.Fatalf("round line: %v", r)
	}
	positive(t, r, "resume_ms")
	s := benchValues(t, out, "BENCH failover")
	if s["lost"] != "0" || s["duplicated"] != "0" || s["reordered"] != "0" || s["rounds"] != "1" {
		t.Fatalf("summary: %v", s)
	}
	positive(t, s, "resume_p99_ms")
}
