// Package runner runs a chaos scenario against a real cluster: it starts the
// nodes through a driver, runs the workloads, injects the faults the
// scenario and seed plan, heals everything, waits for the cluster to
// converge, runs the checkers and writes the report (chaos/report).
//
// Drivers: "process" (node processes of the project's binary on loopback;
// kill, pause, restart), "netns" (the same processes, each in a network
// namespace of its own on a bridge; also isolation, partitions between nodes,
// loss and one-way partitions) and "docker" (containers of the project's
// image on a private network; as netns). With root, the process and netns
// drivers put each node's data on a small tmpfs for the diskfull nemesis.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/chaos/report"
	"github.com/switchboard-io/switchboard/chaos/workload"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// Options of a run.
type Options struct {
	Scenario string        // built-in name or JSON file (nemesis.Load)
	Nodes    int           // cluster size (default 3)
	Duration time.Duration // workload and faults (default 60 s)
	Seed     uint64        // plans the faults and the workload's choices
	Driver   string        // "process", "netns" or "docker"
	Image    string        // docker driver: the node image (default switchboard:latest)
	Report   string        // directory for report.json and the nodes' data and logs
	Binary   string        // switchboard binary the nodes run
	NodeArgs []string      // extra arguments for every node
	Sessions int           // session pairs (default 2; 0 with NoSessions)
	// DiskSize is the size of each node's data file system (a tmpfs)
	// when the scenario fills disks (default 512 MiB).
	DiskSize int64
	// NoSessions runs the log workload alone.
	NoSessions bool
	// LogGroups × LogClientsPerGroup log clients (defaults 2 × 3).
	LogGroups, LogClientsPerGroup int
	// ConvergeTimeout bounds the wait for every node to be ready again
	// after healing, and for frames in flight to arrive (default 90 s).
	ConvergeTimeout time.Duration
	// LinearTimeout bounds the linearizability check (default 2 min).
	LinearTimeout time.Duration
	// Thresholds: availability outside fault windows, session resume
	// times (zero fields take their defaults).
	Thresholds Thresholds
	Logger     *slog.Logger

	// start, when set (tests), replaces the driver.
	start func(ctx context.Context, dir string) (Driver, error)
}

func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Duration == 0 {
		o.Duration = time.Minute
	}
	if o.Driver == "" {
		o.Driver = "process"
	}
	if o.Image == "" {
		o.Image = "switchboard:latest"
	}
	if o.Sessions == 0 && !o.NoSessions {
		o.Sessions = 2
	}
	if o.DiskSize == 0 {
		o.DiskSize = defaultDiskSize
	}
	if o.ConvergeTimeout == 0 {
		o.ConvergeTimeout = 90 * time.Second
	}
	if o.LinearTimeout == 0 {
		o.LinearTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

const defaultDiskSize = 512 << 20

// kindProblem says why driver cannot inject faults of kind k here ("" when
// it can).
func kindProblem(driver string, k nemesis.Kind) string {
	switch k {
	case nemesis.Kill, nemesis.Pause, nemesis.Restart:
		return ""
	case nemesis.DiskFull:
		if os.Geteuid() != 0 {
			return "needs root (each node's data directory is a tmpfs the driver mounts)"
		}
		return ""
	case nemesis.Member:
		if driver == "netns" {
			return netProblem("netns", k)
		}
		return ""
	}
	switch driver {
	case "process":
		return hostNetProblem(k)
	case "docker":
		if k == nemesis.Isolate {
			return ""
		}
		return netProblem("docker", k)
	}
	return netProblem("netns", k)
}

// usesNetwork reports whether sc may draw a fault that changes the network.
func usesNetwork(sc nemesis.Scenario) bool {
	for _, k := range []nemesis.Kind{nemesis.Isolate, nemesis.Delay, nemesis.Loss, nemesis.OneWay, nemesis.Halves, nemesis.Ring} {
		if sc.Uses(k) {
			return true
		}
	}
	return false
}

// scenario returns the scenario o runs: the built-in "all" without the
// kinds o's driver cannot inject here.
func (o Options) scenario() (nemesis.Scenario, error) {
	sc, err := nemesis.Load(o.Scenario)
	if err != nil || o.Scenario != "all" {
		return sc, err
	}
	var drop []nemesis.Kind
	for _, c := range sc.Faults {
		if kindProblem(o.Driver, c.Kind) != "" {
			drop = append(drop, c.Kind)
		}
	}
	return sc.Without(drop...), nil
}

// Validate reports every bad option at once.
func (o Options) Validate() error {
	errs := o.Thresholds.validate()
	if o.Nodes < 3 || o.Nodes > 9 {
		errs = append(errs, fmt.Errorf("--nodes %d: must be 3..9 (faults take one node at a time; a majority must remain)", o.Nodes))
	}
	if o.Duration < 5*time.Second {
		errs = append(errs, fmt.Errorf("--duration %v: must be at least 5s", o.Duration))
	}
	switch o.Driver {
	case "process", "docker":
	case "netns":
		if why := netProblem("netns", nemesis.Kill); why != "" {
			errs = append(errs, fmt.Errorf("--driver netns %s", why))
		}
	default:
		errs = append(errs, fmt.Errorf("--driver %q: want process, netns or docker", o.Driver))
	}
	if o.DiskSize != 0 && o.DiskSize < 16<<20 {
		errs = append(errs, fmt.Errorf("--disk-size %d: must be at least 16MiB (a node needs room to start)", o.DiskSize))
	}
	if o.Report == "" {
		errs = append(errs, errors.New("--report: a directory for the report and the nodes' data is required"))
	}
	if o.Binary == "" && o.Driver != "docker" {
		errs = append(errs, errors.New("binary: the switchboard binary to run the nodes with is required"))
	}
	if sc, err := o.scenario(); err != nil {
		errs = append(errs, err)
	} else {
		seen := map[nemesis.Kind]bool{}
		for _, c := range sc.Faults {
			if seen[c.Kind] {
				continue
			}
			seen[c.Kind] = true
			if why := kindProblem(o.Driver, c.Kind); why != "" {
				errs = append(errs, fmt.Errorf("scenario %s uses %s, which %s", sc.Name, c.Kind, why))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("chaos: %w", errors.Join(errs...))
	}
	return nil
}

// ReplayCommand is the command line that runs o again.
func (o Options) ReplayCommand() string {
	o = o.withDefaults()
	cmd := fmt.Sprintf("switchboard chaos run --scenario %s --nodes %d --duration %v --seed %d --driver %s --report %s",
		o.Scenario, o.Nodes, o.Duration, o.Seed, o.Driver, o.Report)
	if o.Driver == "docker" && o.Image != "switchboard:latest" {
		cmd += " --image " + o.Image
	}
	if o.NoSessions {
		cmd += " --sessions 0"
	} else if o.Sessions != 2 {
		cmd += fmt.Sprintf(" --sessions %d", o.Sessions)
	}
	if o.DiskSize != defaultDiskSize {
		if sc, err := o.scenario(); err == nil && sc.Uses(nemesis.DiskFull) {
			if o.DiskSize%(1<<20) == 0 {
				cmd += fmt.Sprintf(" --disk-size %dMiB", o.DiskSize>>20)
			} else {
				cmd += fmt.Sprintf(" --disk-size %d", o.DiskSize)
			}
		}
	}
	if len(o.NodeArgs) > 0 {
		cmd += fmt.Sprintf(" --node-args %q", strings.Join(o.NodeArgs, " "))
	}
	th, def := o.Thresholds.withDefaults(), Thresholds{}.withDefaults()
	if th.Grace != def.Grace {
		cmd += fmt.Sprintf(" --availability-grace %v", th.Grace)
	}
	if th.ResumeP99 != def.ResumeP99 {
		cmd += fmt.Sprintf(" --resume-p99 %v", th.ResumeP99)
	}
	if th.ResumeMax != def.ResumeMax {
		cmd += fmt.Sprintf(" --resume-max %v", th.ResumeMax)
	}
	return cmd
}

// snapshotNodeArgs make every node snapshot and truncate its Raft log
// every few seconds (defaults: 16,384 entries or 2 minutes, which a run
// rarely reaches), so that a node killed, paused or cut off for a few
// seconds comes back behind the leader's log and is caught up with a
// snapshot: the snapshot path runs under faults in every run.
var snapshotNodeArgs = []string{"--raft-snapshot-threshold", "1024", "--raft-trailing-logs", "256", "--raft-snapshot-interval", "2s"}

// ErrViolations is returned (wrapped) when a checker found a violation or
// the run could not be completed.
var ErrViolations = errors.New("chaos: the run failed")

// Run runs the scenario and returns its report, written to o.Report. The
// error wraps ErrViolations when a checker found something.
func Run(ctx context.Context, o Options) (*report.Report, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sc, _ := o.scenario()
	log := o.Logger.With("component", "chaos")
	plan := nemesis.Plan(sc, o.Seed, o.Duration)
	log.Info("plan", "scenario", sc.Name, "seed", o.Seed, "faults", len(plan), "duration", o.Duration)
	for _, f := range plan {
		log.Debug("planned fault", "fault", f.String())
	}

	clusterDir := filepath.Join(o.Report, "cluster")
	if err := unmountBelow(clusterDir); err != nil { // left by a crashed run
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if err := os.RemoveAll(clusterDir); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if err := os.MkdirAll(clusterDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var err error
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var disk int64 // each node's data on a tmpfs of this size
	if sc.Uses(nemesis.DiskFull) {
		disk = o.DiskSize
	}
	// Before the user's own arguments, which win (the replay names them).
	o.NodeArgs = append(append([]string(nil), snapshotNodeArgs...), o.NodeArgs...)
	if sc.Uses(nemesis.Member) {
		o.NodeArgs = append(append([]string(nil), memberNodeArgs...), o.NodeArgs...)
	}
	var d Driver
	switch {
	case o.start != nil:
		d, err = o.start(runCtx, clusterDir)
	case o.Driver == "docker":
		spares := 0
		if sc.Uses(nemesis.Member) {
			spares = dockerSpares
		}
		d, err = startDocker(runCtx, o.Image, o.Nodes, clusterDir, o.NodeArgs, disk, spares, log)
	case o.Driver == "netns":
		d, err = startNetns(runCtx, o.Binary, o.Nodes, clusterDir, o.NodeArgs, disk, log)
	case usesNetwork(sc):
		// Network faults on processes: a cgroup per node and iptables
		// rules of the run (root; kindProblem has checked).
		d, err = startHostNet(runCtx, o.Binary, o.Nodes, clusterDir, o.NodeArgs, disk, log)
	default:
		d, err = startProcess(runCtx, o.Binary, o.Nodes, clusterDir, o.NodeArgs, disk, bench.ClusterOptions{}, log)
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			log.Warn("stopping the cluster", "err", err)
		}
	}()

	rep := report.New(time.Now())
	rep.Scenario, rep.Seed, rep.Nodes, rep.Driver, rep.Duration = sc.Name, o.Seed, o.Nodes, o.Driver, o.Duration
	rep.Replay, rep.Dir, rep.Plan = o.ReplayCommand(), clusterDir, plan
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		log.Error(msg)
		rep.Errors = append(rep.Errors, msg)
	}

	// Workloads.
	logW := workload.NewLog(workload.LogConfig{Nodes: d.LogClients(), NodeNames: d.Nodes(), Prefix: fmt.Sprintf("chaos-%d-%d", o.Seed, rep.Started.UnixNano()),
		Groups: o.LogGroups, ClientsPerGroup: o.LogClientsPerGroup, Seed: o.Seed, Logger: log})
	logW.OnOp = rep.Note
	var sessions *workload.Sessions
	if !o.NoSessions {
		cfg, token := d.SessionClient()
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sessions, err = workload.OpenSessions(octx, workload.SessionsConfig{Client: cfg, Token: token, Pairs: o.Sessions, Logger: log, OnFrame: rep.NoteFrame})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		defer sessions.Close()
	}
	// Admin queries through the admin API, as an operator watching the
	// console while faults happen (reported, not judged).
	var admin *adminClient
	var adminStats AdminStats
	if ad, ok := d.(Admin); ok {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		admin, err = adminLogin(actx, ad)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("chaos: admin login: %w", err)
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { logW.Run(loadCtx, ctx) })
	if admin != nil {
		wg.Go(func() { adminStats = queryAdmin(loadCtx, admin, d.(Admin).AdminEndpoints(), 100*time.Millisecond) })
	}
	if sessions != nil {
		wg.Go(func() { sessions.Run(loadCtx) })
	}

	if sessions != nil {
		wg.Go(func() { watchResumes(loadCtx, sessions, rep) })
	}

	// Faults, on schedule; then heal whatever is still broken.
	rep.Faults = inject(runCtx, d, plan, rep, sessions, log)
	if wait := time.Until(rep.Started.Add(o.Duration)); wait > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	stopLoad()
	stopped := rep.Since(time.Now())
	wg.Wait()
	log.Info("workload stopped", "log", fmt.Sprintf("%+v", logW.Stats()))
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}
	for i := range d.Nodes() {
		if !retired(d, i) && !d.Up(i) {
			fail("node %s still down at the end of the run (a fault did not heal)", d.Nodes()[i])
		}
	}

	// Converge, then check.
	if err := d.WaitReady(ctx, o.ConvergeTimeout); err != nil {
		fail("cluster did not converge: %v", err)
	}
	if sessions != nil {
		fctx, cancel := context.WithTimeout(ctx, o.ConvergeTimeout)
		if err := sessions.Finish(fctx); err != nil {
			fail("sessions: %v", err)
		}
		cancel()
		if err := sessions.Errors(); err != nil {
			fail("session clients: %v", err)
		}
	}
	final := map[string]map[string][]check.Event{}
	streams := logW.Streams()
	for i, c := range d.LogClients() {
		if retired(d, i) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, o.ConvergeTimeout)
		got, err := workload.ReadAll(rctx, c, streams)
		cancel()
		if err != nil {
			fail("final read on %s: %v", d.Nodes()[i], err)
			continue
		}
		final[d.Nodes()[i]] = got
	}
	acked := logW.Acked()
	rep.AddCheck(check.AppendsName, fmt.Sprintf("%d acknowledged appends on %d streams × %d nodes", len(acked), len(streams), len(final)),
		check.Appends(acked, final))
	linViolations := check.Linearizable(logW.History, o.LinearTimeout, o.Report)
	rep.AddCheck(check.LinearName, fmt.Sprintf("%d operations", logW.History.Len()), linViolations)
	if len(linViolations) > 0 {
		if err := writeHistory(filepath.Join(o.Report, "history.jsonl"), logW); err != nil {
			fail("history: %v", err)
		}
	}
	if a, ok := d.(Admin); ok {
		var ends, names []string
		for i, e := range a.AdminEndpoints() {
			if !retired(d, i) {
				ends, names = append(ends, e), append(names, d.Nodes()[i])
			}
		}
		before, after, err := projectionDigests(ctx, admin, ends, names, 30*time.Second)
		if err != nil {
			fail("projection digests: %v", err)
		} else {
			n := 0
			for _, ds := range before {
				n = len(ds)
			}
			rep.AddCheck(check.ProjectionsName, fmt.Sprintf("%d projections × %d nodes, and again after a rebuild from position 1", n, len(names)),
				append(check.Projections(before), check.Projections(after)...))
		}
	}
	work := map[string]any{"log": logW.Stats()}
	if admin != nil {
		work["admin"] = adminStats
		log.Info("admin queries", "stats", fmt.Sprintf("%+v", adminStats))
	}
	if sessions != nil {
		dirs := sessions.Directions()
		st := sessions.Stats()
		rep.AddCheck(check.FramesName, fmt.Sprintf("%d frames in %d directions", st.FramesSent, len(dirs)), check.Frames(dirs))
		work["sessions"] = st
	}
	rep.Workload = work
	rep.Finish(time.Now()) // the per-second table, which the thresholds judge
	judgeThresholds(rep, o.Thresholds, stopped, sessions != nil)
	rep.Finish(rep.Finished)
	path, werr := rep.Write(o.Report)
	if werr != nil {
		return rep, werr
	}
	if _, err := rep.WriteHTML(o.Report); err != nil {
		return rep, err
	}
	log.Info("report written", "path", path, "pass", rep.Pass)
	if !rep.Pass {
		return rep, fmt.Errorf("%w: %d violations, %d errors (%s)", ErrViolations, rep.Violations(), len(rep.Errors), path)
	}
	return rep, nil
}

// inject runs the plan against the driver and returns what happened.
func inject(ctx context.Context, d Driver, plan []nemesis.Fault, rep *report.Report, sessions *workload.Sessions, log *slog.Logger) []report.FaultRecord {
	var out []report.FaultRecord
	next := 0 // the node the next fault with target "next" hits
	for _, f := range plan {
		if !sleepUntil(ctx, rep.Started.Add(f.At)) {
			return out
		}
		names := d.Nodes() // the member nemesis adds nodes
		rec := report.FaultRecord{Fault: f, Started: rep.Since(time.Now())}
		v, why := resolve(ctx, d, f, sessions, next)
		if f.Target == nemesis.Next && v.node >= 0 {
			next = (v.node + 1) % len(names)
		}
		if why != "" {
			rec.Note = "no target: " + why
			rec.Healed = rec.Started
			out = append(out, rec)
			log.Warn("fault skipped", "fault", f.String(), "why", why)
			continue
		}
		rec.Node, rec.Nodes = v.describe(names)
		heal, err := apply(ctx, d, f.Kind, v, log)
		if err != nil {
			rec.Note = err.Error()
		}
		log.Info("fault", "kind", f.Kind, "target", f.Target, "node", rec.Node, "for", f.For, "note", rec.Note)
		sleepUntil(ctx, time.Now().Add(f.For))
		note, err := heal(ctx)
		rec.Healed = rep.Since(time.Now())
		if note != "" {
			rec.Note = strings.TrimSpace(rec.Note + " " + note)
			log.Warn("heal", "node", rec.Node, "note", note)
		}
		if err != nil {
			rec.Note = strings.TrimSpace(rec.Note + " heal: " + err.Error())
			log.Error("heal failed", "node", rec.Node, "err", err)
		}
		// A healed node counts as back once every node is ready again
		// (as a rolling restart waits for it); the next fault waits too.
		if err := d.WaitReady(ctx, 30*time.Second); err != nil {
			rec.Note = strings.TrimSpace(rec.Note + " not ready 30 s after healing: " + err.Error())
			log.Warn("not ready after healing", "node", rec.Node, "err", err)
		} else {
			rec.Ready = rep.Since(time.Now())
		}
		out = append(out, rec)
	}
	return out
}

// victims are what a fault hits: one node, or (node -1) the links a
// partition between nodes cuts.
type victims struct {
	node int
	part nemesis.Partition
}

// describe names the victims for the report: the node, or the partition
// and every node it separates.
func (v victims) describe(names []string) (string, []string) {
	if v.node >= 0 {
		return names[v.node], nil
	}
	var nodes []string
	for _, i := range v.part.Nodes() {
		nodes = append(nodes, names[i])
	}
	return v.part.Describe(names), nodes
}

// healFunc ends a fault; note says what it had to do beyond the usual (a
// node restarted because it died meanwhile).
type healFunc func(context.Context) (note string, err error)

func healWith(f func(context.Context) error) healFunc {
	return func(ctx context.Context) (string, error) { return "", f(ctx) }
}

var healNothing = healWith(func(context.Context) error { return nil })

// apply starts a fault of kind k on its victims and returns what ends it.
func apply(ctx context.Context, d Driver, k nemesis.Kind, v victims, log *slog.Logger) (healFunc, error) {
	i := v.node
	switch k {
	case nemesis.Member:
		return replaceNode(ctx, d, i, log)
	case nemesis.Kill:
		return healWith(func(ctx context.Context) error { return d.Restart(ctx, i) }), d.Kill(i)
	case nemesis.Restart:
		return healWith(func(ctx context.Context) error { return d.Restart(ctx, i) }), d.StopNode(i)
	case nemesis.Pause:
		return healWith(func(context.Context) error { return d.Resume(i) }), d.Pause(i)
	case nemesis.Isolate:
		p, ok := d.(Partitioner)
		if !ok {
			return healNothing, errors.New("this driver cannot isolate nodes")
		}
		return healWith(func(context.Context) error { return p.Rejoin(i) }), p.Isolate(i)
	case nemesis.Halves, nemesis.Ring:
		c, ok := d.(Cutter)
		if !ok {
			return healNothing, fmt.Errorf("this driver cannot cut links between nodes (%s)", k)
		}
		return healWith(func(context.Context) error { return c.Mend() }), c.Cut(v.part.Cut)
	case nemesis.Delay, nemesis.Loss, nemesis.OneWay:
		sh, ok := d.(Shaper)
		if !ok {
			return healNothing, fmt.Errorf("this driver cannot inject %s", k)
		}
		return healWith(func(context.Context) error { return sh.Unshape(i) }), sh.Shape(i, k)
	case nemesis.DiskFull:
		dk, ok := d.(Disks)
		if !ok {
			return healNothing, errors.New("this driver cannot fill a node's disk")
		}
		dir := dk.DiskDir(i)
		n, err := fillDisk(dir)
		log.Info("disk filled", "node", d.Nodes()[i], "dir", dir, "filler_bytes", n)
		return func(ctx context.Context) (string, error) {
			err := freeDisk(dir)
			if !dk.Exited(i) {
				return "", err
			}
			// The node died on the full disk: start it again, with its data.
			return "the node exited while its disk was full; restarted", errors.Join(err, d.Restart(ctx, i))
		}, err
	}
	return healNothing, fmt.Errorf("unknown fault kind %q", k)
}

// resolve picks what a fault hits: the leader, a session client's node, or
// any (by the fault's Pick); for a partition between nodes, the pairs it
// cuts (around the leader with target leader). While a node is down (an
// earlier fault did not heal) no fault is injected: faults take one node
// (or one partition) at a time, so that a majority always remains. The
// reason is "" when a target was found.
func resolve(ctx context.Context, d Driver, f nemesis.Fault, sessions *workload.Sessions, next int) (victims, string) {
	none := victims{node: -1}
	var up []int
	for i, n := range d.Nodes() {
		if retired(d, i) {
			continue
		}
		if !d.Up(i) {
			return none, n + " is still down"
		}
		up = append(up, i)
	}
	leader := func() (int, string) {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		i, err := d.Leader(lctx)
		if err != nil {
			return -1, err.Error()
		}
		return i, ""
	}
	if f.Kind.Partitions() {
		l := -1
		if f.Target == nemesis.Leader {
			var why string
			if l, why = leader(); why != "" {
				return none, why
			}
		}
		// PartitionFor numbers the running nodes 0..len(up)-1 (retired
		// nodes are not part of it); map back to node indexes.
		pos := -1
		if l >= 0 {
			pos = slices.Index(up, l)
		}
		p, err := nemesis.PartitionFor(f.Kind, len(up), f.Pick, pos)
		if err != nil {
			return none, err.Error()
		}
		return victims{node: -1, part: p.Map(up)}, ""
	}
	switch f.Target {
	case nemesis.Next:
		return victims{node: up[next%len(up)]}, ""
	case nemesis.Leader:
		i, why := leader()
		return victims{node: i}, why
	case nemesis.Session:
		if sessions == nil {
			return none, "no session workload"
		}
		var cands []int
		for _, id := range sessions.Nodes() {
			for i, n := range d.Nodes() {
				if n == id && d.Up(i) {
					cands = append(cands, i)
				}
			}
		}
		if len(cands) == 0 {
			return none, "no session client on a running node"
		}
		return victims{node: cands[int(f.Pick)%len(cands)]}, ""
	}
	return victims{node: up[int(f.Pick)%len(up)]}, ""
}

// writeHistory writes the log workload's operations, one JSON object per
// line (times in ns since the workload began; return -1: outcome unknown),
// for a closer look at a linearizability violation.
func writeHistory(path string, w *workload.Log) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, op := range w.History.Operations() {
		ret := op.Return
		if ret == math.MaxInt64 {
			ret = -1
		}
		if err := enc.Encode(map[string]any{"client": op.ClientId, "call": op.Call, "return": ret, "input": op.Input, "output": op.Output}); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// watchResumes marks session resumes in the report as they happen.
func watchResumes(ctx context.Context, s *workload.Sessions, rep *report.Report) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var seen []uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, st := range s.ClientStats() {
			if i == len(seen) {
				seen = append(seen, 0)
			}
			for ; seen[i] < st.Resumes; seen[i]++ {
				rep.NoteResume(st.LastResumeDuration)
			}
		}
	}
}

// sleepUntil waits until t or ctx ends; false if ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
