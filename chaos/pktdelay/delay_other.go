//go:build !linux

package pktdelay

import "errors"

// Delayer: see delay_linux.go.
type Delayer struct{}

// Start needs Linux's netfilter queues.
func Start(Config) (*Delayer, error) {
	return nil, errors.New("pktdelay: needs Linux (netfilter queues)")
}

func (*Delayer) Stats() Stats { return Stats{} }
func (*Delayer) Err() error   { return nil }
func (*Delayer) Close() error { return nil }
