// Package raftstore stores the log and stable state of a hashicorp/raft node
// in a Pebble database that the node shares with other components (the event
// store keeps its keys in the same database, so one WAL and one fsync serve
// both).
//
// # Key layout
//
// A Store owns one prefix byte (by convention 0x01; the event store uses 0x02)
// and touches only two sub-ranges below it:
//
//	prefix 'l' <index: 8 bytes big-endian>  -> EncodeLog(entry)
//	prefix 's' <key bytes>                  -> stable value (SetUint64: 8 bytes big-endian)
//
// Every iterator the package opens has LowerBound and UpperBound set to one
// of these sub-ranges, and every range deletion is confined to the log
// sub-range, so keys of other components are never read or deleted.
//
// # Durability
//
// Every write (StoreLogs, StoreLog, DeleteRange, Set, SetUint64) is one Pebble
// batch committed with pebble.Sync: when the method returns nil, the change
// survives a crash or power loss. A failed WAL write or sync is not an error
// Pebble can return: it reports it through Logger.Fatalf, and OpenDB's logger
// panics there (see OpenDB), because continuing would report unsynced writes
// as durable.
//
// # Log invariant
//
// The stored log is always a contiguous range FirstIndex..LastIndex (both 0
// when empty), as raft.MonotonicLogStore promises. StoreLogs appends
// consecutive entries after LastIndex, DeleteRange removes a prefix, a suffix
// or everything; see their documentation for how the writes raft actually
// issues map onto these rules.
//
// # Concurrency
//
// All methods are safe for concurrent use. StoreLogs and DeleteRange are
// serialized by Store.writeMu, which is held across the Pebble commit so that
// the cached first/last index changes together with the data; it is the only
// lock in the package and no other lock is taken while holding it. Readers
// (FirstIndex, LastIndex, GetLog, Get, GetUint64) take no lock.
//
// At most one Store may exist per database and prefix at a time: the cached
// index bounds of a second Store would go stale.
package raftstore
