package faultnet

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// A dial across a blocked link, in either direction, fails at once with a
// timeout net.Error naming the blocked link.
func TestDialAcrossPartitionFails(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	d := n.Dialer("a", nil)

	for _, tc := range []struct {
		name  string
		fault func()
		link  string
	}{
		{"partition", func() { n.Partition([]string{"a"}, []string{"b"}) }, "a -> b blocked"},
		{"reply direction blocked", func() { n.Block("b", "a") }, "b -> a blocked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.Heal()
			tc.fault()
			// No deadline: the dial must fail by itself.
			c, err := d(context.Background(), "tcp", echo.addr)
			if err == nil {
				c.Close()
				t.Fatal("dial across a blocked link succeeded")
			}
			if !errors.Is(err, ErrBlocked) || !isTimeout(err) {
				t.Fatalf("dial error %v: want ErrBlocked and a timeout net.Error", err)
			}
			var be *BlockedError
			if !errors.As(err, &be) || !strings.Contains(err.Error(), "faultnet: "+tc.link) {
				t.Fatalf("dial error %q does not name the link (%q)", err, tc.link)
			}
		})
	}
	if s := n.Stats()[ab]; s.RefusedDials != 2 {
		t.Fatalf("stats of a -> b: %+v, want 2 refused dials", s)
	}
	n.Heal()
	c := dial(t, n, "a", echo.addr)
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, []byte("ok"))
}

// With WithStallingDials a dial waits for the link like a retransmitted SYN:
// it times out with the context, or completes once the link heals.
func TestStallingDial(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t, WithStallingDials())
	n.Register("a")
	n.Register("b", echo.addr)
	d := n.Dialer("a", nil)
	n.Isolate("b")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if c, err := d(ctx, "tcp", echo.addr); err == nil {
		c.Close()
		t.Fatal("stalling dial across a blocked link succeeded")
	} else if !isTimeout(err) || !errors.Is(err, ErrBlocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalling dial error %v: want a timeout naming the blocked link", err)
	}

	conns := make(chan net.Conn, 1)
	dialed := background(func() (int, error) {
		c, err := d(context.Background(), "tcp", echo.addr)
		conns <- c
		return 0, err
	})
	stillRunning(t, dialed, "stalling dial")
	n.Heal()
	if r := await(t, dialed); r.err != nil {
		t.Fatal(r.err)
	}
	c := <-conns
	defer c.Close()
	if _, err := c.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, []byte("late"))
}

// Delays on the links make the handshake take one round trip.
func TestDialTakesARoundTrip(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	n.SetDelay("a", "b", 30*time.Millisecond, 0)
	n.SetDelay("b", "a", 30*time.Millisecond, 0)
	start := time.Now()
	dial(t, n, "a", echo.addr)
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("dial took %v, less than the round trip", took)
	}
}

func TestCanonicalAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:80":          "127.0.0.1:80",
		"[::ffff:127.0.0.1]:80": "127.0.0.1:80",
		"[::1]:80":              "[::1]:80",
		"[0:0::1]:80":           "[::1]:80",
		"Node1.Example:7000":    "node1.example:7000",
		"not an address":        "not an address",
	} {
		if got := canonicalAddr(in); got != want {
			t.Errorf("canonicalAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	defer func() {
		msg, _ := recover().(error)
		if msg == nil || !strings.Contains(msg.Error(), "WithRTO") || !strings.Contains(msg.Error(), "WithBufferSize") {
			t.Fatalf("New with two bad options panicked with %v, want both named", msg)
		}
	}()
	New(WithRTO(0), WithBufferSize(-1))
}
