package runner

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/chaos/report"
	"github.com/switchboard-io/switchboard/deploy"
	"github.com/switchboard-io/switchboard/internal/testlock"
)

// buildTestImage builds this checkout's image for a test and removes it
// afterwards; it skips the test when Docker is not usable.
func buildTestImage(ctx context.Context, t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Docker containers: skipped under -short")
	}
	if err := deploy.DockerUsable(ctx); err != nil {
		t.Skipf("%v: skipping the docker driver test", err)
	}
	// Containers add and remove networks: no browser test may run meanwhile.
	testlock.Lock(t, testlock.HostNetwork)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	image := "switchboard:chaos-test-" + strconv.Itoa(rand.IntN(1e8))
	if err := deploy.BuildImage(ctx, root, t.TempDir(), image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

// runDocker runs a scenario on the docker driver with a small workload and
// fails the test unless it passes.
func runDocker(ctx context.Context, t *testing.T, scenario string, d time.Duration, seed uint64) *report.Report {
	t.Helper()
	image := buildTestImage(ctx, t)
	return runSmall(ctx, t, Options{Scenario: scenario, Driver: "docker", Image: image, Duration: d, Seed: seed})
}

// runSmall runs o with a small workload (one session pair unless
// o.NoSessions, 2 × 2 log clients), its report in a temporary directory (kept, and named, when the
// test fails), and fails the test unless the run passes.
func runSmall(ctx context.Context, t *testing.T, o Options) *report.Report {
	t.Helper()
	dir, err := os.MkdirTemp("", "chaos-"+o.Driver+"-"+o.Scenario+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("report, history and node logs kept in %s", dir)
			return
		}
		_ = unmountBelow(dir)
		os.RemoveAll(dir)
	})
	o.Report, o.LogGroups, o.LogClientsPerGroup = dir, 2, 2
	if !o.NoSessions {
		o.Sessions = 1
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rep, err := Run(ctx, o)
	if rep != nil {
		t.Log(rep.Summary())
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Loss and one-way partitions inside the containers' network namespaces
// (root only): every fault is injected and every checker passes.
func TestDockerRunNetworkScenario(t *testing.T) {
	if why := netProblem("docker", nemesis.OneWay); why != "" {
		t.Skipf("the network scenario %s", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep := runDocker(ctx, t, "network", 20*time.Second, 4)
	if len(rep.Faults) == 0 {
		t.Fatal("no fault planned")
	}
	for _, f := range rep.Faults {
		if f.Node == "" || f.Note != "" {
			t.Errorf("fault %+v not injected cleanly", f)
		}
	}
}

// The docker driver: containers of this checkout's image on a private
// network, with kills, pauses and network isolation of nodes; every checker
// passes and the containers, network and volumes are gone afterwards.
func TestDockerRunAllScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep := runDocker(ctx, t, "all", 25*time.Second, 3)
	kinds := map[nemesis.Kind]int{}
	for _, f := range rep.Faults {
		if f.Node != "" {
			kinds[f.Kind]++
		}
	}
	if kinds[nemesis.Isolate] == 0 && kinds[nemesis.Kill] == 0 {
		t.Errorf("no kill and no isolation happened: %v", kinds)
	}
	// Nothing is left behind.
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "name=sbchaos", "--format", "{{.Names}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("containers left: %s", out)
	}
}
