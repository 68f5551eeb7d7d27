package burstconn

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
)

// recConn records every Write it gets.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestHeldBurstIsOneWrite(t *testing.T) {
	rc := &recConn{}
	c := New(rc)
	c.Write([]byte("a")) // not holding: straight through
	c.Hold()
	c.Write([]byte("b"))
	c.Write([]byte("c"))
	if len(rc.writes) != 1 {
		t.Fatalf("writes while holding reached the connection: %q", rc.writes)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 2 || !bytes.Equal(rc.writes[1], []byte("bc")) {
		t.Fatalf("writes %q, want [a bc]", rc.writes)
	}
	if c.Writes() != 2 {
		t.Fatalf("Writes() = %d, want 2", c.Writes())
	}
	if err := c.Release(); err != nil || len(rc.writes) != 2 {
		t.Fatalf("an empty release wrote: %q %v", rc.writes, err)
	}
	// A hold that grows past MaxHeld writes without waiting for Release.
	c.Hold()
	c.Write(make([]byte, MaxHeld))
	if len(rc.writes) != 3 {
		t.Fatalf("%d writes after %d held bytes, want 3", len(rc.writes), MaxHeld)
	}
	c.Release()
	// A failed write is reported, and every later write fails too.
	rc.err = errors.New("broken pipe")
	c.Hold()
	c.Write([]byte("x"))
	if err := c.Release(); err == nil {
		t.Fatal("Release hid a write error")
	}
	rc.err = nil
	if _, err := c.Write([]byte("y")); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}
}

func TestNilConnHoldAndReleaseDoNothing(t *testing.T) {
	var c *Conn
	c.Hold()
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
}
