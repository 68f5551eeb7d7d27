package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func quietOpts(t *testing.T) ClusterOptions {
	return ClusterOptions{ReadyTimeout: 20 * time.Second, StopTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestLogClusterWithFakeNodes(t *testing.T) {
	t.Setenv(fakeNodeEnv, "1")
	dir := t.TempDir()
	ctx := t.Context()
	c, err := StartLogClusterWith(ctx, testExe(t), 3, dir, quietOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := c.Addrs(); len(got) != 3 || got[0] == got[1] || !strings.HasPrefix(got[0], "127.0.0.1:") {
		t.Fatalf("Addrs() = %v", got)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if i, err := c.Leader(lctx); err != nil || i != 0 {
		t.Fatalf("Leader() = %d, %v; want 0", i, err)
	}
	pid := c.Nodes[1].Proc.Pid()
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	if c.Nodes[1].Proc.Running() || alive(pid) {
		t.Fatal("node 1 still running after Kill")
	}
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pids := []int{c.Nodes[0].Proc.Pid(), c.Nodes[1].Proc.Pid(), c.Nodes[2].Proc.Pid()}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for i, p := range pids {
		if alive(p) {
			t.Errorf("node %d (pid %d) alive after Stop", i, p)
		}
		if err := c.Nodes[i].Proc.ExitErr(); err != nil {
			t.Errorf("node %d exit after SIGTERM: %v", i, err)
		}
	}
	logb, err := os.ReadFile(filepath.Join(dir, "n2.log"))
	if err != nil || strings.Count(string(logb), "fake node n2 serving") != 2 {
		t.Fatalf("n2.log should show two starts: %v\n%s", err, logb)
	}
}

func TestLogClusterKilledOnContextCancel(t *testing.T) {
	t.Setenv(fakeNodeEnv, "1")
	ctx, cancel := context.WithCancel(t.Context())
	c, err := StartLogClusterWith(ctx, testExe(t), 3, t.TempDir(), quietOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for i, nd := range c.Nodes {
		select {
		case <-nd.Proc.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d still running 10s after the context was cancelled", i)
		}
	}
}

func TestLogClusterReportsNodeThatExits(t *testing.T) {
	// /bin/false exits at once: the error names the node and its log.
	_, err := StartLogClusterWith(t.Context(), "/bin/false", 3, t.TempDir(), quietOpts(t))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), ".log") {
		t.Fatalf("got %v", err)
	}
}

var (
	logLineRE   = regexp.MustCompile(`^BENCH log appends_per_s=\d+ p50_ms=\d+\.\d\d p99_ms=\d+\.\d\d clients=(\d+) errors=(\d+) rounds=\d+$`)
	etcdLineRE  = regexp.MustCompile(`^BENCH etcd puts_per_s=\d+ p50_ms=\d+\.\d\d p99_ms=\d+\.\d\d clients=(\d+) errors=(\d+) rounds=\d+$`)
	ratioLineRE = regexp.MustCompile(`^BENCH log_vs_etcd ratio=\d+\.\d\d p99_ratio=\d+\.\d\d clients=(\d+)$`)
)

func TestRunLogWithFakeNodes(t *testing.T) {
	t.Setenv(fakeNodeEnv, "1")
	for _, target := range []string{TargetAll, TargetLeader} {
		t.Run(target, func(t *testing.T) {
			var out, errb bytes.Buffer
			keep := filepath.Join(t.TempDir(), "keep")
			err := runLog(t.Context(), []string{"--binary", testExe(t), "--clients", "1,20", "--duration", "600ms",
				"--warmup", "100ms", "--keep", keep, "--target", target}, &out, &errb)
			if err != nil {
				t.Fatalf("runLog: %v\nstderr:\n%s", err, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("want 2 lines, got:\n%s", out.String())
			}
			for i, want := range []string{"1", "20"} {
				m := logLineRE.FindStringSubmatch(lines[i])
				if m == nil || m[1] != want || m[2] != "0" {
					t.Errorf("line %d: %q", i, lines[i])
				}
				if strings.Contains(lines[i], "appends_per_s=0 ") {
					t.Errorf("line %d: no successful appends: %q", i, lines[i])
				}
			}
			if _, err := os.Stat(filepath.Join(keep, "log", "n1.log")); err != nil {
				t.Errorf("--keep: %v", err)
			}
			if target == TargetLeader && !strings.Contains(errb.String(), "node=n1") {
				t.Errorf("leader n1 not reported:\n%s", errb.String())
			}
		})
	}
}

func TestRunLogCountsErrors(t *testing.T) {
	t.Setenv(fakeNodeEnv, "1")
	// The fake node rejects appends of 13-byte events to stream s0 with a
	// conflict: the unary API reports the node's message, the
	// stream client a typed conflict error.
	for api, want := range map[string]string{APIUnary: "fake conflict", APIStream: "expected any version, current version"} {
		t.Run(api, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runLog(t.Context(), []string{"--binary", testExe(t), "--clients", "4", "--streams", "2", "--event-size", "13",
				"--duration", "500ms", "--warmup", "50ms", "--api", api}, &out, &errb)
			if err != nil {
				t.Fatalf("runLog: %v\n%s", err, errb.String())
			}
			m := logLineRE.FindStringSubmatch(strings.TrimSpace(out.String()))
			if m == nil || m[2] == "0" {
				t.Fatalf("want errors counted: %q", out.String())
			}
			if !strings.Contains(errb.String(), want) {
				t.Errorf("error kind (%q) not reported on stderr:\n%s", want, errb.String())
			}
		})
	}
}

func TestRunLogAgainstEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member etcd (not in -short)")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not on PATH (Debian: apt-get install etcd-server)")
	}
	t.Setenv(fakeNodeEnv, "1")
	var out, errb bytes.Buffer
	err := runLog(t.Context(), []string{"--binary", testExe(t), "--clients", "2,17", "--duration", "1s",
		"--warmup", "200ms", "--peer", "etcd", "--rounds", "2"}, &out, &errb)
	if err != nil {
		t.Fatalf("runLog: %v\nstderr:\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("want 6 lines, got:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	want := []struct {
		re *regexp.Regexp
		c  string
	}{{logLineRE, "2"}, {etcdLineRE, "2"}, {ratioLineRE, "2"}, {logLineRE, "17"}, {etcdLineRE, "17"}, {ratioLineRE, "17"}}
	for i, w := range want {
		m := w.re.FindStringSubmatch(lines[i])
		if m == nil || m[1] != w.c {
			t.Errorf("line %d: %q", i, lines[i])
		}
		if w.re == etcdLineRE && (m == nil || m[2] != "0" || strings.Contains(lines[i], "puts_per_s=0 ")) {
			t.Errorf("line %d: etcd puts failed: %q", i, lines[i])
		}
		if w.re != ratioLineRE && !strings.HasSuffix(lines[i], " rounds=2") {
			t.Errorf("line %d does not report 2 rounds: %q", i, lines[i])
		}
	}
	t.Logf("\n%s", out.String())
}

func TestParseLeaderMetric(t *testing.T) {
	cases := map[string]bool{
		"switchboard_raft_state{state=\"Leader\"} 1\n":                                                         true,
		"# HELP x\nswitchboard_raft_state{state=\"Follower\"} 1\nswitchboard_raft_state{state=\"Leader\"} 0\n": false,
		"switchboard_raft_state{state=\"Leader\"} 1e+00\n":                                                     true,
		"other{state=\"Leader\"} 1\n":                                                                          false,
		"":                                                                                                     false,
	}
	for in, want := range cases {
		if got := parseLeaderMetric(strings.NewReader(in)); got != want {
			t.Errorf("%q: got %v", in, got)
		}
	}
}

func TestFormatting(t *testing.T) {
	if got := ms(18400 * time.Microsecond); got != "18.40" {
		t.Errorf("ms = %q", got)
	}
	if got := ratio(7421, 3600); got != "2.06" {
		t.Errorf("ratio = %q", got)
	}
	if ratio(1, 0) != "inf" || ratio(0, 0) != "nan" {
		t.Error("ratio with zero denominator")
	}
}

func TestMedianRoundPicksTheMiddleRate(t *testing.T) {
	r := func(ok uint64) Result { return Result{Window: time.Second, OK: ok} }
	if got := medianRound([]Result{r(30), r(10), r(20)}).OK; got != 20 {
		t.Errorf("median of 30,10,20 = %d", got)
	}
	if got := medianRound([]Result{r(40), r(10)}).OK; got != 10 {
		t.Errorf("lower middle of 40,10 = %d", got)
	}
	if got := medianRound([]Result{r(7)}).OK; got != 7 {
		t.Errorf("single round = %d", got)
	}
}
