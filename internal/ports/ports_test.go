package ports

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeHandsOutDistinctBindablePortsBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 5 {
		ps, err := Free(20)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p < Low || p >= High {
				t.Fatalf("port %d outside [%d, %d)", p, Low, High)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	addr, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("handed-out %s cannot be bound: %v", addr, err)
	}
	defer l.Close()
	// A port in use is never handed out.
	_, ps, _ := net.SplitHostPort(l.Addr().String())
	busy, _ := strconv.Atoi(ps)
	mu.Lock()
	delete(handedOut, busy)
	mu.Unlock()
	if free(busy) {
		t.Fatalf("port %d in use reported free", busy)
	}
}
