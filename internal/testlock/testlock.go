// Package testlock serialises tests of different packages (which `go test`
// runs as parallel processes) that must not overlap on this host: a test
// holding a lock blocks every other test, in any process, that asks for the
// same one, until it ends.
//
// HostNetwork is taken by tests that change the host's network (Docker
// networks and containers, network namespaces) and by tests that break when
// it changes (a browser aborts its requests with ERR_NETWORK_CHANGED when an
// interface appears).
package testlock

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// HostNetwork is the lock of the host's network configuration.
const HostNetwork = "host-network"

// Lock blocks until this process holds the named lock (an flock on a file
// in the temporary directory) and releases it when the test ends.
func Lock(tb testing.TB, name string) {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), "switchboard-testlocks")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		tb.Fatalf("testlock: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		tb.Fatalf("testlock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		tb.Fatalf("testlock %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
