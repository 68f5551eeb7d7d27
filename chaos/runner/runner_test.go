package runner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/chaos/report"
)

// A short run of the kill scenario against three node processes: faults
// happen as planned, every checker runs and passes, and the report on disk
// says so and holds the command that replays the run.
func TestProcessRunKillScenario(t *testing.T) {
	dir := t.TempDir()
	rep := runProcessScenario(t, Options{Scenario: "kill", Duration: 20 * time.Second, Seed: 7, Report: dir, Sessions: 1,
		LogGroups: 2, LogClientsPerGroup: 2})
	if len(rep.Plan) == 0 || len(rep.Faults) != len(rep.Plan) {
		t.Fatalf("planned %d faults, injected %d", len(rep.Plan), len(rep.Faults))
	}
	for _, f := range rep.Faults {
		if f.Node == "" || f.Healed <= f.Started {
			t.Errorf("fault %+v did not hit a node and heal", f)
		}
	}
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	if want := []string{check.AppendsName, check.LinearName, check.ProjectionsName, check.FramesName, check.AvailabilityName, check.ResumesName}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("checks %v, want %v", names, want)
	}

	if page, err := os.ReadFile(filepath.Join(dir, report.HTMLFileName)); err != nil || !strings.Contains(string(page), "<svg") {
		t.Errorf("report.html: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, report.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk struct {
		Pass   bool   `json:"pass"`
		Replay string `json:"replay"`
		Seed   uint64 `json:"seed"`
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if !onDisk.Pass || onDisk.Seed != 7 || !strings.Contains(onDisk.Replay, "--scenario kill --nodes 3 --duration 20s --seed 7 --driver process") {
		t.Errorf("report on disk: %+v", onDisk)
	}
	// Every run's nodes snapshot often, and the replay says so.
	if !strings.Contains(onDisk.Replay, "--raft-snapshot-threshold 1024 --raft-trailing-logs 256 --raft-snapshot-interval 2s") {
		t.Errorf("replay %q lacks the snapshot node arguments", onDisk.Replay)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestOptionsValidateReportsEveryProblem(t *testing.T) {
	err := Options{Scenario: "nope", Nodes: 2, Duration: time.Second, Driver: "vm"}.Validate()
	for _, want := range []string{"--nodes 2", "--duration 1s", `--driver "vm"`, "--report", "binary", `scenario "nope"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	// The process driver isolates nodes as root (a cgroup per node), and
	// says why not otherwise.
	err = Options{Scenario: "partition", Nodes: 3, Duration: time.Minute, Driver: "process", Report: "r", Binary: "b"}.Validate()
	if why := hostNetProblem(nemesis.Isolate); why == "" && err != nil {
		t.Errorf("partition on the process driver, which can inject it here: %v", err)
	} else if why != "" && (err == nil || !strings.Contains(err.Error(), why)) {
		t.Errorf("partition on the process driver: %v, want it to say %q", err, why)
	}
	if err := (Options{Scenario: "partition", Nodes: 3, Duration: time.Minute, Driver: "docker", Report: "r"}).Validate(); err != nil {
		t.Errorf("partition on the docker driver: %v", err)
	}
}

// The member nemesis against node processes: every fault adds a node and
// retires one (the leader, a session client's node or any), the cluster
// ends with as many voters as it began with, and every checker passes on
// the nodes that remain.
func TestProcessRunMembershipScenario(t *testing.T) {
	rep := runProcessScenario(t, Options{Scenario: "membership", Duration: 15 * time.Second, Seed: 71, Report: t.TempDir(), Sessions: 1,
		LogGroups: 1, LogClientsPerGroup: 2})
	changes := 0
	for _, f := range rep.Faults {
		if f.Kind != nemesis.Member {
			t.Errorf("fault %+v is not a membership change", f)
		}
		if f.Note != "" || f.Ready == 0 {
			t.Errorf("membership change %+v: note %q, ready %v", f, f.Note, f.Ready)
		}
		changes++
	}
	if changes == 0 {
		t.Fatal("no membership change happened")
	}
	// The replay names the shortened grace periods.
	if !strings.Contains(rep.Replay, "--cluster-dead-server-grace 2s") {
		t.Errorf("replay %q lacks the member nemesis' node arguments", rep.Replay)
	}
}

// runProcessScenario runs o against node processes of the test binary (not
// under -short) and fails the test, with the report's summary and the nodes'
// log tails, unless the run passes.
func runProcessScenario(t *testing.T, o Options) *report.Report {
	t.Helper()
	if testing.Short() {
		t.Skip("starts node processes: skipped under -short")
	}
	o.Binary = testBinary(t)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		if rep != nil {
			t.Log(rep.Summary())
		}
		logs, _ := filepath.Glob(filepath.Join(o.Report, "cluster", "n*.log"))
		for _, l := range logs {
			if b, rerr := os.ReadFile(l); rerr == nil {
				t.Logf("--- %s tail ---\n%s", filepath.Base(l), tail(string(b), 3000))
			}
		}
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	return rep
}
