package sessionedge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/events"
)

// noCluster is a node whose actor system is not running: every grain call
// fails at once as unavailable.
type noCluster struct{}

func (noCluster) Cluster() *pcluster.Cluster { return nil }
func (noCluster) ReadStream(context.Context, string, uint64, int, bool) ([]events.RecordedEvent, error) {
	return nil, errors.New("no log")
}
func (noCluster) Watch() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
func (noCluster) Topology() string                 { return "" }
func (noCluster) Healthy() error                   { return nil }

// The idle resync re-attaches exactly the attached connections the grain
// pushed nothing to for their interval, one at a time each, and then waits
// an interval again; connections with recent pushes, not yet attached, or
// whose participant left are left alone.
func TestIdleResyncPicksDueConnections(t *testing.T) {
	cfg := DefaultConfig()
	tokens, err := ParseHostTokens([]string{"alice:" + "0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeID, cfg.HostTokens, cfg.Registerer = "n1", tokens, prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(cfg, noCluster{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })

	now := time.Now()
	mk := func(id string, attached, left bool, lastPush time.Time) *conn {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		c := &conn{e: e, id: id, ctx: ctx, cancel: cancel, log: e.log, code: "123456789", participant: "p2",
			inbox: make(chan proto.Message, 8), kick: make(chan struct{}, 1)}
		c.attachedOnce.Store(attached)
		c.left.Store(left)
		c.lastPush.Store(lastPush.UnixNano())
		c.resyncEvery.Store(int64(resyncMin))
		return c
	}
	due := mk("due", true, false, now.Add(-resyncMin-time.Second))
	recent := mk("recent", true, false, now.Add(-time.Second))
	handshaking := mk("handshaking", false, false, now.Add(-time.Hour))
	gone := mk("gone", true, true, now.Add(-time.Hour))
	e.mu.Lock()
	for _, c := range []*conn{due, recent, handshaking, gone} {
		e.conns[c.id] = c
	}
	e.mu.Unlock()
	t.Cleanup(func() { // before Shutdown: these have no WebSocket to close
		e.mu.Lock()
		clear(e.conns)
		e.mu.Unlock()
	})

	before := map[*conn]int64{recent: recent.lastPush.Load(), handshaking: handshaking.lastPush.Load(), gone: gone.lastPush.Load()}
	failed := e.m.resyncs.WithLabelValues("failed")
	e.resyncIdle(now)
	// resyncIdle marks what it starts before it returns.
	for c := range before {
		if c.resyncing.Load() {
			t.Fatalf("connection %s was picked", c.id)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(failed) < 1 || due.resyncing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the due connection was not resynced")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The grain could not be reached: it tries again one interval later.
	if got := time.Unix(0, due.lastPush.Load()); got.Before(now) {
		t.Fatalf("after a resync the next one is not an interval away (last push %v)", got)
	}
	e.resyncIdle(time.Now())
	if due.resyncing.Load() {
		t.Fatal("the connection was resynced again before its interval passed")
	}
	if n := counterValue(failed); n != 1 {
		t.Fatalf("%v resyncs, want 1 (only the due connection, once)", n)
	}
	for c, last := range before {
		if c.resyncing.Load() || c.lastPush.Load() != last {
			t.Fatalf("connection %s was resynced", c.id)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
