package pktdelay

import (
	"errors"
	"fmt"
	"time"
)

// Config says which namespace's queue to serve and how long to hold packets.
type Config struct {
	// NetNS is the path of the network namespace whose queue to bind
	// ("/var/run/netns/NAME", "/proc/PID/ns/net"); "" is the caller's own.
	NetNS string
	// Queue is the NFQUEUE number the iptables rule sends packets to.
	Queue uint16
	// Delay and Jitter: each packet is held Delay ± Jitter (uniform).
	Delay, Jitter time.Duration
	// Seed makes the jitter drawn reproducible.
	Seed uint64
	// Backlog is the most packets held at once (0: 16384); beyond it
	// packets pass at once (Stats.Bypassed).
	Backlog int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Delay <= 0 {
		errs = append(errs, fmt.Errorf("pktdelay: delay %v must be positive", c.Delay))
	}
	if c.Jitter < 0 || c.Jitter > c.Delay {
		errs = append(errs, fmt.Errorf("pktdelay: jitter %v must be between 0 and the delay (%v)", c.Jitter, c.Delay))
	}
	if c.Backlog < 0 {
		errs = append(errs, fmt.Errorf("pktdelay: backlog %d must not be negative", c.Backlog))
	}
	return errors.Join(errs...)
}

// Stats counts what a Delayer did.
type Stats struct {
	Delayed  uint64 // packets held and then released
	Bypassed uint64 // packets let through at once: backlog full, or closing
	Failed   uint64 // verdicts the kernel refused (the packet is lost)
}
