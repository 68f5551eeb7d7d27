package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/chaos/runner"
)

const chaosUsage = `Usage:
  switchboard chaos run --scenario NAME|FILE --seed S --report DIR [flags]

Starts a cluster of this binary, runs log and session workloads, injects the
scenario's faults on a schedule derived from the seed, heals, waits for the
cluster to converge and checks: no acknowledged append missing, every stream
linearizable, no durable frame lost, duplicated or reordered. Writes
DIR/report.json and exits non-zero on any violation. docs/chaos.md.
Built-in scenarios: ` + "%s" + `. Add --help to list the flags.
`

// chaosCmd runs `switchboard chaos ...`.
func chaosCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintf(stderr, chaosUsage, strings.Join(nemesis.Builtins(), ", "))
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return fmt.Errorf("chaos: expected run")
	}
	o := runner.Options{}
	fs := flag.NewFlagSet("chaos run", flag.ContinueOnError)
	fs.StringVar(&o.Scenario, "scenario", "smoke", "built-in scenario ("+strings.Join(nemesis.Builtins(), ", ")+") or a JSON scenario file")
	fs.IntVar(&o.Nodes, "nodes", 3, "cluster size")
	fs.DurationVar(&o.Duration, "duration", time.Minute, "how long the workloads run and faults are injected")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the fault schedule and the workloads (default: from the clock, printed)")
	fs.StringVar(&o.Driver, "driver", "process", "how nodes run: process (node processes on loopback), netns (node processes in network namespaces of their own on a bridge; root; can isolate and partition nodes) or docker (containers of --image on a private network; can isolate nodes, and partition them as root)")
	fs.StringVar(&o.Image, "image", "switchboard:latest", "docker driver: the node image (make image)")
	fs.StringVar(&o.Report, "report", "", "directory for report.json and the nodes' data and logs (required)")
	fs.StringVar(&o.Binary, "binary", "", "switchboard binary the nodes run (default: this executable)")
	sessions := fs.Int("sessions", 2, "session pairs exchanging durable frames (0: log workload only)")
	nodeArgs := fs.String("node-args", "", "extra arguments for every node, space-separated")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (progress on stderr)")
	fs.DurationVar(&o.Thresholds.Grace, "availability-grace", 5*time.Second, "how long after a fault healed the cluster may serve nothing (log operations; with sessions, durable frames) before the availability check fails")
	fs.DurationVar(&o.Thresholds.ResumeP99, "resume-p99", 2*time.Second, "the highest 99th percentile of session resume times that passes")
	fs.DurationVar(&o.Thresholds.ResumeMax, "resume-max", 10*time.Second, "the longest single session resume that passes")
	diskSize := fs.String("disk-size", "512MiB", "scenarios with diskfull: the size of each node's data file system (a tmpfs; root)")
	if err := parseFlags(fs, "switchboard chaos run [flags]", args[1:], stdout); err != nil {
		return err
	}
	o.Sessions, o.NoSessions = *sessions, *sessions == 0
	o.NodeArgs = strings.Fields(*nodeArgs)
	size, err := runner.ParseSize(*diskSize)
	if err != nil {
		return fmt.Errorf("chaos: --disk-size: %w", err)
	}
	o.DiskSize = size
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("chaos: --binary not given and this executable is unknown: %w", err)
		}
		o.Binary = exe
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("chaos: --log-level: %w", err)
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	fmt.Fprintf(stderr, "chaos: seed %d; replay with: %s\n", o.Seed, o.ReplayCommand())
	rep, err := runner.Run(ctx, o)
	if rep != nil {
		fmt.Fprint(stdout, rep.Summary())
	}
	return err
}
