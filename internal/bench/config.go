package bench

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Peer systems RunLog can compare against.
const (
	PeerNone = "none"
	PeerEtcd = "etcd"
)

// Targets: which nodes the load connects to.
const (
	TargetAll    = "all"
	TargetLeader = "leader"
)

// Log APIs the load can use.
const (
	APIStream = "stream" // Log/Submit: one stream per connection, appends pipelined on it
	APIUnary  = "unary"  // Log/Append: one call per append
)

// logConfig is the parsed command line of RunLog.
type logConfig struct {
	clients        []int
	duration       time.Duration
	warmup         time.Duration
	eventSize      int
	binary         string
	peer           string
	keep           string
	streams        int
	target         string
	api            string
	requestTimeout time.Duration
	etcdBinary     string
	etcdTLS        bool
	nodes          int
	readyTimeout   time.Duration
	rounds         int
	nodeArgs       []string
}

// maxEventSize keeps --event-size within what both systems accept by default
// (etcd's request limit is 1.5 MiB, the log's event limit 1 MiB).
const maxEventSize = 1 << 20

// clientList is a flag.Value for "--clients 64" or "--clients 1,16,64,256".
type clientList []int

func (c *clientList) String() string {
	if c == nil {
		return ""
	}
	s := make([]string, len(*c))
	for i, n := range *c {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (c *clientList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return fmt.Errorf("want a positive integer or a comma-separated list such as 1,16,64,256, got %q", v)
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		if n > 100000 {
			return fmt.Errorf("%d clients is more than the limit of 100000", n)
		}
		out = append(out, n)
	}
	*c = out
	return nil
}

func newLogFlagSet(cfg *logConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("bench-log", flag.ContinueOnError)
	cfg.clients = []int{64}
	fs.Var((*clientList)(&cfg.clients), "clients", "concurrent appenders; a comma list (1,16,64,256) runs each in turn against the same cluster")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per client count")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.IntVar(&cfg.eventSize, "event-size", 256, "bytes of event data per append (and of value per etcd put)")
	fs.StringVar(&cfg.binary, "binary", "", "switchboard binary to start the nodes with (default: this executable)")
	fs.StringVar(&cfg.peer, "peer", PeerNone, "system to compare with: none or etcd")
	fs.StringVar(&cfg.keep, "keep", "", "keep data and node logs in this directory (default: a temporary directory, removed after a successful run)")
	fs.IntVar(&cfg.streams, "streams", 0, "distinct streams written (0: one per client)")
	fs.StringVar(&cfg.target, "target", TargetAll, "nodes the clients connect to: all (spread over every node; 2/3 of requests take the forwarding hop) or leader")
	fs.StringVar(&cfg.api, "api", APIStream, "how the log's load appends: stream (Log/Submit, one stream per connection shared by its clients, each with one append in flight) or unary (one Log/Append call per append)")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", 10*time.Second, "deadline of each append or put")
	fs.StringVar(&cfg.etcdBinary, "etcd-binary", "etcd", "etcd server binary (with --peer etcd; installed with apt-get install etcd-server when absent)")
	fs.BoolVar(&cfg.etcdTLS, "etcd-tls", true, "run etcd with mutual TLS on its client and peer URLs, as the nodes run (false: plain HTTP, etcd's default)")
	fs.IntVar(&cfg.nodes, "nodes", 3, "cluster size (both systems)")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for a started cluster to become ready")
	fs.IntVar(&cfg.rounds, "rounds", 1, "measured rounds per client count, alternating between the systems; the round with the median rate is reported")
	fs.Func("node-args", "extra arguments for every log node, space-separated (e.g. \"--enable-pprof\")", func(v string) error {
		cfg.nodeArgs = strings.Fields(v)
		return nil
	})
	return fs
}

// parseLogFlags parses RunLog's arguments. Errors name the offending flag.
// With -h it returns an error wrapping flag.ErrHelp and the usage text.
func parseLogFlags(args []string) (logConfig, error) {
	var cfg logConfig
	fs := newLogFlagSet(&cfg)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprintf(&out, "usage: switchboard bench log [flags]\n\nFlags (--name or -name):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, fmt.Errorf("%w\n%s", flag.ErrHelp, out.String())
		}
		return cfg, fmt.Errorf("bench-log: %w", err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("bench-log: unexpected argument %q (all options are flags, e.g. --clients 64)", fs.Arg(0))
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(cfg.clients) == 0 {
		bad("--clients: at least one client count is needed")
	}
	if cfg.duration <= 0 {
		bad("--duration: must be positive, got %v", cfg.duration)
	}
	if cfg.warmup < 0 {
		bad("--warmup: must not be negative, got %v", cfg.warmup)
	}
	if cfg.eventSize < 1 || cfg.eventSize > maxEventSize {
		bad("--event-size: must be 1..%d bytes, got %d", maxEventSize, cfg.eventSize)
	}
	switch cfg.peer {
	case PeerNone, PeerEtcd:
	default:
		bad("--peer: must be %q or %q, got %q", PeerNone, PeerEtcd, cfg.peer)
	}
	switch cfg.target {
	case TargetAll, TargetLeader:
	default:
		bad("--target: must be %q or %q, got %q", TargetAll, TargetLeader, cfg.target)
	}
	switch cfg.api {
	case APIStream, APIUnary:
	default:
		bad("--api: must be %q or %q, got %q", APIStream, APIUnary, cfg.api)
	}
	if cfg.streams < 0 {
		bad("--streams: must be 0 (one per client) or positive, got %d", cfg.streams)
	}
	if cfg.requestTimeout <= 0 {
		bad("--request-timeout: must be positive, got %v", cfg.requestTimeout)
	}
	if cfg.nodes < 1 || cfg.nodes > 9 {
		bad("--nodes: must be 1..9, got %d", cfg.nodes)
	}
	if cfg.readyTimeout <= 0 {
		bad("--ready-timeout: must be positive, got %v", cfg.readyTimeout)
	}
	if cfg.rounds < 1 || cfg.rounds > 99 {
		bad("--rounds: must be 1..99, got %d", cfg.rounds)
	}
	if cfg.peer == PeerEtcd && cfg.etcdBinary == "" {
		bad("--etcd-binary: must not be empty with --peer etcd")
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("bench-log: %w", errors.Join(errs...))
	}
	var err error
	cfg.binary, err = defaultBinary("bench-log", cfg.binary)
	return cfg, err
}
