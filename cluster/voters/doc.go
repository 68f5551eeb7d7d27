// Package voters makes the Raft voters of the event log follow cluster
// membership: a Reconciler runs on every node, and the node that leads Raft
// changes the Raft configuration to match the members that the failure
// detector (the membership layer) reports.
//
// # Contract
//
// Inputs. Members() lists the members as the failure detector sees them
// (see Member); a value on the changed channel asks for a pass now. A pass
// also runs every Config.Interval and whenever the local node's Raft state
// or leader changes, so missed signals only cost time.
//
// Bootstrap (only when Config.BootstrapExpect > 0 and the local node has no
// Raft state). Once at least BootstrapExpect alive members are seen, the
// local node is one of them, and none of the alive members has Raft state,
// the node bootstraps a cluster of all alive members without state, sorted
// by id, as voters. Each of those nodes does the same and, seeing the same
// members, bootstraps the same configuration, so one cluster forms. If any
// alive member already has Raft state, the node never bootstraps: it waits to
// be added by the leader. As with Consul's bootstrap_expect, nodes that see
// different member lists at the moment they bootstrap (for example a member
// that joins the gossip while the others are bootstrapping) can bootstrap
// different configurations; with BootstrapExpect equal to the number of
// nodes started together and a shared seed list this does not happen in
// practice. An operator starting nodes one by one sets BootstrapExpect on the
// first only, or 0 everywhere and bootstraps one node explicitly.
//
// Only the leader changes the configuration, one change at a time, each
// waited for (abortably) before the next:
//
//   - Add: an alive member missing from the configuration is added as a
//     non-voter (AddNonvoter). A member whose Raft address changed is added
//     again with the new address, keeping its suffrage.
//   - Promote: a non-voter is made a voter (AddVoter) once its own Status
//     (Node.RemoteStatus of its API address) shows an applied index of at
//     least the leader's commit index minus Config.MaxLag, continuously for
//     Config.StabilizationTime. Any failed or lagging status restarts the
//     clock.
//   - Remove: a voter or non-voter whose member has not been alive for
//     longer than Config.DeadServerGrace is removed (RemoveServer). At most
//     one removal per pass; never the leader itself; a voter only while the
//     alive voters (the leader counts as alive) are a majority of the current
//     voters, so that a cluster without quorum is not made worse. A server
//     absent from the member list entirely (forgotten by the failure
//     detector) counts as not alive since this node first noticed it
//     missing.
//
// Left and dead are treated the same (removal after the grace). Removing a
// node on purpose, for good, goes through events.Node.RemoveSelf; the node
// should leave the membership first, or the leader may add it back as a
// non-voter while it still looks alive (it would then be removed after the
// grace).
//
// Every configuration change is logged at Info with component=voters and
// counted in the metrics (see Config.Registerer).
package voters
