package membership

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is DefaultConfig (the tuned timings) on 127.0.0.1 port 0, with a
// faster join retry so that healing tests stay short.
func testConfig(name string) Config {
	c := DefaultConfig()
	c.NodeID = name
	c.BindAddr = "127.0.0.1:0"
	c.JoinRetryInterval = 250 * time.Millisecond
	return c
}

// eventually polls cond every 20 ms until it returns "" or the deadline
// passes, then fails with cond's last complaint.
func eventually(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// harness starts nodes in one test, collects their logs (dumped if the test
// fails, or streamed with MEMBERSHIP_TEST_LOG=1) and shuts them down.
type harness struct {
	t    *testing.T
	logs *syncBuffer
	out  io.Writer
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, logs: &syncBuffer{}}
	h.out = h.logs
	if os.Getenv("MEMBERSHIP_TEST_LOG") != "" {
		h.out = io.MultiWriter(h.logs, os.Stderr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", h.logs)
		}
	})
	return h
}

func (h *harness) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(h.out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start starts node name with meta{NodeID: name, ActorSystemID: name+"-1"}
// joining seeds; adjust edits the config first.
func (h *harness) start(name string, seeds []string, adjust ...func(*Config, *Meta)) *Membership {
	h.t.Helper()
	cfg := testConfig(name)
	cfg.Join = seeds
	cfg.Logger = h.logger()
	meta := Meta{NodeID: name, ActorSystemID: name + "-1", ActorHost: "127.0.0.1", ActorPort: 9000,
		Kinds: []string{"session"}, Version: "test"}
	for _, f := range adjust {
		f(&cfg, &meta)
	}
	m, err := Start(cfg, meta)
	if err != nil {
		h.t.Fatalf("start %s: %v", name, err)
	}
	h.t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// view describes what m sees of member name ("" if it does not know it).
func view(m *Membership, name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.NodeID == name {
			return mem, true
		}
	}
	return Member{}, false
}

// sees returns "" when m sees member name in state s (and match, if given, holds).
func sees(m *Membership, name string, s State, match func(Member) bool) string {
	mem, ok := view(m, name)
	switch {
	case !ok:
		return fmt.Sprintf("%s does not know %s", m.cfg.NodeID, name)
	case mem.State != s:
		return fmt.Sprintf("%s sees %s %v, want %v", m.cfg.NodeID, name, mem.State, s)
	case match != nil && !match(mem):
		return fmt.Sprintf("%s sees %s with %+v", m.cfg.NodeID, name, mem)
	}
	return ""
}

// allAlive returns "" when every node sees exactly the given members, all Alive.
func allAlive(nodes []*Membership, names ...string) string {
	for _, m := range nodes {
		ms := m.Members()
		if len(ms) != len(names) {
			return fmt.Sprintf("%s sees %d members, want %d: %+v", m.cfg.NodeID, len(ms), len(names), ms)
		}
		for _, n := range names {
			if msg := sees(m, n, Alive, nil); msg != "" {
				return msg
			}
		}
	}
	return ""
}
