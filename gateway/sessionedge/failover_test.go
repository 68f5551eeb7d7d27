package sessionedge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// grainNode returns the index of the node hosting the only session grain
// (its switchboard_entity_active{kind="session"} is 1), or -1.
func (tc *testCluster) grainNode(t *testing.T) int {
	t.Helper()
	for i, nd := range tc.Nodes {
		if !nd.Proc.Running() {
			continue
		}
		resp, err := http.Get("http://" + nd.HTTPAddr + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, `switchboard_entity_active{kind="session"}`) {
				f := strings.Fields(line)
				if v, _ := strconv.ParseFloat(f[len(f)-1], 64); v >= 1 {
					resp.Body.Close()
					return i
				}
			}
		}
		resp.Body.Close()
	}
	return -1
}

func (tc *testCluster) nodeIndex(id string) int {
	for i, nd := range tc.Nodes {
		if nd.ID == id {
			return i
		}
	}
	return -1
}

// order lists the session endpoints starting with node first.
func (tc *testCluster) order(first int) []string {
	var out []string
	for i := range tc.Nodes {
		out = append(out, tc.Nodes[(first+i)%len(tc.Nodes)].SessionAddr)
	}
	return out
}

func (tc *testCluster) clientConfig(first int) sessionclient.Config {
	return sessionclient.Config{Nodes: tc.order(first), TLS: tc.tls, HandshakeTimeout: 3 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, GiveUpAfter: 60 * time.Second}
}

// peer sends numbered durable frames and checks the ones it receives are
// exactly 1, 2, 3… from its counterpart: no loss, no duplicate, no reorder.
type peer struct {
	t        *testing.T
	s        *sessionclient.Session
	prefix   string // what it sends
	expect   string // what it receives
	sent     atomic.Int64
	received atomic.Int64
	lastAt   atomic.Int64 // unix nanos of the last frame received
	mu       sync.Mutex
	err      error
}

func (p *peer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *peer) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *peer) sendLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := p.sent.Load() + 1
		if err := p.s.Send(ctx, []byte(fmt.Sprintf("%s:%d", p.prefix, n))); err != nil {
			if ctx.Err() == nil {
				p.fail(fmt.Errorf("%s send %d: %w", p.prefix, n, err))
			}
			return
		}
		p.sent.Store(n)
	}
}

func (p *peer) recvLoop(ctx context.Context) {
	for {
		m, err := p.s.Recv(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, sessionclient.ErrEnded) {
				p.fail(fmt.Errorf("%s recv: %w", p.expect, err))
			}
			return
		}
		if m.Kind != sessionclient.Durable {
			continue
		}
		want := p.received.Load() + 1
		if got := string(m.Payload); got != fmt.Sprintf("%s:%d", p.expect, want) {
			p.fail(fmt.Errorf("received %q, want %s:%d (loss, duplicate or reorder)", got, p.expect, want))
			return
		}
		p.received.Store(want)
		p.lastAt.Store(time.Now().UnixNano())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProcessSessionFailover: a host and a guest on different nodes exchange
// durable frames while nodes are killed with SIGKILL — the guest's node, the
// node hosting the session grain, and a node hosting both the grain and a
// participant's connection — and restarted. Every frame arrives exactly once
// and in order on both sides.
func TestProcessSessionFailover(t *testing.T) {
	tc := startCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	host, err := sessionclient.Open(ctx, tc.clientConfig(0), sessionclient.OpenParams{Token: hostToken, Name: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	guest, err := sessionclient.Join(ctx, tc.clientConfig(1), sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	if host.Node() == guest.Node() {
		t.Fatalf("host and guest both on %s", host.Node())
	}

	hp := &peer{t: t, s: host, prefix: "h", expect: "g"}
	gp := &peer{t: t, s: guest, prefix: "g", expect: "h"}
	tctx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range []*peer{hp, gp} {
		wg.Add(2)
		go func() { defer wg.Done(); p.sendLoop(tctx, 5*time.Millisecond) }()
		go func() { defer wg.Done(); p.recvLoop(ctx) }()
	}
	progressed := func(what string, from int64) {
		t.Helper()
		waitFor(t, 30*time.Second, what, func() bool {
			if err := errors.Join(hp.failed(), gp.failed()); err != nil {
				t.Fatal(err)
			}
			return hp.received.Load() >= from+20 && gp.received.Load() >= from+20
		})
	}
	progressed("traffic to start", 0)

	kill := func(what string, i int) {
		t.Helper()
		before := min(hp.received.Load(), gp.received.Load())
		leader, _ := tc.Leader(ctx)
		what += fmt.Sprintf(", raft leader n%d", leader+1)
		t0 := time.Now()
		if err := tc.Kill(i); err != nil {
			t.Fatal(err)
		}
		progressed(fmt.Sprintf("traffic after killing %s (%s)", tc.Nodes[i].ID, what), before)
		if leader == i {
			// The survivors knew the leader's process was gone and did not
			// wait out their heartbeat timeout.
			waitFor(t, 10*time.Second, "a survivor to campaign early for the dead leader", func() bool {
				for j, nd := range tc.Nodes {
					if j != i && strings.Contains(nd.Proc.LogTail(1<<20), "raft leader's process is gone: campaigning sooner") {
						return true
					}
				}
				return false
			})
		}
		t.Logf("killed %s (%s): both directions flowing again after %v", tc.Nodes[i].ID, what, time.Since(t0).Round(time.Millisecond))
		if err := tc.Restart(ctx, i); err != nil {
			t.Fatal(err)
		}
		if err := tc.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The guest's node.
	kill("the guest's node", tc.nodeIndex(guest.Node()))
	// 2. The node hosting the session grain.
	waitFor(t, 20*time.Second, "the session grain to be active somewhere", func() bool { return tc.grainNode(t) >= 0 })
	kill("the session grain's node", tc.grainNode(t))
	// 3. Both: a second guest connected to the grain's node.
	waitFor(t, 20*time.Second, "the session grain to be active somewhere", func() bool { return tc.grainNode(t) >= 0 })
	g := tc.grainNode(t)
	guest2, err := sessionclient.Join(ctx, tc.clientConfig(g), sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: "Carol"})
	if err != nil {
		t.Fatal(err)
	}
	defer guest2.Close()
	if tc.nodeIndex(guest2.Node()) != g {
		t.Fatalf("guest2 on %s, grain on %s", guest2.Node(), tc.Nodes[g].ID)
	}
	g2 := &peer{t: t, s: guest2, expect: "h"}
	g2.received.Store(-1) // set once the first frame tells where it starts
	var g2first atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := guest2.Recv(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, sessionclient.ErrEnded) {
					g2.fail(err)
				}
				return
			}
			if m.Kind != sessionclient.Durable || m.From != "p1" {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimPrefix(string(m.Payload), "h:"), 10, 64)
			if g2first.Load() == 0 {
				g2first.Store(n)
			} else if n != g2.received.Load()+1 {
				g2.fail(fmt.Errorf("guest2 received h:%d after h:%d", n, g2.received.Load()))
				return
			}
			g2.received.Store(n)
		}
	}()
	kill("the grain's node, also guest2's node", g)
	target := hp.sent.Load()
	waitFor(t, 30*time.Second, fmt.Sprintf("guest2 to receive h:%d (has %d, first %d; stats %+v)", target, g2.received.Load(), g2first.Load(), guest2.Stats()), func() bool {
		if err := g2.failed(); err != nil {
			t.Fatal(err)
		}
		return g2.received.Load() >= target && g2first.Load() > 0
	})

	// Stop, flush, and check that everything sent arrived exactly once.
	stopTraffic()
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	for _, p := range []*peer{hp, gp} {
		if err := p.s.Flush(fctx); err != nil {
			t.Fatalf("%s flush: %v (sent %d; stats %+v)", p.prefix, err, p.sent.Load(), p.s.Stats())
		}
	}
	waitFor(t, 30*time.Second, "every frame to arrive", func() bool {
		if err := errors.Join(hp.failed(), gp.failed(), g2.failed()); err != nil {
			t.Fatal(err)
		}
		return gp.received.Load() == hp.sent.Load() && hp.received.Load() == gp.sent.Load() && g2.received.Load() == hp.sent.Load()
	})
	t.Logf("host sent %d, guest sent %d; host stats %+v; guest stats %+v; guest2 stats %+v",
		hp.sent.Load(), gp.sent.Load(), host.Stats(), guest.Stats(), guest2.Stats())
	cancel()
	wg.Wait()
}

// TestProcessManySessions: many sessions at once on three nodes, each host
// and guest on different nodes, all exchanging durable frames concurrently;
// every frame arrives exactly once and in order in its own session only.
func TestProcessManySessions(t *testing.T) {
	tc := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const sessions, frames = 24, 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host, err := sessionclient.Open(ctx, tc.clientConfig(i%3), sessionclient.OpenParams{Token: hostToken, Name: fmt.Sprintf("host%d", i)})
			if err != nil {
				errs <- fmt.Errorf("session %d: open: %w", i, err)
				return
			}
			defer host.Close()
			guest, err := sessionclient.Join(ctx, tc.clientConfig((i+1)%3), sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: fmt.Sprintf("guest%d", i)})
			if err != nil {
				errs <- fmt.Errorf("session %d: join: %w", i, err)
				return
			}
			defer guest.Close()
			var inner sync.WaitGroup
			for _, dir := range []struct {
				from, to *sessionclient.Session
				tag      string
			}{{host, guest, "h"}, {guest, host, "g"}} {
				inner.Add(2)
				go func() {
					defer inner.Done()
					for n := 1; n <= frames; n++ {
						if err := dir.from.Send(ctx, []byte(fmt.Sprintf("%s%d:%d", dir.tag, i, n))); err != nil {
							errs <- fmt.Errorf("session %d: send: %w", i, err)
							return
						}
					}
				}()
				go func() {
					defer inner.Done()
					for n := 1; n <= frames; {
						m, err := dir.to.Recv(ctx)
						if err != nil {
							errs <- fmt.Errorf("session %d: recv: %w", i, err)
							return
						}
						if m.Kind != sessionclient.Durable {
							continue
						}
						if want := fmt.Sprintf("%s%d:%d", dir.tag, i, n); string(m.Payload) != want {
							errs <- fmt.Errorf("session %d: received %q, want %q", i, m.Payload, want)
							return
						}
						n++
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
