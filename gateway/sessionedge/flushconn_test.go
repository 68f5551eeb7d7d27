package sessionedge

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

func TestFlushConnSendsAHeldBurstAsOneWrite(t *testing.T) {
	rc := &recConn{}
	reg := &sync.Map{}
	c := &flushConn{Conn: rc, reg: reg, key: "k"}
	c.Write([]byte("a")) // not holding: straight through
	c.hold()
	c.Write([]byte("b"))
	c.Write([]byte("c"))
	if len(rc.writes) != 1 {
		t.Fatalf("writes while holding reached the connection: %q", rc.writes)
	}
	if err := c.release(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 2 || !bytes.Equal(rc.writes[1], []byte("bc")) {
		t.Fatalf("writes %q, want [a bc]", rc.writes)
	}
	if err := c.release(); err != nil || len(rc.writes) != 2 {
		t.Fatalf("an empty release wrote: %q %v", rc.writes, err)
	}
	// A hold that grows past maxHeld writes without waiting for release.
	c.hold()
	c.Write(make([]byte, maxHeld))
	if len(rc.writes) != 3 {
		t.Fatalf("%d writes after %d held bytes, want 3", len(rc.writes), maxHeld)
	}
	c.release()
	// A failed write is reported, and every later write fails too.
	rc.err = errors.New("broken pipe")
	c.hold()
	c.Write([]byte("x"))
	if err := c.release(); err == nil {
		t.Fatal("release hid a write error")
	}
	rc.err = nil
	if _, err := c.Write([]byte("y")); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}
}
