// Package faultnet injects network faults into real TCP connections between
// named nodes of an in-process cluster, the way pebble's errorfs injects
// file system faults: it is product code shared by the cluster tests of the
// replicated event log and by the chaos harness.
//
// # Model
//
// A [Network] knows nodes by name and the addresses (host:port) at which each
// node is reached ([Network.Register]). Faults are set per directed link
// (from -> to): a blocked link ([Network.Block], [Network.Partition],
// [Network.Isolate]), a latency with jitter ([Network.SetDelay]) and segment
// loss ([Network.SetLoss]). [Network.Heal] removes them all.
//
// faultnet wraps only the dialing side of a connection ([Network.Dialer],
// [Network.StreamLayer]), so it knows both ends: the dialing node, named by the
// caller, and the target node, looked up from the address dialed. The
// returned connection applies the from -> to rules to its Writes and the
// to -> from rules to its Reads; the accepting side is an ordinary connection.
// Connections from a node that is not registered, to an address that is not
// registered, from a node to itself, or over a network other than tcp, tcp4
// and tcp6 pass through untouched (the base connection is returned as is).
//
// The rules model what TCP shows an application:
//
//   - A blocked link loses nothing and reorders nothing. A Write while
//     from -> to is blocked stalls until the link heals, the connection is
//     closed or reset, or the write deadline passes. Data already accepted by
//     Write but not yet handed to the socket is held, in order. A Read stalls
//     while to -> from is blocked, even when the data is already in the local
//     kernel or in faultnet's receive buffer: nothing that crossed the link is
//     delivered until it heals. End of stream and connection errors are held
//     the same way, since the FIN or RST crosses the blocked link too.
//   - Delay, jitter and loss delay data in order. Each Write (up to the buffer
//     size, see [WithBufferSize]) and each chunk read from the socket is one
//     segment; it becomes deliverable delay + a uniform random jitter in
//     [0, jitter) after it was sent, plus one retransmission timeout
//     ([WithRTO], default [DefaultRTO]) with the loss probability. A segment
//     is never delivered before the one sent before it (head-of-line
//     blocking), and a Write does not wait for its segment's delay: it
//     returns once the data is queued, like a write into a socket buffer, so
//     pipelined requests overlap their latencies as on a real network.
//   - A dial needs both directions: if either is blocked, the handshake
//     cannot complete. By default the dial fails at once with a [*BlockedError]
//     naming the blocked link ("faultnet: n1 -> n2 blocked"), whose Timeout
//     reports true, as the dial would have timed out; with
//     [WithStallingDials] it waits instead until the link heals or the dial's
//     context ends, like a SYN retransmitted into a partition. A dial that
//     gets through takes one round trip of the links' delays.
//   - Heal and every other rule change wake all stalled readers, writers and
//     dials at once (a broadcast channel, no polling).
//   - [Network.ResetConnections] closes the existing connections between two
//     nodes abortively, like an RST: unsent data is dropped, blocked calls
//     return an error matching [ErrReset] and syscall.ECONNRESET, and the
//     peer sees the connection reset.
//
// Deadlines set on a faultnet connection are enforced by faultnet itself (the
// underlying connection carries none); a call that times out while its link is
// blocked returns a *net.OpError wrapping a [*BlockedError] that also matches
// os.ErrDeadlineExceeded, so the message names the link. Errors of the
// underlying connection are returned unchanged, so callers' net.Error checks
// keep working.
//
// Close is graceful, as with a kernel socket: Read and Write calls waiting on
// the connection, and all later calls, fail at once with net.ErrClosed, while
// data that Write already accepted is still delivered (respecting delays and blocks)
// before the underlying connection is closed. If that takes longer than the
// linger time ([WithLinger], default [DefaultLinger]) the rest is dropped and
// the connection reset.
//
// Choices:
//
//   - [Network.Partition] blocks every pair of nodes in different groups, both
//     ways. Nodes named in no group keep full connectivity. A partition adds
//     to the faults already set; call Heal first to replace them.
//   - [Network.Isolate] marks the node: every link to or from it is blocked,
//     including links to nodes registered later. [Network.Unblock] does not
//     undo an isolation; Heal does.
//   - Each connection runs two goroutines (one sending queued segments, one
//     reading the socket), never one per Write; both end when the connection
//     is closed or reset.
//
// # Logging
//
// Everything logs through log/slog with the attribute component=faultnet:
// rule changes at Info, per-connection events (stalls, refused dials, resets)
// at Debug.
//
// # Locking
//
// Locks are never nested: Network.mu (rules, registry, connection set), each
// lane's mu and each deadline's mu are released before any other is taken,
// and none is held while a goroutine blocks on I/O or on a channel.
package faultnet
