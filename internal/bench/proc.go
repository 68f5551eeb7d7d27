package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-io/switchboard/internal/ports"
)

// Proc is a child process run by a bench or a test harness: it runs in its
// own process group (Setpgid), so that signals reach it and its children and
// the terminal's Ctrl-C does not; its stdout and stderr are appended to
// LogPath; it is killed (SIGKILL to the group) when the context passed to
// Start is cancelled. A Proc may be started again after it exited (Restart
// in the clusters), with the same arguments.
type Proc struct {
	Name    string   // for messages, e.g. "n1"
	Path    string   // executable
	Args    []string // arguments, without the program name
	Env     []string // extra environment (KEY=VALUE), added to os.Environ()
	LogPath string   // stdout and stderr are appended here

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	stopped bool // by Stop or Kill, not on its own
}

// Start starts the process. It fails if the process is already running.
func (p *Proc) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.Name, err)
	}
	fmt.Fprintf(logf, "=== %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.CommandContext(ctx, p.Path, p.Args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start %s: %w", p.Name, p.Path, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.stopped = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "=== %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), exitText(err))
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// killGroup signals the process group led by pid.
func killGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Pid returns the process id, 0 if never started.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the process has exited (nil if never started).
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Running reports whether the process was started and has not exited.
func (p *Proc) Running() bool {
	d := p.Done()
	if d == nil {
		return false
	}
	select {
	case <-d:
		return false
	default:
		return true
	}
}

// ExitErr returns the result of Wait once the process has exited (nil for
// exit status 0, or while running).
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Expected reports whether the process should be running: it was started
// and not stopped with Stop or Kill since. A process that is expected but not
// Running has exited on its own.
func (p *Proc) Expected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done != nil && !p.stopped
}

func (p *Proc) markStopped() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// Signal sends sig to the process group. It returns os.ErrProcessDone if the
// process has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return os.ErrProcessDone
	}
	if err := killGroup(p.Pid(), sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

// Stop sends SIGTERM to the process group and waits up to timeout for the
// process to exit, then sends SIGKILL and waits for it. It returns an error
// only if SIGKILL was needed. A process that is not running is left alone.
func (p *Proc) Stop(timeout time.Duration) error {
	d := p.Done()
	if !p.Running() {
		return nil
	}
	p.markStopped()
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d:
		return nil
	case <-t.C:
	}
	_ = p.Signal(syscall.SIGKILL)
	<-d
	return fmt.Errorf("%s: did not exit within %v of SIGTERM; killed", p.Name, timeout)
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Proc) Kill() error {
	d := p.Done()
	if !p.Running() {
		return nil
	}
	p.markStopped()
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-d
	return nil
}

// LogTail returns up to the last n bytes of the process's log.
func (p *Proc) LogTail(n int64) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// FreePorts returns n distinct free ports on 127.0.0.1 (internal/ports:
// outside the ephemeral range, never the same twice in this process).
func FreePorts(n int) ([]int, error) {
	p, err := ports.Free(n)
	if err != nil {
		return nil, fmt.Errorf("pick free ports: %w", err)
	}
	return p, nil
}

// stopAll stops procs concurrently (stopping a Raft cluster one node at a
// time makes the last ones wait for elections).
func stopAll(procs []*Proc, timeout time.Duration) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Stop(timeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
