// Package bench holds Switchboard's end-to-end benchmarks and the process
// harness they share with the chaos tests.
//
// # bench-log
//
// RunLog implements `make bench-log`: it starts a three-node event-log
// cluster as three `switchboard serve` processes on loopback
// (StartLogCluster; fsync is the nodes' default and is not turned off), then
// drives C concurrent appenders from this process, a separate process from
// the nodes, through the nodes' gRPC Log API: the same API over which nodes
// forward appends to the Raft leader. With --api stream (the default) the
// clients of one connection share one Log/Submit stream (events.SubmitClient),
// each with one append in flight; with --api unary each append is one
// Log/Append call. Each append carries one event of
// --event-size (256) random bytes of data (type "bench"), ExpectedKind ANY
// and a fresh random 16-byte append id, to the client's own stream (or one
// of --streams streams). It prints
//
//	BENCH log appends_per_s=<n> p50_ms=<x> p99_ms=<y> clients=<C> errors=<e> rounds=<r>
//
// per client count. The rate counts appends answered with CODE_OK that
// completed inside the measured window (--duration, after --warmup);
// failures (gRPC errors or another code) are counted in errors= and left out
// of the rate and the latencies. Latencies go into a log-linear Histogram
// (error under 0.4%).
//
// Targets. With --target all (the default) client i talks to node i mod 3,
// so 2/3 of the appends arrive at a follower and take the forwarding hop,
// as etcd clients balanced over all members do (etcd's client round-robins
// over its endpoints and followers forward proposals to the leader). With
// --target leader every client talks to the leader (found from /metrics,
// switchboard_raft_state{state="Leader"} 1, or a forwarded ReadIndex that
// only the leader answers), and etcd clients use only the etcd leader.
// Clients share gRPC connections, 16 per connection (for etcd: 16 per
// clientv3.Client, unary Puts: etcd has no streaming write).
//
// With --peer etcd it also starts a three-member etcd (installing Debian's
// etcd-server with apt-get when etcd is not on PATH) with default
// durability, drives the same load as Puts of --event-size random bytes to
// one key per client (or --streams keys) through go.etcd.io/etcd/client/v3
// with all member endpoints, and prints, per client count,
//
//	BENCH etcd puts_per_s=<n> p50_ms=<x> p99_ms=<y> clients=<C> errors=<e> rounds=<r>
//	BENCH log_vs_etcd ratio=<log rate / etcd rate> p99_ratio=<log p99 / etcd p99> clients=<C>
//
// Rounds. Both clusters are started empty and stay up; the load never runs
// against both at once (the target machine has two cores). For each client
// count of --clients, in the order given, --rounds measured rounds alternate
// between the systems (log, etcd, log, etcd, ...), so that the machine's
// drift over minutes falls on both alike; the round with the median rate is
// reported for each system, with its latencies.
//
// Flags: --clients 64 (or a list, 1,16,64,256), --duration 10s, --warmup 2s,
// --event-size 256, --binary PATH (default: this executable), --peer
// none|etcd, --keep DIR (keep data and process logs in DIR/log/nI.log and
// DIR/etcd/eI.log; otherwise a temporary directory is used and removed after
// a successful run), --streams N (0: one per client), --target all|leader,
// --request-timeout 10s, --etcd-binary etcd, --nodes 3, --ready-timeout 60s,
// --rounds 1.
package bench
