// Package pktdelay delays the packets a network namespace sends, without the
// kernel's netem qdisc: an iptables rule hands them to a netfilter queue
// (NFQUEUE), and a Delayer holds each one for the configured time before it
// lets it go on.
//
// It exists because the chaos harness's packet-delay nemesis needs it on
// kernels built without sch_netem (this project's machine has none), while
// NFQUEUE (xt_NFQUEUE, nfnetlink_queue) is in nearly every distribution
// kernel.
//
// Contract:
//   - Start binds queue Config.Queue in the namespace at Config.NetNS (a path
//     such as /var/run/netns/NAME or /proc/PID/ns/net). The caller adds the
//     rule that feeds it, e.g.
//     iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num Q --queue-bypass
//     (--queue-bypass: if no Delayer is bound, packets pass undelayed).
//   - Each packet is released Delay ± Jitter after it was queued, and never
//     before one queued earlier: the order of a namespace's packets is kept,
//     so TCP sees latency, not reordering (netem with jitter reorders).
//   - When the delayer cannot keep up (more than Config.Backlog packets held)
//     it lets packets through at once rather than drop them, and counts them
//     (Stats.Bypassed); the kernel does the same when its queue is full
//     (fail-open).
//   - Close releases every packet still held at once, then unbinds. Remove
//     the iptables rule first: once the queue is unbound, packets the rule
//     still sends there pass undelayed with --queue-bypass and are dropped
//     without it.
//   - Start needs root (CAP_NET_ADMIN) and Linux; elsewhere it returns an
//     error saying so.
package pktdelay
