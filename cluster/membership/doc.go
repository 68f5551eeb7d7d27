// Package membership is the node's view of the cluster, built on
// hashicorp/memberlist (SWIM gossip). Every node runs one Membership; the
// protoactor ClusterProvider, the Raft voter reconciler and the readiness
// checks consume it through Members, Alive, Watch and DeclaredDead.
//
// # Members and states
//
// Each member carries a Meta (node id, actor-system id, addresses, grain
// kinds, version, HasRaftState) in memberlist's node metadata, encoded as
// compact JSON (EncodeMeta; at most 512 bytes). A peer whose metadata cannot
// be decoded is logged and kept with an empty Meta (only NodeID, the
// memberlist node name, is set).
//
// States: Alive; Suspect; Dead (declared failed by the failure detector);
// Left (graceful Leave). A node that comes back under the same NodeID (a
// restart, on the same or another address) is Alive again with its new Meta.
// Dead and Left members stay in Members for Config.DeadReap.
//
// memberlist v0.7.0 does not say whether a node left or died: NotifyLeave's
// Node.State is never set (nodeState shadows it; hashicorp/memberlist#266,
// open PR #321), and Members() reports every node Alive. So:
//
//   - Left: Leave first gossips the node's meta with a leave flag (UpdateNode,
//     waiting for the broadcast), then calls memberlist's Leave. A member whose
//     last meta carried the flag is Left when it goes; one that missed the
//     flag sees Dead.
//   - Suspect is this node's own suspicion only: set when memberlist logs that
//     its probe failed ("Suspect X has failed, no acks received"), cleared by a
//     direct ack from the member (PingDelegate), by any update from it, or when
//     memberlist's longest suspicion timeout has passed without a death.
//     Suspicions gossiped by other members are not seen. Alive() includes
//     Suspect members.
//
// memberlist calls its delegates with an internal lock held; calling
// memberlist from there deadlocks. This package keeps its own member map,
// updated by the delegates under its own mutex, and answers every query from
// that map. Lock order: memberlist's node lock → Membership.mu.
//
// # Healing
//
// memberlist never probes a member it considers dead, so after a partition
// heals the two sides would stay apart until a push/pull happened to cross.
// Like Serf, each node tries every JoinRetryInterval to join one random
// member it considers dead (for DeadReap), and rejoins the seeds while it has
// no live peer. When a live member's name is claimed from another address (a
// restart elsewhere), memberlist refuses it until the old address is declared
// dead and then waits for the next push/pull; the reconnect loop joins the new
// address as soon as the old one is dead.
//
// # DeclaredDead
//
// A node the others declared dead has been removed from their topology, and
// protoactor blocks a removed actor system for good: if the node simply
// carried on, it would keep grain activations that the others have already
// re-activated elsewhere (split brain, stopped only by the event log's
// epochs). DeclaredDead tells the node so; it must then drop its activations
// and rejoin under a new actor-system id (UpdateMeta). Every "X declared Y's
// life dead" must end with Y rejoining, or with X doing so (a new actor system
// blocks nobody). Signals:
//
//  1. The pause watchdog: a goroutine ticking every 50 ms on the monotonic
//     clock. A gap longer than Config.PauseThreshold, ProbeInterval ×
//     (1 + SuspicionMult) (600 ms with the defaults), means the process did
//     not run (SIGSTOP, VM freeze, swapping) for as long as the others need,
//     at the least, to declare it dead. It fires whether or not they did.
//  2. Accusations by a strict majority of the other live members. A member
//     accuses this node when memberlist here refutes a DEAD message it
//     declared (memberlist only logs "Refuting a dead message (from: X)": its
//     log is routed through a writer that turns lines into slog records and
//     spots this one), and when a member that declared this node dead sees it
//     alive again under the same actor-system id: it sends a dead notice (a
//     memberlist user message over TCP). After one node was cut off, it and
//     the others may have declared each other dead; it is accused by all of
//     them, each of them only by it, so only it rejoins. On an even split (two
//     nodes, 2-2) both sides rejoin.
//  3. Backstop: a member this node declared dead has been alive again under
//     the same actor-system id for Config.RejoinGrace (accused only by a
//     minority, a notice lost, a consumer that ignores the signal): this node
//     rejoins itself.
//
// It fires at most once per actor-system id: see Membership.DeclaredDead.
// Known limit: a node cut off for less than about 300 ms after its own failure
// detector declared the others dead still has that news queued when it comes
// back; memberlist accepts a dead message from any member, so the others then
// briefly declare each other dead too, and more nodes than needed may rejoin.
//
// # Choosing the failure-detection timings
//
// Every ProbeInterval each node probes one member (round robin over a
// shuffled list): a UDP ping answered within ProbeTimeout, else IndirectChecks
// other members ping it for us and a TCP ping is tried, until the end of the
// interval. A member that fails is Suspect; the suspicion is gossiped (every
// GossipInterval, RetransmitMult × ceil(log10(N+1)) times) and the member has
// the suspicion timeout to refute it before it is declared dead:
//
//	timeout = SuspicionMult × max(1, log10(N)) × ProbeInterval
//
// (memberlist's doc comment says log(N+1); its code, util.go
// suspicionTimeout, uses max(1, log10 N): flat up to 10 members, doubled at
// 100). memberlist expects k = SuspicionMult − 2 independent confirmations:
// with k ≥ 1 the timer starts at SuspicionMaxTimeoutMult (6) × timeout and
// shrinks towards timeout as confirmations arrive; with SuspicionMult 2, k = 0
// and the timer is just timeout. So a crashed member is declared dead after
//
//	≈ ProbeInterval (until someone probes it) + ProbeInterval (the failed
//	  probe) + SuspicionMult × max(1, log10 N) × ProbeInterval + a gossip hop
//
// With the defaults here (200 ms, 100 ms, SuspicionMult 2, gossip 100 ms) that
// is 0.6–0.9 s up to 10 nodes (measured ≈0.8 s with 3); memberlist's
// DefaultLANConfig (1 s, 500 ms, 4, 200 ms) gives ≈5–7 s. Shorter timings mean
// a false suspicion must be refuted sooner: a node that is slow to answer
// (CPU starvation, GC or I/O stalls, a saturated link) for longer than about
// ProbeInterval × (1 + SuspicionMult) is declared dead although it is alive,
// and must then rejoin (DeclaredDead). memberlist's awareness (the health
// score metric) stretches a struggling node's own probe interval, but not the
// others' patience. On loaded or virtualised hosts raise SuspicionMult first
// (3–4: it also makes the cluster wait for confirmations from other members,
// k = SuspicionMult − 2) or ProbeInterval; keep ProbeTimeout near the 99th
// percentile round trip and below ProbeInterval.
package membership
