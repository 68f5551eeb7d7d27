package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/internal/ports"
)

func freePort(t *testing.T) string {
	t.Helper()
	a, err := ports.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestValidateNamesEveryBadKey(t *testing.T) {
	c := DefaultServeConfig()
	c.NodeID = ""
	c.RaftBind = "nope"
	c.LogLevel = "loud"
	c.Join = []string{"1.2.3.4:1", "nohost"}
	c.BootstrapExpect = -1
	c.Gossip.Key = "short"
	c.Gossip.ProbeInterval = 0
	c.TLS.CAFile = "/nonexistent/ca.pem"
	c.Raft.MaxAppendEntries = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"node_id", "raft_bind", "log_level", `join: "nohost"`, "bootstrap_expect", "gossip.key", "gossip.probe_interval", "tls.cert_file", "raft.max_append_entries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serve starts a single node that becomes ready, prints what to do next and
// stops cleanly when its context ends.
func TestServeSingleNodeReadyAndStops(t *testing.T) {
	httpAddr := freePort(t)
	args := []string{"--node-id", "t1", "--data-dir", t.TempDir(), "--raft-bind", freePort(t), "--api-bind", freePort(t),
		"--http-bind", httpAddr, "--gossip-bind", freePort(t), "--actor-bind", freePort(t), "--session-bind", freePort(t), "--admin-bind", freePort(t), "--log-level", "error"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, args, nil, &out) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never ready; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), `switchboard_raft_state{state="Leader"} 1`) {
		t.Errorf("metrics do not show the node as leader")
	}
	// hashicorp/raft's own metrics (go-metrics), under their own prefix:
	// becoming leader counts once, committing the term's first entry is timed.
	for _, want := range []string{"switchboard_hashicorp_raft_state_leader 1", "switchboard_hashicorp_raft_commitTime_count "} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(out.String(), "/readyz") {
		t.Errorf("startup output does not say where to look:\n%s", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// A listener that cannot bind is reported by name and address, for every
// listener at once, and nothing starts.
func TestServeReportsEveryBindFailure(t *testing.T) {
	busy1, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy1.Close()
	busy2, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy2.Close()
	dir := t.TempDir()
	busy3, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy3.Close()
	args := []string{"--node-id", "t1", "--data-dir", dir, "--raft-bind", busy1.Addr().String(), "--api-bind", freePort(t),
		"--http-bind", busy2.Addr().String(), "--gossip-bind", freePort(t), "--actor-bind", busy3.Addr().String()}
	err := serve(context.Background(), args, nil, &bytes.Buffer{})
	if err == nil {
		t.Fatal("serve started on busy ports")
	}
	for _, want := range []string{fmt.Sprintf("raft listener (raft_bind %s)", busy1.Addr()), fmt.Sprintf("http listener (http_bind %s)", busy2.Addr()),
		fmt.Sprintf("actor listener (actor_bind %s)", busy3.Addr())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
