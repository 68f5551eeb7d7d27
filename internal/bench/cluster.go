package bench

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/events/eventspb"
)

// LogNode is one node of a LogCluster.
type LogNode struct {
	ID       string // n1, n2, ...
	DataDir  string // DIR/nI
	RaftAddr string // 127.0.0.1:port
	APIAddr  string // gRPC Log API
	HTTPAddr string // /readyz, /metrics
	// GossipAddr is the membership address; ActorAddr the actor system's;
	// SessionAddr the session WebSocket endpoint's, AdminAddr the admin
	// console's and API's.
	GossipAddr, ActorAddr, SessionAddr, AdminAddr string
	Proc                                          *Proc // stdout and stderr go to DIR/nI.log
}

// ClusterOptions tunes StartLogClusterWith and StartEtcdClusterWith.
type ClusterOptions struct {
	// ExtraArgs are appended to every node's command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for readiness (default 60 s).
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (default 10 s).
	StopTimeout time.Duration
	// Logger receives progress messages (default slog.Default()).
	Logger *slog.Logger

	// Host, when set, gives the address node i (0 for n1) binds and is
	// reached at, with the default ports 7400–7406, instead of free ports
	// on 127.0.0.1: nodes with network namespaces of their own.
	Host func(i int) string
	// Prepare, when set, runs for every node (AddNode's too) before its
	// first start, once its addresses are chosen: create its network
	// namespace, mount its data directory. An error stops the start.
	Prepare func(nd *LogNode) error
	// Wrap, when set, turns a node's command line into the one started
	// (e.g. ip netns exec NS BINARY ARGS…); the process must keep the pid
	// of what it starts, so that signals reach the node.
	Wrap func(nd *LogNode, path string, args []string) (string, []string)
}

func (o ClusterOptions) withDefaults() ClusterOptions {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// LogCluster is a Switchboard event-log cluster of node processes on
// loopback, each started as
//
//	BINARY serve --node-id nI --data-dir DIR/nI --raft-bind 127.0.0.1:P
//	  --api-bind 127.0.0.1:P --http-bind 127.0.0.1:P --gossip-bind 127.0.0.1:P
//	  --actor-bind 127.0.0.1:P --session-bind 127.0.0.1:P --admin-bind 127.0.0.1:P --join GOSSIP1,GOSSIP2,... --bootstrap-expect N
//	  --tls-ca-file DIR/tls/switchboard-ca.pem --tls-cert-file DIR/tls/nI.pem
//	  --tls-key-file DIR/tls/nI-key.pem [ExtraArgs...]
//
// (a single node gets neither --join nor --bootstrap-expect: it starts a
// cluster of its own). The CA and node certificates are created in DIR/tls.
// with its output in DIR/nI.log. The processes are killed when the context
// given to StartLogCluster is cancelled; Stop stops them gracefully.
type LogCluster struct {
	Dir   string
	Nodes []*LogNode

	opts   ClusterOptions
	http   *http.Client
	tlsDir string

	dialOnce sync.Once
	dial     grpc.DialOption
	dialErr  error
}

// StartLogCluster starts an n-node cluster of binary with data under dir
// and waits until every node's /readyz answers 200 (the node knows a Raft
// leader). On failure every started process is stopped again.
func StartLogCluster(ctx context.Context, binary string, n int, dir string) (*LogCluster, error) {
	return StartLogClusterWith(ctx, binary, n, dir, ClusterOptions{})
}

// StartLogClusterWith is StartLogCluster with options.
func StartLogClusterWith(ctx context.Context, binary string, n int, dir string, opts ClusterOptions) (*LogCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("log cluster: %d nodes requested, need at least 1", n)
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log cluster: %w", err)
	}
	c := &LogCluster{Dir: dir, opts: opts, http: &http.Client{Timeout: 2 * time.Second}}
	c.tlsDir = filepath.Join(dir, "tls")
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: c.tlsDir}); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("log cluster: %w", err)
	}
	for i := range n {
		nd, err := c.newNode(i)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, nd)
	}
	for _, nd := range c.Nodes {
		c.setArgs(nd, binary, n)
		if err := c.prepare(nd); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	for _, nd := range c.Nodes {
		if err := nd.Proc.Start(ctx); err != nil {
			c.Stop()
			return nil, fmt.Errorf("log cluster: %w", err)
		}
		opts.Logger.Info("started node", "node", nd.ID, "pid", nd.Proc.Pid(), "api", nd.APIAddr, "http", nd.HTTPAddr, "log", nd.Proc.LogPath)
	}
	if err := c.WaitReady(ctx, opts.ReadyTimeout); err != nil {
		c.Stop()
		return nil, err
	}
	opts.Logger.Info("log cluster ready", "nodes", n, "after", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// newNode allocates the addresses and the certificate of node i (n<i+1>):
// free ports on loopback, or the default ports at opts.Host(i).
func (c *LogCluster) newNode(i int) (*LogNode, error) {
	id := fmt.Sprintf("n%d", i+1)
	host, ports := "127.0.0.1", []int{7400, 7401, 7402, 7403, 7404, 7405, 7406}
	if c.opts.Host != nil {
		host = c.opts.Host(i)
	} else {
		var err error
		if ports, err = FreePorts(7); err != nil {
			return nil, fmt.Errorf("log cluster: %w", err)
		}
	}
	addr := func(k int) string { return net.JoinHostPort(host, strconv.Itoa(ports[k])) }
	var ips []net.IP // clients check the address they dial (127.0.0.1 is always in)
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	}
	if _, _, err := tlsutil.CreateCert(tlsutil.CertOptions{
		Dir: c.tlsDir, Node: id, IPs: ips,
		CAFile:    filepath.Join(c.tlsDir, tlsutil.DefaultCACertFile),
		CAKeyFile: filepath.Join(c.tlsDir, tlsutil.DefaultCAKeyFile),
	}); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("log cluster: certificate for %s: %w", id, err)
	}
	return &LogNode{
		ID:          id,
		DataDir:     filepath.Join(c.Dir, id),
		RaftAddr:    addr(0),
		APIAddr:     addr(1),
		HTTPAddr:    addr(2),
		GossipAddr:  addr(3),
		ActorAddr:   addr(4),
		SessionAddr: addr(5),
		AdminAddr:   addr(6),
	}, nil
}

// prepare runs opts.Prepare for nd.
func (c *LogCluster) prepare(nd *LogNode) error {
	if c.opts.Prepare == nil {
		return nil
	}
	if err := c.opts.Prepare(nd); err != nil {
		return fmt.Errorf("log cluster: prepare %s: %w", nd.ID, err)
	}
	return nil
}

// setArgs sets nd's command line: join every node known so far; with
// expect > 1, bootstrap once expect nodes are up.
func (c *LogCluster) setArgs(nd *LogNode, binary string, expect int) {
	cert, key := tlsutil.CertFiles(c.tlsDir, nd.ID)
	args := []string{"serve",
		"--node-id", nd.ID,
		"--data-dir", nd.DataDir,
		"--raft-bind", nd.RaftAddr,
		"--api-bind", nd.APIAddr,
		"--http-bind", nd.HTTPAddr,
		"--gossip-bind", nd.GossipAddr,
		"--actor-bind", nd.ActorAddr,
		"--session-bind", nd.SessionAddr,
		"--admin-bind", nd.AdminAddr,
		"--tls-ca-file", filepath.Join(c.tlsDir, tlsutil.DefaultCACertFile),
		"--tls-cert-file", cert,
		"--tls-key-file", key,
	}
	if len(c.Nodes) > 1 || expect > 1 {
		var join []string
		for _, o := range c.Nodes {
			if o != nd {
				join = append(join, o.GossipAddr)
			}
		}
		args = append(args, "--join", strings.Join(join, ","))
	}
	if expect > 1 {
		args = append(args, "--bootstrap-expect", fmt.Sprint(expect))
	}
	path, args := binary, append(args, c.opts.ExtraArgs...)
	if c.opts.Wrap != nil {
		path, args = c.opts.Wrap(nd, path, args)
	}
	nd.Proc = &Proc{Name: nd.ID, Path: path, Args: args, LogPath: filepath.Join(c.Dir, nd.ID+".log")}
}

// AddNode starts one more node that joins the running cluster (it is added
// to Raft by the leader as a non-voter, then promoted). It does not wait for
// readiness: call WaitReady.
func (c *LogCluster) AddNode(ctx context.Context, binary string) (*LogNode, error) {
	nd, err := c.newNode(len(c.Nodes))
	if err != nil {
		return nil, err
	}
	c.Nodes = append(c.Nodes, nd)
	c.setArgs(nd, binary, 0)
	if err := c.prepare(nd); err != nil {
		return nil, err
	}
	if err := nd.Proc.Start(ctx); err != nil {
		return nil, fmt.Errorf("log cluster: add %s: %w", nd.ID, err)
	}
	return nd, nil
}

// DialOption returns the transport credentials for the nodes' gRPC API:
// mutual TLS with a client certificate of the cluster CA (created once).
func (c *LogCluster) DialOption() (grpc.DialOption, error) {
	c.dialOnce.Do(func() {
		const client = "bench-client"
		cert, key := tlsutil.CertFiles(c.tlsDir, client)
		if _, err := os.Stat(cert); err != nil {
			if _, _, err := tlsutil.CreateCert(tlsutil.CertOptions{
				Dir: c.tlsDir, Node: client,
				CAFile:    filepath.Join(c.tlsDir, tlsutil.DefaultCACertFile),
				CAKeyFile: filepath.Join(c.tlsDir, tlsutil.DefaultCAKeyFile),
			}); err != nil {
				c.dialErr = fmt.Errorf("log cluster: client certificate: %w", err)
				return
			}
		}
		b, err := tlsutil.Load(tlsutil.Files{CAFile: filepath.Join(c.tlsDir, tlsutil.DefaultCACertFile), CertFile: cert, KeyFile: key}, client, time.Now())
		if err != nil {
			c.dialErr = fmt.Errorf("log cluster: client certificate: %w", err)
			return
		}
		c.dial = grpc.WithTransportCredentials(credentials.NewTLS(b.PeerConfig()))
	})
	return c.dial, c.dialErr
}

// CAPool returns the cluster CA as a pool, for clients of the nodes'
// session endpoints.
func (c *LogCluster) CAPool() (*x509.CertPool, error) {
	pool, err := tlsutil.LoadCAPool(filepath.Join(c.tlsDir, tlsutil.DefaultCACertFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return pool, nil
}

// Addrs returns the nodes' gRPC Log API addresses.
func (c *LogCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.APIAddr
	}
	return out
}

// HTTPAddrs returns the nodes' HTTP addresses (/readyz, /metrics).
func (c *LogCluster) HTTPAddrs() []string {
	out := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.HTTPAddr
	}
	return out
}

// Procs returns the node processes.
func (c *LogCluster) Procs() []*Proc {
	out := make([]*Proc, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.Proc
	}
	return out
}

// WaitReady polls /readyz on every node that was started and not stopped
// with Stop or Kill, until all answer 200; it fails as soon as one of them
// has exited on its own, or when ctx ends or timeout passes.
func (c *LogCluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	return waitReady(ctx, timeout, c.Procs(), func(ctx context.Context, i int) (bool, string) {
		status, body, err := httpGet(ctx, c.http, "http://"+c.Nodes[i].HTTPAddr+"/readyz")
		switch {
		case err != nil:
			return false, err.Error()
		case status != http.StatusOK:
			return false, fmt.Sprintf("%s /readyz: %d %s", c.Nodes[i].ID, status, body)
		}
		return true, ""
	}, "log cluster")
}

// httpGet fetches url and returns the status code and up to 512 bytes of
// the body, trimmed.
func httpGet(ctx context.Context, client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// waitReady polls check for every process of procs that is expected to run
// (started, not stopped with Stop or Kill) until all are ready. It fails as
// soon as one of them has exited on its own (with the end of its log), or
// when ctx ends or timeout passes (naming why each pending one is not ready).
func waitReady(ctx context.Context, timeout time.Duration, procs []*Proc, check func(ctx context.Context, i int) (ok bool, why string), what string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var running []int
	for i, p := range procs {
		if p.Expected() {
			running = append(running, i)
		}
	}
	ready := make([]bool, len(procs))
	why := make([]string, len(procs))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		all := true
		for _, i := range running {
			if ready[i] {
				continue
			}
			ok, w := check(ctx, i)
			if p := procs[i]; !p.Running() {
				return fmt.Errorf("%s: %s exited before it was ready (%v); end of %s:\n%s",
					what, p.Name, exitText(p.ExitErr()), p.LogPath, p.LogTail(2048))
			}
			ready[i], why[i] = ok, w
			all = all && ok
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			var pending []string
			for _, i := range running {
				if !ready[i] {
					pending = append(pending, why[i])
				}
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: not ready within %v: %s", what, timeout, strings.Join(pending, "; "))
			}
			return fmt.Errorf("%s: waiting for readiness: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// Leader returns the index in Nodes of the Raft leader. It reads each
// node's /metrics (switchboard_raft_state{state="Leader"} 1) and, if no
// node reports it there, asks each node for a read index marked as
// forwarded (which only the leader answers). It retries until exactly one
// leader is found or ctx ends.
func (c *LogCluster) Leader(ctx context.Context) (int, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if i, ok := c.leaderFromMetrics(ctx); ok {
			return i, nil
		}
		if i, ok := c.leaderFromReadIndex(ctx); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("log cluster: find leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *LogCluster) leaderFromMetrics(ctx context.Context) (int, bool) {
	found := -1
	for i, nd := range c.Nodes {
		if !nd.Proc.Running() {
			continue
		}
		lead, err := c.metricsSayLeader(ctx, nd)
		if err != nil || !lead {
			continue
		}
		if found >= 0 {
			return -1, false // two claim leadership (old term): ask again
		}
		found = i
	}
	return found, found >= 0
}

func (c *LogCluster) metricsSayLeader(ctx context.Context, nd *LogNode) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", nil)
	if err != nil {
		return false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseLeaderMetric(resp.Body), nil
}

// Metrics returns node i's Prometheus text exposition (/metrics).
func (c *LogCluster) Metrics(ctx context.Context, i int) (string, error) {
	nd := c.Nodes[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s /metrics: %w", nd.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s /metrics: %s", nd.ID, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", fmt.Errorf("%s /metrics: %w", nd.ID, err)
	}
	return string(b), nil
}

// parseLeaderMetric reports whether a Prometheus text exposition contains
// switchboard_raft_state{state="Leader"} with value 1.
func parseLeaderMetric(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "switchboard_raft_state{") || !strings.Contains(line, `state="Leader"`) {
			continue
		}
		f := strings.Fields(line)
		return len(f) >= 2 && (f[1] == "1" || f[1] == "1.0" || f[1] == "1e+00")
	}
	return false
}

// forwardedMD is the metadata key with which nodes mark forwarded requests
// (events.forwardedKey): a node that receives a ReadIndex so marked answers
// only if it is the leader.
const forwardedMD = "x-switchboard-forwarded"

func (c *LogCluster) leaderFromReadIndex(ctx context.Context) (int, bool) {
	found := -1
	for i, nd := range c.Nodes {
		if !nd.Proc.Running() {
			continue
		}
		dial, err := c.DialOption()
		if err != nil {
			return -1, false
		}
		cc, err := grpc.NewClient(nd.APIAddr, dial)
		if err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rctx = metadata.AppendToOutgoingContext(rctx, forwardedMD, "bench")
		_, err = eventspb.NewLogClient(cc).ReadIndex(rctx, &eventspb.ReadIndexRequest{})
		cancel()
		cc.Close()
		if err != nil {
			continue
		}
		if found >= 0 {
			return -1, false
		}
		found = i
	}
	return found, found >= 0
}

// Stop stops every node (SIGTERM, then SIGKILL after the stop timeout) and
// waits for them to exit. It is safe to call more than once.
func (c *LogCluster) Stop() error {
	if err := stopAll(c.Procs(), c.opts.StopTimeout); err != nil {
		return fmt.Errorf("log cluster: stop: %w", err)
	}
	return nil
}

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *LogCluster) Kill(i int) error {
	if i < 0 || i >= len(c.Nodes) {
		return fmt.Errorf("log cluster: no node %d (have %d)", i, len(c.Nodes))
	}
	return c.Nodes[i].Proc.Kill()
}

// Restart starts node i again (after Kill or Stop) with the same command
// line; a node with Raft state ignores --bootstrap-expect and rejoins as
// itself. It does not wait for readiness: call WaitReady.
func (c *LogCluster) Restart(ctx context.Context, i int) error {
	if i < 0 || i >= len(c.Nodes) {
		return fmt.Errorf("log cluster: no node %d (have %d)", i, len(c.Nodes))
	}
	if err := c.Nodes[i].Proc.Start(ctx); err != nil {
		return fmt.Errorf("log cluster: restart: %w", err)
	}
	return nil
}
