package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/internal/testlock"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// testBinary builds the switchboard binary once for the package's tests
// (into a directory removed when the tests end, TestMain).
func testBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chaos-runner-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtDir = dir
		builtBin = filepath.Join(dir, "switchboard")
		if out, err := exec.Command("go", "build", "-o", builtBin, "../../cmd/switchboard").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build switchboard: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

var builtDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// needNetns skips the test unless the netns driver can run here (root, ip,
// iptables) and takes the host-network lock (it adds a bridge).
func needNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts node processes in network namespaces: skipped under -short")
	}
	if why := netProblem("netns", nemesis.Kill); why != "" {
		t.Skipf("the netns driver %s", why)
	}
	testlock.Lock(t, testlock.HostNetwork)
}

// hostReaches reports whether a TCP connection to addr opens from the host
// within a second.
func hostReaches(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// reaches reports whether a TCP connection to addr opens from node from's
// namespace (from < 0: from the host) within a second.
func reaches(d *netnsDriver, from int, addr string) bool {
	if from < 0 {
		return hostReaches(addr)
	}
	host, port, _ := net.SplitHostPort(addr)
	return d.net.exec(from, "timeout", "1", "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port) == nil
}

// checkCutAndIsolate exercises d on three nodes: a cut between n1 and n3 (a
// bridge over n2) stops them from reaching each other while both reach n2
// and the host reaches all three; isolating n3 cuts the host off too. It
// returns with n3 still isolated. reach(from, addr) says whether a TCP
// connection to addr opens from node from (-1: the host); addr(i) is an
// address node i serves.
func checkCutAndIsolate(t *testing.T, d *netProcDriver, reach func(from int, addr string) bool, addr func(i int) string) {
	t.Helper()
	if !reach(0, addr(2)) || !reach(-1, addr(2)) {
		t.Fatal("before any fault: n1 or the host cannot reach n3")
	}

	if err := d.Cut([][2]int{{0, 2}}); err != nil {
		t.Fatal(err)
	}
	if d.Up(0) || d.Up(2) {
		t.Error("nodes of a cut count as up")
	}
	eventually(t, "n1 still reaches n3 across the cut", func() bool { return !reach(0, addr(2)) })
	if reach(2, addr(0)) {
		t.Error("n3 reaches n1 across the cut")
	}
	for _, c := range [][2]int{{0, 1}, {2, 1}, {1, 0}, {1, 2}, {-1, 0}, {-1, 2}} {
		if !reach(c[0], addr(c[1])) {
			t.Errorf("during the cut, %d cannot reach n%d (only n1–n3 is cut; -1 is the host)", c[0]+1, c[1]+1)
		}
	}
	if err := d.Mend(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 does not reach n3 after the cut healed", func() bool { return reach(0, addr(2)) })

	if err := d.Isolate(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the host still reaches the isolated n3", func() bool { return !reach(-1, addr(2)) })
	if reach(1, addr(2)) || reach(2, addr(0)) {
		t.Error("n3 isolated, but a node still talks with it")
	}
}

// httpTime returns how long a GET of url takes on a fresh connection.
func httpTime(t *testing.T, url string) time.Duration {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start)
}

// checkDelay delays n3 and checks that every packet it sends waits: an HTTP
// request to it (its answer) takes at least 100 ms while one to n2 does not;
// a delayed node does not count as up; healing makes it fast again.
// httpAddr(i) is node i's HTTP address.
func checkDelay(t *testing.T, d *netProcDriver, httpAddr func(i int) string) {
	t.Helper()
	ready := func(i int) string { return "http://" + httpAddr(i) + "/readyz" }
	if got := httpTime(t, ready(2)); got > 100*time.Millisecond {
		t.Fatalf("a request to n3 takes %v before any delay", got)
	}
	if err := d.Shape(2, nemesis.Delay); err != nil {
		t.Fatal(err)
	}
	if d.Up(2) {
		t.Error("a delayed node counts as up")
	}
	for range 3 {
		if got := httpTime(t, ready(2)); got < 100*time.Millisecond {
			t.Errorf("a request to the delayed n3 took %v, want at least 100 ms", got)
		}
	}
	if got := httpTime(t, ready(1)); got > 100*time.Millisecond {
		t.Errorf("a request to n2 took %v: only n3 is delayed", got)
	}
	if err := d.Unshape(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "requests to n3 still slow after the delay healed", func() bool { return httpTime(t, ready(2)) < 100*time.Millisecond })
}

// eventually polls cond every 100 ms until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Three nodes in namespaces of their own: a cut between n1 and n3 (a
// bridge over n2) stops n1 and n3 from reaching each other while both reach
// n2 and the host reaches all three; isolating n3 cuts it off from the host
// too; healing brings everything back, and stopping the driver removes the
// namespaces, the bridge and the host's rule.
func TestNetnsDriverCutsLinksAndCleansUp(t *testing.T) {
	needNetns(t)
	bin := testBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	d, err := startNetns(ctx, bin, 3, dir, nil, 64<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	id := d.net.id
	stopped := false
	defer func() {
		if !stopped {
			_ = d.Stop()
		}
	}()
	httpAddr := func(i int) string { return d.c.Nodes[i].HTTPAddr }
	for i := range 3 {
		if !strings.HasPrefix(httpAddr(i), d.net.prefix+".") {
			t.Fatalf("node %d at %s, not in the run's subnet %s.0/24", i+1, httpAddr(i), d.net.prefix)
		}
	}
	checkCutAndIsolate(t, &d.netProcDriver, func(from int, addr string) bool { return reaches(d, from, addr) }, httpAddr)
	if err := d.Rejoin(2); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Delay: every packet n3 sends waits 150 ± 50 ms in the harness's queue.
	if why := netProblem("netns", nemesis.Delay); why != "" {
		t.Logf("delay not tested: it %s", why)
	} else {
		checkDelay(t, &d.netProcDriver, httpAddr)
	}

	// The disk of a node is a tmpfs of its own: filling it leaves nothing.
	n, err := fillDisk(d.DiskDir(1))
	if err != nil || n < 32<<20 {
		t.Fatalf("filled %d bytes: %v", n, err)
	}
	if err := freeDisk(d.DiskDir(1)); err != nil {
		t.Fatal(err)
	}

	// Nodes stopped together right after a partition healed may use their
	// whole shutdown grace (10 s, as long as Stop waits before SIGKILL):
	// that is the nodes' business, the cleanup below is the driver's.
	stopped = true
	if err := d.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), id) {
		t.Errorf("namespaces left: %s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), id) {
		t.Errorf("links left: %s", out)
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); strings.Contains(string(out), id) {
		t.Errorf("FORWARD rule left: %s", out)
	}
	if err := unmountBelow(dir); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), dir) {
		t.Errorf("a tmpfs is still mounted below %s", dir)
	}
}

// What a crashed run left (a namespace and a bridge owned by a process that
// is gone, and its FORWARD rule) is removed by the next run's start.
func TestNetnsCleansUpAfterACrashedRun(t *testing.T) {
	needNetns(t)
	stale := &bridgeNet{id: "sbcdead", bridge: "sbcdead-br", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, s := range [][]string{{"netns", "add", "sbcdead-n1"}, {"link", "add", "sbcdead-br", "type", "bridge"},
		{"link", "set", "dev", "sbcdead-br", "alias", ownerAlias + "999999999"}} {
		if err := run("ip", s...); err != nil {
			t.Fatal(err)
		}
	}
	if err := run("iptables", stale.forwardRule("-A")...); err != nil {
		t.Fatal(err)
	}
	stale.nodes = []int{0}
	t.Cleanup(func() { _ = stale.close() })
	cleanStale(stale.log)
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "sbcdead") {
		t.Errorf("stale namespace left: %s", out)
	}
	if _, err := os.Stat("/sys/class/net/sbcdead-br"); err == nil {
		t.Error("stale bridge left")
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); strings.Contains(string(out), "sbcdead") {
		t.Errorf("stale FORWARD rule left: %s", out)
	}
}

// A short run of the partitions scenario on five nodes in namespaces:
// halves, rings and isolations happen as planned and every checker passes.
// The log workload runs alone: with a session pair, this seed's run loses
// a direction of durable frames in about one run of three (docs/chaos.md,
// "Finding: durable frames stop after partitions"), a bug of the session
// relay that `switchboard chaos run` shows and this test of the harness
// must not turn into a flaky make test.
func TestNetnsRunPartitionsScenario(t *testing.T) {
	needNetns(t)
	bin := testBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep := runSmall(ctx, t, Options{Scenario: "partitions", Driver: "netns", Nodes: 5, Duration: 30 * time.Second, Seed: 3, Binary: bin, NoSessions: true})
	cut := 0
	for _, f := range rep.Faults {
		if f.Note != "" {
			t.Errorf("fault %+v: %s", f.Fault, f.Note)
		}
		if f.Kind.Partitions() && len(f.Nodes) > 0 {
			cut++
		}
	}
	if cut == 0 {
		t.Errorf("no partition between nodes happened: %+v", rep.Faults)
	}
}
