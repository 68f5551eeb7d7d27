package runner

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/chaos/pktdelay"
)

// The delay nemesis: what it adds to every packet a node sends, and the
// netfilter queue number its iptables rule uses inside the node's network
// namespace (queues are per namespace, so one number serves every node).
const (
	delayBase   = 150 * time.Millisecond
	delayJitter = 50 * time.Millisecond
	delayQueue  = 4242
)

// delayers holds the packet delayers running, by node (without the kernel's
// netem qdisc: chaos/pktdelay).
type delayers struct {
	mu    sync.Mutex
	m     map[int]*pktdelay.Delayer
	count uint64 // delayers started: each draws its own jitter
}

// start binds node i's queue (delayQueue) in the namespace at ns; a
// delayer already running for i is kept.
func (ds *delayers) start(i int, ns string) error { return ds.startQueue(i, ns, delayQueue) }

// startQueue is start with queue q (nodes sharing a namespace need one each).
func (ds *delayers) startQueue(i int, ns string, q uint16) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.m[i] != nil {
		return nil
	}
	ds.count++
	d, err := pktdelay.Start(pktdelay.Config{NetNS: ns, Queue: q, Delay: delayBase, Jitter: delayJitter,
		Seed: uint64(i)<<32 | ds.count})
	if err != nil {
		return fmt.Errorf("delay node %d: %w", i+1, err)
	}
	if ds.m == nil {
		ds.m = map[int]*pktdelay.Delayer{}
	}
	ds.m[i] = d
	return nil
}

// stop releases what node i's delayer holds and stops it (nothing when
// none runs). Remove the rule feeding it first.
func (ds *delayers) stop(i int) error {
	ds.mu.Lock()
	d := ds.m[i]
	delete(ds.m, i)
	ds.mu.Unlock()
	if d == nil {
		return nil
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("delay node %d: %w", i+1, err)
	}
	if s := d.Stats(); s.Failed > 0 {
		return fmt.Errorf("delay node %d: %d verdicts refused (packets lost): %w", i+1, s.Failed, d.Err())
	}
	return nil
}

// stopAll stops every delayer.
func (ds *delayers) stopAll() error {
	ds.mu.Lock()
	var nodes []int
	for i := range ds.m {
		nodes = append(nodes, i)
	}
	ds.mu.Unlock()
	var errs []error
	for _, i := range nodes {
		errs = append(errs, ds.stop(i))
	}
	return errors.Join(errs...)
}

// delayProblem says why packet delay cannot work here ("" when it can):
// the iptables NFQUEUE target (tried in a throwaway namespace) and a
// netfilter queue this process can bind.
func delayProblem() string {
	if err := run("unshare", "-n", "iptables", "-w", "-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", "1", "--queue-bypass"); err != nil {
		return "needs the iptables NFQUEUE target: " + err.Error()
	}
	d, err := pktdelay.Start(pktdelay.Config{Queue: 65535, Delay: time.Millisecond})
	if err != nil {
		return "needs netfilter queues (nfnetlink_queue): " + err.Error()
	}
	_ = d.Close()
	return ""
}
