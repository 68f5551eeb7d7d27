package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	ab = Link{From: "a", To: "b"}
	ba = Link{From: "b", To: "a"}
)

// Connections faultnet does not know pass through untouched.
func TestUnknownEndsPassThrough(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Isolate("a")

	// Target address not registered.
	c := dial(t, n, "a", echo.addr)
	if _, ok := c.(*conn); ok {
		t.Fatal("connection to an unregistered address was wrapped")
	}
	msg := []byte("hello")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, msg)

	// Dialing node not registered.
	n.Register("b", echo.addr)
	c = dial(t, n, "stranger", echo.addr)
	if _, ok := c.(*conn); ok {
		t.Fatal("connection from an unregistered node was wrapped")
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, msg)
}

// A partition stalls writes without losing or reordering anything: the bytes
// written before, during and after it arrive intact and in order after Heal.
func TestPartitionStallsWritesUntilHeal(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	c := dial(t, n, "a", echo.addr)
	if _, ok := c.(*conn); !ok {
		t.Fatalf("connection to a registered node not wrapped: %T", c)
	}

	before := []byte("before the partition;")
	if _, err := c.Write(before); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, before)

	n.Partition([]string{"a"}, []string{"b"})
	during := pattern(3*DefaultBufferSize + 123) // more than the buffers hold
	write := background(func() (int, error) { return c.Write(during) })
	waitStats(t, n, ab, "write stalls", func(s LinkStats) bool { return s.StalledWrites == 1 })
	stillRunning(t, write, "Write across a partition")
	if got := echo.received.Load(); got != int64(len(before)) {
		t.Fatalf("server received %d bytes during the partition, want %d", got, len(before))
	}

	n.Heal()
	readFull(t, c, during)
	if r := await(t, write); r.err != nil || r.n != len(during) {
		t.Fatalf("Write = (%d, %v), want (%d, nil)", r.n, r.err, len(during))
	}
	after := []byte("after the heal")
	if _, err := c.Write(after); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, after)
}

// Block stops one direction only; the other keeps flowing.
func TestOneWayBlock(t *testing.T) {
	t.Run("dialer to target", func(t *testing.T) {
		peer := startPeer(t)
		n := newNetwork(t)
		n.Register("a")
		n.Register("b", peer.addr)
		c := dial(t, n, "a", peer.addr)
		sc := peer.accept(t)

		n.Block("a", "b")
		write := background(func() (int, error) { return c.Write([]byte("to b")) })
		waitStats(t, n, ab, "write stalls", func(s LinkStats) bool { return s.StalledWrites == 1 })

		// b -> a still flows.
		if _, err := sc.Write([]byte("to a")); err != nil {
			t.Fatal(err)
		}
		readFull(t, c, []byte("to a"))

		// Nothing reached b: its read times out (the link is blocked, so this
		// is certain, not a race).
		sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if k, err := sc.Read(make([]byte, 8)); !isTimeout(err) {
			t.Fatalf("peer read = (%d, %v) across a blocked link, want a timeout", k, err)
		}
		stillRunning(t, write, "Write across a blocked link")

		n.Unblock("a", "b")
		if r := await(t, write); r.err != nil {
			t.Fatal(r.err)
		}
		readFull(t, sc, []byte("to b"))
	})

	t.Run("target to dialer", func(t *testing.T) {
		peer := startPeer(t)
		n := newNetwork(t)
		n.Register("a")
		n.Register("b", peer.addr)
		c := dial(t, n, "a", peer.addr)
		sc := peer.accept(t)

		n.Block("b", "a")
		read := background(func() (int, error) { return io.ReadFull(c, make([]byte, 4)) })
		if _, err := sc.Write([]byte("to a")); err != nil {
			t.Fatal(err)
		}
		waitStats(t, n, ba, "read stalls", func(s LinkStats) bool { return s.StalledReads == 1 })
		stillRunning(t, read, "Read across a blocked link")

		// a -> b still flows.
		if _, err := c.Write([]byte("to b")); err != nil {
			t.Fatal(err)
		}
		readFull(t, sc, []byte("to b"))

		n.Heal()
		if r := await(t, read); r.err != nil || r.n != 4 {
			t.Fatalf("Read = (%d, %v), want (4, nil)", r.n, r.err)
		}
	})
}

// Data that reached the dialer's side before the block (here: already read
// from the socket into faultnet's receive buffer) is not delivered until the
// link heals.
func TestBlockHoldsDataAlreadyReceived(t *testing.T) {
	peer := startPeer(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", peer.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)

	if _, err := sc.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	fc := c.(*conn)
	checkFor(t, waitTimeout, time.Millisecond, func() error {
		fc.in.mu.Lock()
		defer fc.in.mu.Unlock()
		if fc.in.size != len("early") {
			return errors.New("data not yet in the receive buffer")
		}
		return nil
	})

	n.Block("b", "a")
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	k, err := c.Read(make([]byte, 8))
	if !isTimeout(err) || k != 0 {
		t.Fatalf("Read = (%d, %v) of data held by a block, want (0, timeout)", k, err)
	}
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "b -> a blocked") {
		t.Fatalf("Read error %q does not name the blocked link b -> a", err)
	}
	n.Heal()
	readFull(t, c, []byte("early"))
}

// A write deadline passing during a stall fails the Write with a timeout
// net.Error naming the link, as a real connection would time out; the
// connection stays usable.
func TestWriteDeadlineDuringStall(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	c := dial(t, n, "a", echo.addr)

	n.Block("a", "b")
	const timeout = 100 * time.Millisecond
	start := time.Now()
	c.SetWriteDeadline(start.Add(timeout))
	k, err := c.Write([]byte("x"))
	if elapsed := time.Since(start); elapsed < timeout {
		t.Fatalf("Write returned after %v, before its deadline", elapsed)
	}
	if k != 0 || !isTimeout(err) {
		t.Fatalf("Write = (%d, %v), want (0, a timeout net.Error)", k, err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ErrBlocked) {
		t.Fatalf("Write error %q matches neither os.ErrDeadlineExceeded nor ErrBlocked", err)
	}
	if !strings.Contains(err.Error(), "a -> b blocked") {
		t.Fatalf("Write error %q does not name the link", err)
	}

	// Moving the deadline wakes a Write already waiting.
	c.SetWriteDeadline(time.Time{})
	write := background(func() (int, error) { return c.Write([]byte("y")) })
	waitStats(t, n, ab, "second write stalls", func(s LinkStats) bool { return s.StalledWrites == 2 })
	c.SetWriteDeadline(time.Now())
	if r := await(t, write); !isTimeout(r.err) {
		t.Fatalf("Write after the deadline moved to now = (%d, %v), want a timeout", r.n, r.err)
	}

	c.SetWriteDeadline(time.Time{})
	n.Heal()
	if _, err := c.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, []byte("z"))
}

// A read deadline passing during a stall fails the Read with a timeout.
func TestReadDeadlineDuringStall(t *testing.T) {
	peer := startPeer(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", peer.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)

	n.Block("b", "a")
	if _, err := sc.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if k, err := c.Read(make([]byte, 8)); k != 0 || !isTimeout(err) || !errors.Is(err, ErrBlocked) {
		t.Fatalf("Read = (%d, %v), want (0, a timeout naming the blocked link)", k, err)
	}
	n.Heal()
	readFull(t, c, []byte("held"))
}

// Close wakes a Write and a Read stalled on the connection.
func TestCloseUnblocksStalledCalls(t *testing.T) {
	peer := startPeer(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", peer.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)

	n.Isolate("a")
	write := background(func() (int, error) { return c.Write([]byte("never")) })
	read := background(func() (int, error) { return c.Read(make([]byte, 8)) })
	if _, err := sc.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	waitStats(t, n, ab, "write stalls", func(s LinkStats) bool { return s.StalledWrites == 1 })
	waitStats(t, n, ba, "read stalls", func(s LinkStats) bool { return s.StalledReads == 1 })

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan result{"Write": write, "Read": read} {
		if r := await(t, ch); !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("%s after Close = (%d, %v), want net.ErrClosed", name, r.n, r.err)
		}
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v, want net.ErrClosed", err)
	}
}

// Delay holds data for at least the delay in each direction.
func TestDelay(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	c := dial(t, n, "a", echo.addr)

	const there, back = 80 * time.Millisecond, 40 * time.Millisecond
	n.SetDelay("a", "b", there, 0)
	n.SetDelay("b", "a", back, 0)
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, []byte("ping"))
	if rtt := time.Since(start); rtt < there+back {
		t.Fatalf("round trip took %v, less than the delays %v", rtt, there+back)
	}
}

// Jitter and loss delay segments by different amounts, yet the data keeps
// its order and nothing is lost.
func TestJitterAndLossKeepOrder(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t, WithRTO(5*time.Millisecond))
	n.Register("a")
	n.Register("b", echo.addr)
	c := dial(t, n, "a", echo.addr)

	n.SetDelay("a", "b", time.Millisecond, 20*time.Millisecond)
	n.SetLoss("a", "b", 0.3)
	n.SetDelay("b", "a", 0, 10*time.Millisecond)
	n.SetLoss("b", "a", 0.3)
	data := pattern(64 << 10)
	write := background(func() (int, error) {
		for i := 0; i < len(data); i += 512 { // many small segments
			if _, err := c.Write(data[i : i+512]); err != nil {
				return i, err
			}
		}
		return len(data), nil
	})
	readFull(t, c, data)
	if r := await(t, write); r.err != nil {
		t.Fatal(r.err)
	}
}

// Loss with p = 1 delays each segment by the RTO and loses nothing.
func TestLossRetransmitsAfterRTO(t *testing.T) {
	echo := startEcho(t)
	const rto = 150 * time.Millisecond
	n := newNetwork(t, WithRTO(rto))
	n.Register("a")
	n.Register("b", echo.addr)
	c := dial(t, n, "a", echo.addr)

	n.SetLoss("a", "b", 1)
	data := pattern(1000)
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, data)
	if rtt := time.Since(start); rtt < rto {
		t.Fatalf("round trip took %v with every segment lost, less than the RTO %v", rtt, rto)
	}
	waitStats(t, n, ab, "bytes counted", func(s LinkStats) bool { return s.Bytes == int64(len(data)) })
}

// ResetConnections closes the existing connections between two nodes like
// an RST, on both ends, and leaves other connections alone.
func TestResetConnections(t *testing.T) {
	peer := startPeer(t)
	other := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", peer.addr)
	n.Register("c", other.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)
	keep := dial(t, n, "a", other.addr)

	read := background(func() (int, error) { return c.Read(make([]byte, 8)) })
	if got := n.ResetConnections("b", "a"); got != 1 {
		t.Fatalf("ResetConnections reset %d connections, want 1", got)
	}
	r := await(t, read)
	if !errors.Is(r.err, ErrReset) || !errors.Is(r.err, syscall.ECONNRESET) {
		t.Fatalf("Read on a reset connection = (%d, %v), want ErrReset", r.n, r.err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Fatalf("Write on a reset connection = %v, want ErrReset", err)
	}
	sc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := sc.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer Read after reset = %v, want ECONNRESET", err)
	}
	if s := n.Stats()[ab]; s.Resets != 1 {
		t.Fatalf("stats of a -> b: %+v, want 1 reset", s)
	}

	if _, err := keep.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	readFull(t, keep, []byte("still here"))
}

// Close is graceful: data Write accepted while a delay held it still
// reaches the peer, followed by end of stream.
func TestCloseDeliversQueuedData(t *testing.T) {
	peer := startPeer(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", peer.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)

	n.SetDelay("a", "b", 50*time.Millisecond, 0)
	data := pattern(10000)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := io.ReadAll(sc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatalf("peer read %d bytes, want the %d written before Close", len(got), len(data))
	}
	waitStats(t, n, ab, "connection forgotten", func(s LinkStats) bool { return s.Conns == 0 })
}

// A closed connection whose queued data cannot be delivered (here: delayed
// by an hour) is reset once the linger time passes: it does not linger
// forever.
func TestCloseResetsAfterLinger(t *testing.T) {
	peer := startPeer(t)
	n := newNetwork(t, WithLinger(50*time.Millisecond))
	n.Register("a")
	n.Register("b", peer.addr)
	c := dial(t, n, "a", peer.addr)
	sc := peer.accept(t)

	n.SetDelay("a", "b", time.Hour, 0) // Write returns, its data stays queued
	if _, err := c.Write([]byte("stuck")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Now().Add(waitTimeout))
	if k, err := sc.Read(make([]byte, 8)); k != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer Read = (%d, %v), want the connection reset", k, err)
	}
	waitStats(t, n, ab, "connection forgotten", func(s LinkStats) bool { return s.Conns == 0 })
}

// Writes do not start goroutines: a connection runs two, which end with it.
func TestNoGoroutinePerWrite(t *testing.T) {
	echo := startEcho(t)
	n := newNetwork(t)
	n.Register("a")
	n.Register("b", echo.addr)
	base := runtime.NumGoroutine()
	c := dial(t, n, "a", echo.addr)

	n.SetDelay("a", "b", 20*time.Millisecond, 5*time.Millisecond)
	const writes = 500
	for i := 0; i < writes; i++ {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// With the delay the writes are still queued: none has a goroutine.
	// 2 pumps + 1 echo handler, and some slack for the runtime.
	if got := runtime.NumGoroutine(); got > base+10 {
		t.Fatalf("%d goroutines with %d writes queued, started with %d", got, writes, base)
	}
	want := make([]byte, writes)
	for i := range want {
		want[i] = byte(i)
	}
	readFull(t, c, want)
	c.Close()
	checkFor(t, waitTimeout, 5*time.Millisecond, func() error {
		if got := runtime.NumGoroutine(); got > base {
			return fmt.Errorf("%d goroutines after Close, started with %d", got, base)
		}
		return nil
	})
}
