package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
)

// The driver writes counter.Added events without importing the counter
// package: its encoding must be entity.EncodeEvent's, byte for byte.
func TestCounterAddedEncodingMatchesEntity(t *testing.T) {
	ev, err := entity.EncodeEvent(&counter.Added{Delta: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != counterAddedType || !bytes.Equal(ev.Data, counterAddedOne) {
		t.Fatalf("driver writes %q %x, entity.EncodeEvent gives %q %x", counterAddedType, counterAddedOne, ev.Type, ev.Data)
	}
	if counterKind != counter.Kind {
		t.Fatalf("driver's kind %q, counter.Kind %q", counterKind, counter.Kind)
	}
}

func TestParseClusterFlags(t *testing.T) {
	cfg, err := parseClusterFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.replayEvents != 1_000_000 || !slices.Equal(cfg.sizes, []int{0, 1000, 100000}) || !slices.Equal(cfg.samples, []int{20, 20, 5}) {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parseClusterFlags([]string{"--sizes", "0,10", "--samples", "3", "--replay-events", "5_000", "--node-args", "--a 1  --b"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.samples, []int{3, 3}) || cfg.replayEvents != 5000 || !slices.Equal(cfg.nodeArgs, []string{"--a", "1", "--b"}) {
		t.Errorf("values: %+v", cfg)
	}
	_, err = parseClusterFlags([]string{"--sizes", "x", "--samples", "1,2,3,4", "--ready-rounds", "0", "--appenders", "0"})
	if err == nil {
		t.Fatal("bad flags accepted")
	}
	for _, want := range []string{"--sizes", "--ready-rounds", "--appenders"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if _, err := parseClusterFlags([]string{"--samples", "1,2"}); err == nil || !strings.Contains(err.Error(), "2 counts for 3 sizes") {
		t.Errorf("sample count mismatch: %v", err)
	}
	if _, err := parseClusterFlags([]string{"-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), "--replay-events") && !strings.Contains(err.Error(), "-replay-events") {
		t.Errorf("help: %v", err)
	}
}

func TestCountLabelAndNearestRank(t *testing.T) {
	for n, want := range map[int]string{0: "0", 500: "500", 1000: "1k", 1500: "1.5k", 100000: "100k", 1_000_000: "1m", 2_500_000: "2.5m", 1234: "1234"} {
		if got := countLabel(n); got != want {
			t.Errorf("countLabel(%d) = %s, want %s", n, got, want)
		}
	}
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, time.Duration(i))
	}
	if p50, p99 := nearestRank(d, 0.5), nearestRank(d, 0.99); p50 != 10 || p99 != 20 {
		t.Errorf("p50 %d p99 %d of 1..20", p50, p99)
	}
	if got := nearestRank(d[:1], 0.5); got != 1 {
		t.Errorf("one sample: %d", got)
	}
}

func TestBenchStreamsFillUpToReplayEvents(t *testing.T) {
	cfg := clusterConfig{sizes: []int{0, 1000, 100000}, samples: []int{20, 20, 5}, replayEvents: 1_000_000}
	loads, total := benchStreams(cfg)
	sum, cold := 0, 0
	for _, l := range loads {
		sum += l.events
		if strings.HasPrefix(l.stream, counterKind+"/") {
			cold++
		}
	}
	if total != 1_000_000 || sum != total || cold != 25 {
		t.Errorf("total %d, sum %d, %d cold streams", total, sum, cold)
	}
	// More in the grains than asked for the replay: no filler.
	cfg.replayEvents = 10
	if loads, total = benchStreams(cfg); total != 520_000 || len(loads) != 25 {
		t.Errorf("total %d in %d streams", total, len(loads))
	}
}

// The driver, scaled down, against real node processes (a testkinds build):
// every measurement is made and printed in the BENCH lines.
func TestRunClusterScaledDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds switchboard with -tags testkinds and runs node processes (not in -short)")
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command("go", "build", "-tags", "testkinds", "-o", bin, "../../cmd/switchboard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := runCluster(ctx, []string{"--binary", bin, "--ready-rounds", "1", "--replay-events", "3000", "--sizes", "0,50,1000",
		"--samples", "3,3,2", "--keep", t.TempDir()}, &out, io.Discard)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	var summary string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "BENCH cluster ") {
			summary = line
		}
	}
	num := `([0-9]+\.[0-9]+)`
	for _, key := range []string{"ready_ms", "replay_ready_ms", "replay_3k_events_s", "activate_p50_ms_0", "activate_p99_ms_0",
		"activate_p50_ms_50", "activate_p99_ms_50", "activate_p50_ms_1k", "activate_p99_ms_1k"} {
		m := regexp.MustCompile(`\b` + key + `=` + num + `\b`).FindStringSubmatch(summary)
		if m == nil {
			t.Errorf("summary lacks %s: %q", key, summary)
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
			t.Errorf("%s = %v", key, v)
		}
	}
	// The node's own events (the first administrator) come on top of the 3000.
	if m := regexp.MustCompile(`BENCH cluster_replay events=([0-9]+) `).FindStringSubmatch(out.String()); m == nil {
		t.Errorf("no replay line:\n%s", out.String())
	} else if n, _ := strconv.Atoi(m[1]); n < 3000 || n > 3010 {
		t.Errorf("the full replay re-applied %d events, want the 3000 written (and the node's own few):\n%s", n, out.String())
	}
	if !regexp.MustCompile(`BENCH cluster_restart .* reapplied_events=0\b`).MatchString(out.String()) {
		t.Errorf("a clean restart re-applied events:\n%s", out.String())
	}
}

// A binary without the test counter kind is refused with the fix.
func TestRunClusterNeedsTestkindsBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds switchboard and runs a node process (not in -short)")
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/switchboard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runCluster(ctx, []string{"--binary", bin, "--ready-rounds", "1", "--replay-events", "10", "--sizes", "0", "--samples", "1"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-tags testkinds") {
		t.Fatalf("want an error naming -tags testkinds, got %v", err)
	}
}
