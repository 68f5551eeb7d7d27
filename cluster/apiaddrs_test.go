package cluster

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/cluster/membership"
)

// resolveAPI answers from a snapshot of the membership that follows every
// change of a member's advertised API address (and knows no other node).
func TestResolveAPIFollowsMembership(t *testing.T) {
	mc := membership.DefaultConfig()
	mc.NodeID, mc.BindAddr = "n1", "127.0.0.1:0"
	mc.Logger = slog.New(slog.DiscardHandler)
	meta := membership.Meta{NodeID: "n1", APIAddr: "127.0.0.1:7001"}
	m, err := membership.Start(mc, meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })

	ctx, cancel := context.WithCancel(t.Context())
	n := &Node{Members: m, ctx: ctx}
	ch, unwatch := m.Watch()
	n.refreshAPIAddrs()
	done := make(chan struct{})
	go func() { defer close(done); n.watchAPIAddrs(ch, unwatch) }()
	t.Cleanup(func() { cancel(); <-done })

	waitAddr := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, ok := n.resolveAPI("n1")
			if ok && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("resolveAPI(n1) = %q, %v; want %q", got, ok, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAddr("127.0.0.1:7001")
	meta.APIAddr = "127.0.0.1:7002"
	if err := m.UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	waitAddr("127.0.0.1:7002")
	if addr, ok := n.resolveAPI("n9"); ok {
		t.Errorf("resolveAPI(n9) = %q for a node the membership does not know", addr)
	}
}
