package fsm

import (
	"context"
	"errors"
	"testing"
)

func TestWaitAppliedAndPosition(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	applied := make(chan error, 1)
	position := make(chan error, 1)
	go func() { applied <- h.f.WaitApplied(ctx, 2) }()
	go func() { position <- h.f.WaitPosition(ctx, 3) }()

	notify := h.f.Notify()
	h.mustOK(appendCmd("s", Any(), events("a")...))
	<-notify // closed by the applied batch
	h.mustOK(appendCmd("s", Any(), events("b", "c")...))
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if err := <-position; err != nil {
		t.Fatal(err)
	}
	// Already satisfied: returns at once, even with a cancelled context.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.f.WaitApplied(cancelled, 2); err != nil {
		t.Fatal(err)
	}
	// Not satisfied: the context decides.
	if err := h.f.WaitApplied(cancelled, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied: %v", err)
	}
	if err := h.f.WaitPosition(cancelled, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitPosition: %v", err)
	}
}

func TestNotifyOnRestore(t *testing.T) {
	src := newHarness(t)
	populate(src, "a")
	snap := snapshotBytes(t, src.f)
	dst := newHarness(t)
	done := make(chan error, 1)
	go func() { done <- dst.f.WaitPosition(context.Background(), src.f.LastPosition()) }()
	if err := dst.f.Restore(nopCloser(snap)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
