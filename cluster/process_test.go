package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// buildTestBinary builds cmd/switchboard with the test-only counter kind.
func buildTestBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-tags", "testkinds", "-o", bin, "../cmd/switchboard")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build switchboard: %v\n%s", err, out)
	}
	return bin
}

var fastArgs = []string{"--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms",
	"--raft-leader-lease-timeout", "250ms", "--log-level", "info", "--cluster-stabilization-time", "1s"}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type value struct {
	Value   int64  `json:"value"`
	Version uint64 `json:"version"`
	Epoch   uint64 `json:"epoch"`
	Node    string `json:"node"`
}

var client = &http.Client{Timeout: 15 * time.Second}

// counterCall adds delta (POST) or reads (delta 0, GET) counter id through
// the node at httpAddr. ambiguous reports a 503: the add may have happened.
func counterCall(httpAddr, id string, delta int64) (v value, ambiguous bool, err error) {
	url := fmt.Sprintf("http://%s/test/counter/%s", httpAddr, id)
	var resp *http.Response
	if delta == 0 {
		resp, err = client.Get(url)
	} else {
		resp, err = client.Post(fmt.Sprintf("%s?delta=%d", url, delta), "", nil)
	}
	if err != nil {
		return v, true, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return v, resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return v, false, json.Unmarshal(body, &v)
}

// ledger tracks acknowledged and ambiguous adds of one counter: after any
// failure, the counter's value must lie in [acked, acked+ambiguous].
type ledger struct {
	acked, ambiguous int64
}

func (l *ledger) add(t *testing.T, httpAddr, id string) (value, error) {
	t.Helper()
	v, amb, err := counterCall(httpAddr, id, 1)
	switch {
	case err == nil:
		l.acked++
	case amb:
		l.ambiguous++
	default:
		t.Fatalf("add %s via %s: %v", id, httpAddr, err)
	}
	return v, err
}

func (l *ledger) check(t *testing.T, v value) {
	t.Helper()
	if v.Value < l.acked || v.Value > l.acked+l.ambiguous {
		t.Fatalf("counter value %d outside [acked %d, acked+ambiguous %d]: a write was lost or doubled", v.Value, l.acked, l.acked+l.ambiguous)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

func nodeIndex(c *bench.LogCluster, id string) int {
	for i, nd := range c.Nodes {
		if nd.ID == id {
			return i
		}
	}
	return -1
}

func raftStatus(c *bench.LogCluster, i int) (*eventspb.StatusResponse, error) {
	dial, err := c.DialOption()
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(c.Nodes[i].APIAddr, dial)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := eventspb.NewLogClient(cc).Status(ctx, &eventspb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", c.Nodes[i].ID, err)
	}
	return st, nil
}

func waitVoters(t *testing.T, c *bench.LogCluster, i, want int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d voters seen by %s", want, c.Nodes[i].ID), func() error {
		st, err := raftStatus(c, i)
		if err != nil {
			return err
		}
		if n := voters(st); n != want {
			return fmt.Errorf("%d voters", n)
		}
		return nil
	})
}

func voters(st *eventspb.StatusResponse) int {
	n := 0
	for _, s := range st.GetServers() {
		if s.GetSuffrage() == eventspb.Suffrage_SUFFRAGE_VOTER {
			n++
		}
	}
	return n
}

func startCluster(t *testing.T, bin string, n int) *bench.LogCluster {
	t.Helper()
	// The nodes live as long as this context: until the test's cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := bench.StartLogClusterWith(ctx, bin, n, t.TempDir(), bench.ClusterOptions{Logger: quiet(), ExtraArgs: fastArgs})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("--- %s log tail:\n%s", nd.ID, nd.Proc.LogTail(3000))
			}
		}
		_ = c.Stop()
	})
	return c
}

// Three node processes form a cluster from a seed list (bootstrap_expect=3).
// A grain's node is killed with SIGKILL: the next request re-activates it
// elsewhere with its full state; the killed node restarts from its data and
// rejoins as itself; a fourth node joins and becomes a voter; writes go on
// throughout and none is lost or doubled.
func TestProcessGrainSurvivesKillAndNodesJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test: builds the binary with -tags testkinds and runs three node processes (not in -short)")
	}
	bin := buildTestBinary(t)
	c := startCluster(t, bin, 3)
	for i := range c.Nodes {
		waitVoters(t, c, i, 3)
	}
	var l ledger
	var host string
	for i := 0; i < 30; i++ {
		v, err := l.add(t, c.Nodes[i%3].HTTPAddr, "k")
		if err != nil {
			t.Fatalf("add on a healthy cluster: %v", err)
		}
		host = v.Node
	}
	victim := nodeIndex(c, host)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	other := c.Nodes[(victim+1)%3].HTTPAddr
	start := time.Now()
	var v value
	eventually(t, 20*time.Second, "re-activation after kill -9", func() error {
		var err error
		v, err = l.add(t, other, "k")
		return err
	})
	t.Logf("grain re-activated on %s %v after kill -9 of %s", v.Node, time.Since(start).Round(time.Millisecond), host)
	if v.Node == host {
		t.Fatalf("grain still on killed node %s", host)
	}
	l.check(t, v)

	// Restart with its data: it rejoins as the same Raft server.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := l.add(t, c.Nodes[i%3].HTTPAddr, "k"); err != nil {
			t.Fatalf("add after rejoin: %v", err)
		}
	}
	// A fourth node joins while writes continue; it becomes a voter.
	nd, err := c.AddNode(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := l.add(t, c.Nodes[i%3].HTTPAddr, "k"); err != nil {
			t.Fatalf("add while a node joins: %v", err)
		}
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, c, 0, 4)
	got, _, err := counterCall(nd.HTTPAddr, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.check(t, got)
}

// A node paused (SIGSTOP) longer than the failure detector's timeout is
// declared dead and its grain re-activates elsewhere; when resumed, the node
// notices, drops its activations and rejoins under a new actor-system id.
// No write is lost or doubled.
func TestProcessPausedNodeRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test: builds the binary with -tags testkinds and runs three node processes (not in -short)")
	}
	bin := buildTestBinary(t)
	c := startCluster(t, bin, 3)
	var l ledger
	var host string
	for i := 0; i < 10; i++ {
		v, err := l.add(t, c.Nodes[i%3].HTTPAddr, "p")
		if err != nil {
			t.Fatal(err)
		}
		host = v.Node
	}
	victim := nodeIndex(c, host)
	other := c.Nodes[(victim+1)%3].HTTPAddr
	if err := c.Nodes[victim].Proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := true
	defer func() {
		if paused {
			_ = c.Nodes[victim].Proc.Signal(syscall.SIGCONT)
		}
	}()
	var v value
	eventually(t, 20*time.Second, "re-activation while the host is paused", func() error {
		var err error
		v, err = l.add(t, other, "p")
		if err == nil && v.Node == host {
			return fmt.Errorf("still on paused node")
		}
		return err
	})
	for i := 0; i < 5; i++ {
		if _, err := l.add(t, other, "p"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Nodes[victim].Proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	paused = false
	eventually(t, 30*time.Second, "paused node rejoined", func() error {
		resp, err := client.Get("http://" + c.Nodes[victim].HTTPAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "switchboard_cluster_rejoins_total 1") {
			return fmt.Errorf("no rejoin recorded yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Writes through the resumed node and the others land on one activation.
	for i := 0; i < 10; i++ {
		var err error
		eventually(t, 15*time.Second, "add after resume", func() error {
			v, err = l.add(t, c.Nodes[(victim+i)%3].HTTPAddr, "p")
			return err
		})
	}
	got, _, err := counterCall(c.Nodes[victim].HTTPAddr, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.check(t, got)
}
