//go:build linux

package pktdelay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"
)

// Delayer holds the packets of one namespace's queue; see the package doc.
type Delayer struct {
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc
	stop   chan struct{} // closed when Close begins: release everything at once
	done   chan struct{} // closed when the releaser has returned

	mu      sync.Mutex // the schedule; closing; sends on and the close of held
	sched   *schedule
	closing bool
	held    chan held

	closeOnce sync.Once
	delayed   atomic.Uint64
	bypassed  atomic.Uint64
	failed    atomic.Uint64
	lastErr   atomic.Value // error
}

type held struct {
	id uint32
	at time.Time
}

// Start binds the queue and starts holding the packets it receives.
func Start(cfg Config) (*Delayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 16384
	}
	var nsfd int
	if cfg.NetNS != "" {
		f, err := os.Open(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("pktdelay: network namespace: %w", err)
		}
		defer f.Close() // the socket keeps the namespace once created
		nsfd = int(f.Fd())
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:       nsfd,
		NfQueue:     cfg.Queue,
		MaxQueueLen: uint32(cfg.Backlog),
		Copymode:    nfqueue.NfQnlCopyMeta, // the id is all we need
		// FailOpen: the kernel accepts rather than drops when its queue is
		// full; GSO: it hands large segments over whole.
		Flags:        nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO,
		AfFamily:     unix.AF_INET,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("pktdelay: open the netfilter queue: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Delayer{nf: nf, cancel: cancel, held: make(chan held, cfg.Backlog), stop: make(chan struct{}), done: make(chan struct{}),
		sched: newSchedule(cfg.Delay, cfg.Jitter, cfg.Seed)}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID != nil && !d.hold(*a.PacketID) {
			d.accept(*a.PacketID, &d.bypassed)
		}
		return 0
	}
	onErr := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		var op interface{ Timeout() bool }
		if errors.As(err, &op) && op.Timeout() {
			return 0 // the library's read deadline: keep reading
		}
		d.lastErr.Store(err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		cancel()
		_ = nf.Close()
		return nil, fmt.Errorf("pktdelay: bind queue %d: %w", cfg.Queue, err)
	}
	go d.release()
	return d, nil
}

// hold schedules packet id's release; false when it must pass at once
// (closing, or the backlog is full).
func (d *Delayer) hold(id uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	select {
	case d.held <- held{id: id, at: d.sched.next(time.Now())}:
		return true
	default:
		return false
	}
}

// release lets each held packet go when it is due; once Close has begun, at
// once.
func (d *Delayer) release() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for p := range d.held {
		if wait := time.Until(p.at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.stop:
			}
		}
		d.accept(p.id, &d.delayed)
	}
}

func (d *Delayer) accept(id uint32, counter *atomic.Uint64) {
	if err := d.nf.SetVerdict(id, nfqueue.NfAccept); err != nil {
		d.failed.Add(1)
		d.lastErr.Store(err)
		return
	}
	counter.Add(1)
}

// Stats returns the counts so far.
func (d *Delayer) Stats() Stats {
	return Stats{Delayed: d.delayed.Load(), Bypassed: d.bypassed.Load(), Failed: d.failed.Load()}
}

// Err returns the last error reading the queue or giving a verdict, if any.
func (d *Delayer) Err() error {
	if err, ok := d.lastErr.Load().(error); ok {
		return err
	}
	return nil
}

// Close releases every held packet at once and unbinds the queue.
func (d *Delayer) Close() error {
	var err error
	d.closeOnce.Do(func() {
		// Release what is held while the queue is still bound: unbinding
		// makes the kernel drop every packet still waiting for a verdict.
		close(d.stop)
		d.mu.Lock()
		d.closing = true // from here the hook lets packets through at once
		close(d.held)
		d.mu.Unlock()
		<-d.done
		d.cancel()
		err = d.nf.Close()
	})
	if err != nil {
		return fmt.Errorf("pktdelay: close: %w", err)
	}
	return nil
}
