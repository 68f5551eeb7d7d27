//go:build linux

package pktdelay

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testNetns creates a network namespace with lo up whose OUTPUT goes to
// queue q, and returns its path; it is removed when the test ends. Skips
// without root or the ip and iptables tools.
func testNetns(t *testing.T, q uint16) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	name := fmt.Sprintf("pktdelay-%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	mustRun(t, "ip", "netns", "exec", name, "iptables", "-w", "-A", "OUTPUT", "-o", "lo", "-p", "tcp",
		"-j", "NFQUEUE", "--queue-num", fmt.Sprint(q), "--queue-bypass")
	return "/var/run/netns/" + name
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// echoPair opens, inside namespace ns, an echo server and a connection to
// it (sockets stay in the namespace they were created in).
func echoPair(t *testing.T, ns string) net.Conn {
	t.Helper()
	f, err := os.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	var c net.Conn
	var derr error
	if lerr == nil {
		go func() {
			for {
				s, err := l.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(s, s) }()
			}
		}()
		c, derr = net.Dial("tcp", l.Addr().String())
	}
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: let it die with the goroutine.
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if lerr != nil || derr != nil {
		t.Fatalf("listen %v, dial %v", lerr, derr)
	}
	t.Cleanup(func() { c.Close(); l.Close() })
	return c
}

// rtt sends 64 bytes and waits for them to come back.
func rtt(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	b := make([]byte, 64)
	start := time.Now()
	if err := c.SetDeadline(start.Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestDelayerHoldsPacketsAndReleasesOnClose(t *testing.T) {
	const q = 4711
	ns := testNetns(t, q)
	c := echoPair(t, ns) // connected before the delayer: --queue-bypass lets the handshake through

	d, err := Start(Config{NetNS: ns, Queue: q, Delay: 80 * time.Millisecond, Jitter: 10 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Both directions leave through OUTPUT on lo: a round trip is two
	// delayed packets (at least 2 × 70 ms).
	for range 3 {
		if got := rtt(t, c); got < 140*time.Millisecond {
			t.Fatalf("round trip %v with 80±10 ms on each packet; want at least 140 ms", got)
		}
	}
	if s := d.Stats(); s.Delayed < 6 || s.Failed != 0 {
		t.Fatalf("stats %+v: want at least 6 delayed, none failed", s)
	}

	// A packet held when Close is called is let go at once, not dropped
	// (a drop would cost TCP a retransmission) and not kept for its delay.
	d2, err := Start(Config{NetNS: ns, Queue: q + 1, Delay: 5 * time.Second, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(ns, "/var/run/netns/")
	mustRun(t, "ip", "netns", "exec", name, "iptables", "-w", "-R", "OUTPUT", "1", "-o", "lo", "-p", "tcp",
		"-j", "NFQUEUE", "--queue-num", fmt.Sprint(q+1), "--queue-bypass")
	done := make(chan time.Duration, 1)
	go func() { done <- rtt(t, c) }()
	deadline := time.Now().Add(3 * time.Second)
	for d2.Stats() == (Stats{}) && len(d2.held) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no packet reached the 5 s delayer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustRun(t, "ip", "netns", "exec", name, "iptables", "-w", "-F", "OUTPUT")
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got > 2*time.Second {
		t.Fatalf("round trip %v: the held packet waited for its delay or a retransmission after Close", got)
	}
	if s := d2.Stats(); s.Delayed < 1 || s.Failed != 0 {
		t.Fatalf("stats after Close %+v: want the held packet released, none failed", s)
	}
	// And with no rule left, the path is fast again.
	if got := rtt(t, c); got > 50*time.Millisecond {
		t.Fatalf("round trip %v after the delay was removed", got)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{Delay: -1, Jitter: -2, Backlog: -3}.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"delay", "jitter", "backlog"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if err := (Config{Delay: time.Millisecond}).Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}
