// Package ports hands out free loopback ports for test clusters and
// benchmarks.
//
// Ports come from 20000–32767, below Linux's default ephemeral range
// (32768–60999): a port found by listening on port 0 is an ephemeral port,
// which any outgoing connection of any process may take between the moment it
// is picked and the moment a node binds it — with many test processes
// running at once that happened. Ports here are picked at random, checked free
// for TCP and UDP on 127.0.0.1, and never handed out twice by one process.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
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
		if handedOut[p] || !free(p) {
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
