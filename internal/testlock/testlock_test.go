package testlock

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// A second process asking for a held lock waits until the holder ends.
func TestLockExcludesOtherProcesses(t *testing.T) {
	if os.Getenv("TESTLOCK_CHILD") == "1" {
		Lock(t, "selftest")
		return
	}
	done := make(chan error, 1)
	t.Run("holder", func(t *testing.T) {
		Lock(t, "selftest")
		cmd := exec.Command(os.Args[0], "-test.run", "^TestLockExcludesOtherProcesses$")
		cmd.Env = append(os.Environ(), "TESTLOCK_CHILD=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("the child got the lock while this process held it (%v)", err)
		case <-time.After(300 * time.Millisecond):
		}
	}) // the holder's lock is released here
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the child never got the lock")
	}
}
