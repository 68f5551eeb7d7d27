package ports

import (
	"net"
	"os"
	"path/filepath"
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

func TestClaimsKeepTwoProcessesApart(t *testing.T) {
	old := claimDir
	claimDir = t.TempDir()
	defer func() { claimDir = old }()
	if !claim(25000) {
		t.Fatal("first claim refused")
	}
	// Another live process's claim (our parent's PID stands in for it).
	if err := os.WriteFile(filepath.Join(claimDir, "25001"), []byte(strconv.Itoa(os.Getppid())), 0o666); err != nil {
		t.Fatal(err)
	}
	if claim(25001) {
		t.Fatal("a port claimed by a live process was handed out")
	}
	// A claim by a process that is gone is taken over.
	if err := os.WriteFile(filepath.Join(claimDir, "25002"), []byte("999999999"), 0o666); err != nil {
		t.Fatal(err)
	}
	if !claim(25002) {
		t.Fatal("a dead process's claim was not taken over")
	}
}
