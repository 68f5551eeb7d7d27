// Package ports hands out free loopback ports for test clusters and
// benchmarks.
//
// Ports come from 20000–32767, below Linux's default ephemeral range
// (32768–60999): a port found by listening on port 0 is an ephemeral port,
// which any outgoing connection of any process may take between the moment it
// is picked and the moment a node binds it — with many test processes
// running at once that happened. Ports here are picked at random, checked free
// for TCP and UDP on 127.0.0.1, and never handed out twice: not by one
// process (a map) and not by two processes at once (a claim file per port in
// the temporary directory, naming the claiming process; a claim by a process
// that no longer exists is taken over).
package ports

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Range of the ports handed out: [Low, High).
const (
	Low  = 20000
	High = 32768
)

var (
	mu        sync.Mutex
	handedOut = map[int]bool{}
)

// Free returns n distinct ports on 127.0.0.1 that were free for TCP and UDP a
// moment ago and that this process has not handed out before.
func Free(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 10000 {
			return nil, fmt.Errorf("ports: no free port found in %d-%d after %d tries", Low, High-1, tries)
		}
		p := Low + rand.IntN(High-Low)
		if handedOut[p] || !free(p) || !claim(p) {
			continue
		}
		handedOut[p] = true
		out = append(out, p)
	}
	return out, nil
}

// Addr returns one free "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Free(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p[0]), nil
}

func free(p int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// claimDir holds one file per port handed out by some process: its PID.
var claimDir = filepath.Join(os.TempDir(), "switchboard-ports")

// claim records that this process hands out port p; false when a live
// process claimed it already.
func claim(p int) bool {
	if err := os.MkdirAll(claimDir, 0o777); err != nil {
		return true // no claims possible: rely on the bind check alone
	}
	path := filepath.Join(claimDir, strconv.Itoa(p))
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			_, _ = f.WriteString(strconv.Itoa(os.Getpid()))
			_ = f.Close()
			return true
		}
		if !errors.Is(err, fs.ErrExist) {
			return true
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid != os.Getpid() && alive(pid) {
			return false
		}
		// A claim of ours from an earlier pick, or of a process that is
		// gone: take it over.
		_ = os.Remove(path)
	}
	return false
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
