package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait for a condition that must eventually hold.
// It is generous: the assertions never depend on it being short.
const waitTimeout = 10 * time.Second

// checkFor polls f until it returns nil or timeout passes, then fails the
// test with f's last error.
func checkFor(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// testWriter passes log lines to t.Log until the test ends, then drops them
// (connections may log after a test returns).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: level}))
}

func newNetwork(t testing.TB, opts ...Option) *Network {
	return New(append([]Option{WithSeed(1), WithLogger(testLogger(t, slog.LevelDebug))}, opts...)...)
}

// server accepts on 127.0.0.1:0 and hands each connection to handle.
type server struct {
	ln       net.Listener
	addr     string
	received atomic.Int64 // bytes read by echo handlers
	conns    chan net.Conn
}

func startServer(t testing.TB, handle func(s *server, c net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, addr: ln.Addr().String(), conns: make(chan net.Conn, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(s, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// startEcho starts a server writing back everything it reads.
func startEcho(t testing.TB) *server {
	return startServer(t, func(s *server, c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			s.received.Add(int64(n))
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.Close()
				return
			}
		}
	})
}

// startPeer starts a server that hands accepted connections to the test.
func startPeer(t testing.TB) *server {
	return startServer(t, func(s *server, c net.Conn) { s.conns <- c })
}

func (s *server) accept(t testing.TB) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

// dial dials addr from node `from` through n and closes the connection at
// the end of the test.
func dial(t testing.TB, n *Network, from, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := n.Dialer(from, nil)(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFull reads len(want) bytes within waitTimeout and compares them.
func readFull(t testing.TB, c net.Conn, want []byte) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("read %d bytes differing from those written (first %q, want %q)", len(got), clip(got), clip(want))
	}
}

func clip(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// pattern returns n bytes whose content depends on their position, so that
// loss, duplication or reordering shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// result of a call run in the background.
type result struct {
	n   int
	err error
}

// background runs f in a goroutine and returns the channel of its result.
func background(f func() (int, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		n, err := f()
		ch <- result{n, err}
	}()
	return ch
}

func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("call did not return")
		return result{}
	}
}

// stillRunning fails the test if ch already has a result.
func stillRunning(t testing.TB, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%d, %v) while it should stall", what, r.n, r.err)
	default:
	}
}

// waitStats polls until pred holds for the stats of l.
func waitStats(t testing.TB, n *Network, l Link, what string, pred func(LinkStats) bool) {
	t.Helper()
	checkFor(t, waitTimeout, time.Millisecond, func() error {
		if s := n.Stats()[l]; !pred(s) {
			return fmt.Errorf("%s: stats of %s: %+v", what, l, s)
		}
		return nil
	})
}

// isTimeout reports whether err is a net.Error whose Timeout is true.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
