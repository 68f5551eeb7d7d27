package raftstore

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults OpenDB applies to zero fields of DBOptions.
const (
	DefaultCacheSize    int64  = 128 << 20
	DefaultMemTableSize uint64 = 64 << 20
)

// DBOptions configures OpenDB. The zero value is valid.
type DBOptions struct {
	// Logger receives Pebble's messages and notable events (background
	// errors, slow disk, write stalls) with the attribute component=pebble.
	// nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is the block cache size in bytes; 0 means DefaultCacheSize.
	CacheSize int64
	// MemTableSize is the size of one memtable in bytes (Pebble starts
	// smaller and doubles up to it); 0 means DefaultMemTableSize. Must be
	// below 4 GiB.
	MemTableSize uint64
	// FS is the filesystem; nil means vfs.Default. Tests may pass vfs.NewMem(),
	// vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// DisableWAL runs the database without a write-ahead log: a crash loses
	// every write not yet flushed to an sstable, and synced commits are not
	// durable. Only for a store that makes itself durable by flushing and can
	// be rebuilt from elsewhere (the event store, from the Raft log: see
	// fsm.Options.NoWAL). Never for the Raft log itself.
	DisableWAL bool
}

// OpenDB opens (creating if needed) the node's Pebble database in dir with
// options suited to a raft log + event store sharing one WAL.
//
// The options: the WAL is on and every write of this package syncs it;
// memtables of MemTableSize with up to 4 queued before writes stop; a block
// cache of CacheSize; bloom filters for point reads (GetLog, event lookups);
// memtables holding a range deletion (raft log truncation) are flushed
// within 10 s so the space of deleted logs is reclaimed; up to
// min(4, GOMAXPROCS/2) concurrent compactions; on-disk format
// pebble.FormatTableFormatV6 (WAL sync chunks, sstable footer checksums).
// Opening a database written with an older format upgrades it to this one.
//
// Pebble reports failures it cannot recover from (a failed WAL write or
// sync, a failed MANIFEST write, data corruption) through Logger.Fatalf.
// The logger OpenDB installs logs them at error level and then panics with
// an error; it never returns, because Pebble would otherwise carry on and
// Commit would report a write as durable that is not. Do not recover that
// panic: restart the process.
//
// The caller closes the returned DB after every user of it is done.
// Invalid options are all reported in one error.
func OpenDB(dir string, opts DBOptions) (*pebble.DB, error) {
	var problems []string
	if dir == "" {
		problems = append(problems, "dir is empty")
	}
	if opts.CacheSize < 0 {
		problems = append(problems, fmt.Sprintf("CacheSize is %d, must be >= 0", opts.CacheSize))
	}
	if opts.MemTableSize >= 4<<30 {
		problems = append(problems, fmt.Sprintf("MemTableSize is %d, must be < 4 GiB", opts.MemTableSize))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("raftstore: open db: invalid options: %s", strings.Join(problems, "; "))
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "pebble")

	po := &pebble.Options{
		FS:                          opts.FS,
		CacheSize:                   opts.CacheSize,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatTableFormatV6,
		DisableWAL:                  opts.DisableWAL,
		FlushDelayDeleteRange:       10 * time.Second,
		CompactionConcurrencyRange: func() (int, int) {
			return 1, min(4, max(1, runtime.GOMAXPROCS(0)/2))
		},
		Logger:        pebbleLogger{l: logger},
		EventListener: eventListener(logger),
	}
	// Later levels inherit L0's filter policy.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)

	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open db %q: %w", dir, err)
	}
	return db, nil
}

// eventListener logs the events an operator must see. Fields left nil get
// Pebble's defaults, which route DataCorruption to Logger.Fatalf.
func eventListener(l *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.Error("pebble background error", "error", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("pebble disk slow", "info", info.String())
		},
		LowDiskSpace: func(info pebble.LowDiskSpaceInfo) {
			l.Warn("pebble low disk space", "info", info.String())
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			l.Warn("pebble write stall begin", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			l.Info("pebble write stall end")
		},
		FormatUpgrade: func(v pebble.FormatMajorVersion) {
			l.Info("pebble format upgraded", "version", uint64(v))
		},
	}
}

// FatalError is the panic value of OpenDB's Pebble logger on a failure Pebble
// cannot recover from (see OpenDB).
type FatalError struct {
	Msg string
}

func (e *FatalError) Error() string { return "raftstore: pebble fatal: " + e.Msg }

// pebbleLogger adapts slog to pebble.Logger.
type pebbleLogger struct {
	l *slog.Logger
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// Fatalf logs and panics: Pebble assumes Fatalf does not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	p.l.Error(msg, "fatal", true)
	panic(&FatalError{Msg: msg})
}

var _ pebble.Logger = pebbleLogger{}
