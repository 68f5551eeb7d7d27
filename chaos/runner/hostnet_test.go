package runner

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/internal/testlock"
)

// reachesFrom reports whether a TCP connection to addr opens, within a
// second, from a process in node from's cgroup (from < 0: the host).
func reachesFrom(d *hostNetDriver, from int, addr string) bool {
	if from < 0 {
		return hostReaches(addr)
	}
	host, port, _ := net.SplitHostPort(addr)
	procs := filepath.Join(d.host.cgroupDir(from), "cgroup.procs")
	return exec.Command("timeout", "1", "sh", "-c", `echo $$ > "$0" && exec bash -c "exec 3<>/dev/tcp/$1/$2"`, procs, host, port).Run() == nil
}

// Three node processes on the host's loopback, each in a cgroup of its
// own: a cut between n1 and n3 stops them from reaching each other while
// both reach n2 and the host reaches all three; isolating n3 cuts the host
// off too; delaying n3 slows what it sends; one way on n3 drops what the
// nodes send it; healing brings everything back,
// and stopping removes the chains and the cgroups.
func TestHostNetFaultsOnProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes: skipped under -short")
	}
	if why := hostNetProblem(nemesis.Isolate); why != "" {
		t.Skipf("network faults on processes %s", why)
	}
	testlock.Lock(t, testlock.HostNetwork)
	bin := testBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := startHostNet(ctx, bin, 3, t.TempDir(), nil, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	chain, cg := d.host.chain, d.host.cg
	stopped := false
	defer func() {
		if !stopped {
			_ = d.Stop()
		}
	}()
	api := func(i int) string { return d.c.Nodes[i].APIAddr }
	checkCutAndIsolate(t, &d.netProcDriver, func(from int, addr string) bool { return reachesFrom(d, from, addr) }, api)
	if !reachesFrom(d, 0, api(1)) {
		t.Error("isolating n3 cut n1 from n2")
	}
	if err := d.Rejoin(2); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Delay: what n3 sends waits 150 ± 50 ms in the harness's queue, so an
	// HTTP request's answer (sent by n3's socket) takes at least 100 ms.
	if why := hostNetProblem(nemesis.Delay); why != "" {
		t.Logf("delay not tested: it %s", why)
	} else {
		checkDelay(t, &d.netProcDriver, func(i int) string { return d.c.Nodes[i].HTTPAddr })
	}

	// One way: the other nodes' packets to n3 are dropped; the host (a
	// client) still reaches it.
	if err := d.Shape(2, nemesis.OneWay); err != nil {
		t.Fatal(err)
	}
	if reachesFrom(d, 0, api(2)) || reachesFrom(d, 1, api(2)) {
		t.Error("another node still reaches n3, which drops what the nodes send it")
	}
	if !reachesFrom(d, -1, api(2)) || !reachesFrom(d, 0, api(1)) {
		t.Error("one-way on n3 cut the host from n3 or n1 from n2")
	}
	if err := d.Unshape(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 does not reach n3 after one-way healed", func() bool { return reachesFrom(d, 0, api(2)) })

	// As in the netns test: nodes stopped together right after a fault
	// healed may use their whole shutdown grace; the cleanup below is the
	// driver's business.
	stopped = true
	if err := d.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	if out, _ := exec.Command("iptables", "-w", "-S").Output(); strings.Contains(string(out), chain) {
		t.Errorf("chains or rules left:\n%s", out)
	}
	if _, err := exec.Command("ls", cg).Output(); err == nil {
		t.Errorf("cgroup %s left", cg)
	}
}

// What a crashed run left — its chains, its cgroups and a node still running
// in one — is removed when the next run sets up.
func TestHostNetCleansUpAfterACrashedRun(t *testing.T) {
	if why := hostNetProblem(nemesis.Isolate); why != "" {
		t.Skipf("network faults on processes %s", why)
	}
	testlock.Lock(t, testlock.HostNetwork)
	root, err := cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	// A pid that is gone: a process that ran and was reaped.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	const id, chain = "sbcdead", "SBCdead"
	owner := hostOwner + strconv.Itoa(gone.Process.Pid)
	for _, s := range [][]string{{"-w", "-N", chain}, {"-w", "-N", chain + "-N1"}, {"-w", "-A", chain, "-j", chain + "-N1"},
		{"-w", "-A", "OUTPUT", "-m", "comment", "--comment", owner, "-j", chain}} {
		if err := run("iptables", s...); err != nil {
			t.Fatal(err)
		}
	}
	node := filepath.Join(root, id, "n1")
	if err := os.MkdirAll(node, 0o755); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec sleep 300`, filepath.Join(node, "cgroup.procs"))
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	eventually(t, "the orphan is not in its cgroup", func() bool {
		b, _ := os.ReadFile(filepath.Join(node, "cgroup.procs"))
		return len(strings.TrimSpace(string(b))) > 0
	})

	h, err := newHostNet(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = orphan.Process.Kill()
		t.Fatal("the node left running in a crashed run's cgroup was not killed")
	}
	if out, _ := exec.Command("iptables", "-w", "-S").Output(); strings.Contains(string(out), chain) {
		t.Errorf("the crashed run's chains are left:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, id)); err == nil {
		t.Errorf("the crashed run's cgroup %s is left", id)
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "OUTPUT").Output(); !strings.Contains(string(out), h.chain) {
		t.Errorf("the new run's jump is missing:\n%s", out)
	}
}
