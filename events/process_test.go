package events_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// buildBinary builds cmd/switchboard for process-level tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/switchboard")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build switchboard: %v\n%s", err, out)
	}
	return bin
}

// Three real node processes; appenders keep writing through every node's gRPC
// API while the leader and then a follower are killed with SIGKILL and
// restarted from their data. Every acknowledged append must be on every node,
// at its version, with no gap and no duplicate.
func TestProcessKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test: builds the binary and runs three nodes (not in -short)")
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := bench.StartLogClusterWith(ctx, bin, 3, t.TempDir(), bench.ClusterOptions{
		Logger: quietLogger(),
		ExtraArgs: []string{"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms",
			"--raft-leader-lease-timeout", "150ms", "--log-level", "warn"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	clients := make([]eventspb.LogClient, 3)
	dial, err := c.DialOption()
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range c.Addrs() {
		conn, err := grpc.NewClient(addr, dial)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients[i] = eventspb.NewLogClient(conn)
	}

	// Each writer owns one stream and appends with exact expected versions
	// and one append id per logical append, retried until acknowledged: the
	// stream must end up as exactly the acknowledged sequence.
	const writers = 6
	var mu sync.Mutex
	acked := map[string][]string{} // stream -> payloads acknowledged, in version order
	stop := make(chan struct{})
	var wg sync.WaitGroup
	progress := make(chan struct{}, 1024)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("w%d", w)
			var version uint64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := fmt.Sprintf("%s-%d", stream, i)
				id := make([]byte, 16)
				rand.Read(id)
				req := &eventspb.AppendRequest{Stream: stream, ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_EXACT,
					ExpectedVersion: version, AppendId: id, Events: []*eventspb.Event{{Type: "t", Data: []byte(payload)}}}
				for attempt := 0; ; attempt++ {
					select {
					case <-stop:
						// An unacknowledged append may or may not be applied.
						return
					default:
					}
					actx, acancel := context.WithTimeout(ctx, 2*time.Second)
					resp, err := clients[(w+attempt)%3].Append(actx, req)
					acancel()
					if err != nil {
						continue // node down or no leader: retry the same id elsewhere
					}
					if resp.Code != eventspb.Code_CODE_OK {
						t.Errorf("%s: append %s: %v %s", stream, payload, resp.Code, resp.Message)
						return
					}
					if resp.Version != version+1 {
						t.Errorf("%s: append %s acknowledged at version %d, want %d", stream, payload, resp.Version, version+1)
						return
					}
					version = resp.Version
					mu.Lock()
					acked[stream] = append(acked[stream], payload)
					mu.Unlock()
					select {
					case progress <- struct{}{}:
					default:
					}
					break
				}
			}
		}()
	}
	waitAcks := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			select {
			case <-progress:
			case <-ctx.Done():
				t.Fatalf("no progress: %v", ctx.Err())
			}
		}
	}
	waitAcks(200)
	for round, pick := range []string{"leader", "follower"} {
		l, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		victim := l
		if pick == "follower" {
			victim = (l + 1) % 3
		}
		t.Logf("round %d: kill -9 %s n%d", round, pick, victim+1)
		if err := c.Kill(victim); err != nil {
			t.Fatal(err)
		}
		waitAcks(200)
		if err := c.Restart(ctx, victim); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReady(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		waitAcks(200)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for i, cl := range clients {
		for stream, want := range acked {
			resp, err := cl.ReadStream(ctx, &eventspb.ReadStreamRequest{Stream: stream, FromVersion: 1, Max: 100000, Consistent: true}, grpc.WaitForReady(true))
			if err != nil {
				t.Fatalf("n%d read %s: %v", i+1, stream, err)
			}
			got := resp.Events
			// The last unacknowledged append may have been applied: allow one extra.
			if len(got) < len(want) || len(got) > len(want)+1 {
				t.Fatalf("n%d %s: %d events, %d acknowledged", i+1, stream, len(got), len(want))
			}
			for j, p := range want {
				if got[j].Version != uint64(j+1) || string(got[j].Data) != p {
					t.Fatalf("n%d %s: version %d holds %q (v%d), want %q", i+1, stream, j+1, got[j].Data, got[j].Version, p)
				}
			}
		}
	}
}
