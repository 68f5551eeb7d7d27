package runner

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// processDriver runs nodes as processes of the project's binary on
// loopback (internal/bench's LogCluster: own CA, free ports, logs in dir).
type processDriver struct {
	c      *bench.LogCluster
	conns  []*grpc.ClientConn
	logs   []eventspb.LogClient
	token  string
	tls    *tls.Config
	paused []bool
	disks  *tmpfsDisks // nil unless the nodes' data is on a tmpfs each
	binary string
	// mu guards the node slices against AddNode (the member nemesis) while
	// workloads read them.
	mu      sync.Mutex
	retired []bool
	initial int
}

var (
	_ Driver  = (*processDriver)(nil)
	_ Disks   = (*processDriver)(nil)
	_ Members = (*processDriver)(nil)
)

// startProcess starts n nodes of binary with data and logs under dir. co
// places the nodes (the netns driver's namespaces); with diskSize > 0 each
// node's data directory is a tmpfs of that size (root only), for the
// diskfull nemesis.
func startProcess(ctx context.Context, binary string, n int, dir string, extra []string, diskSize int64, co bench.ClusterOptions, log *slog.Logger) (_ *processDriver, err error) {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	d := &processDriver{token: hex.EncodeToString(tok[:]), paused: make([]bool, n), retired: make([]bool, n), binary: binary, initial: n}
	if diskSize > 0 {
		d.disks = &tmpfsDisks{size: diskSize}
		prepare := co.Prepare
		co.Prepare = func(nd *bench.LogNode) error {
			if prepare != nil {
				if err := prepare(nd); err != nil {
					return err
				}
			}
			return d.disks.mount(nd.DataDir)
		}
		defer func() {
			if err != nil {
				_ = d.disks.unmountAll()
			}
		}()
	}
	co.ExtraArgs = append([]string{"--session-host-tokens", "chaos:" + d.token}, extra...)
	co.ReadyTimeout, co.Logger = 90*time.Second, log
	c, err := bench.StartLogClusterWith(ctx, binary, n, dir, co)
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	d.c = c
	pool, err := c.CAPool()
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("process driver: %w", err)
	}
	d.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	dial, err := c.DialOption()
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("process driver: %w", err)
	}
	for _, addr := range c.Addrs() {
		cc, err := grpc.NewClient(addr, dial)
		if err != nil {
			_ = d.Stop()
			return nil, fmt.Errorf("process driver: dial %s: %w", addr, err)
		}
		d.conns = append(d.conns, cc)
		d.logs = append(d.logs, eventspb.NewLogClient(cc))
	}
	return d, nil
}

func (d *processDriver) Nodes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, len(d.c.Nodes))
	for i, nd := range d.c.Nodes {
		out[i] = nd.ID
	}
	return out
}

func (d *processDriver) LogClients() []eventspb.LogClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]eventspb.LogClient(nil), d.logs...)
}

// AddNode starts one more node, which joins the running cluster; it returns
// once the node's API is dialled (not ready: the leader adds it first).
func (d *processDriver) AddNode(ctx context.Context) (int, error) {
	d.mu.Lock()
	nd, err := d.c.AddNode(ctx, d.binary)
	d.mu.Unlock()
	if err != nil {
		return -1, fmt.Errorf("process driver: add node: %w", err)
	}
	dial, err := d.c.DialOption()
	if err != nil {
		return -1, fmt.Errorf("process driver: %w", err)
	}
	cc, err := grpc.NewClient(nd.APIAddr, dial)
	if err != nil {
		return -1, fmt.Errorf("process driver: dial %s: %w", nd.APIAddr, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns = append(d.conns, cc)
	d.logs = append(d.logs, eventspb.NewLogClient(cc))
	d.paused = append(d.paused, false)
	d.retired = append(d.retired, false)
	return len(d.c.Nodes) - 1, nil
}

// Retire stops node i gracefully for good: it leaves the gossip membership
// and the leader removes it from Raft after the dead-server grace.
func (d *processDriver) Retire(i int) error {
	d.mu.Lock()
	d.retired[i] = true
	d.mu.Unlock()
	return d.c.Nodes[i].Proc.Stop(15 * time.Second)
}

func (d *processDriver) Initial() int { return d.initial }

func (d *processDriver) Retired(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return i < len(d.retired) && d.retired[i]
}

// Voters reads the Raft configuration's voters and non-voters from every
// running node's switchboard_voters_* gauges (each node's own view); they
// count only when every node that answered within a second agrees, so that
// a change is seen once it has spread. No leader lookup: a node that hangs
// is skipped rather than waited for.
func (d *processDriver) Voters(ctx context.Context) (int, int, error) {
	d.mu.Lock()
	var idx []int
	for i, nd := range d.c.Nodes {
		if !d.retired[i] && nd.Proc.Running() && !d.paused[i] {
			idx = append(idx, i)
		}
	}
	d.mu.Unlock()
	var bodies []string
	var errs []error
	for _, i := range idx {
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		body, err := d.c.Metrics(nctx, i)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bodies = append(bodies, body)
	}
	return agreedVoters(bodies, errs)
}

// agreedVoters reads switchboard_voters_voters and _nonvoters from each
// node's metrics; they count only when every node that answered agrees.
// errs are the nodes that did not answer (reported when none did).
func agreedVoters(bodies []string, errs []error) (int, int, error) {
	type view struct{ v, nv int }
	var views []view
	for _, body := range bodies {
		v, okV := metricValue(body, "switchboard_voters_voters")
		nv, okN := metricValue(body, "switchboard_voters_nonvoters")
		if !okV || !okN {
			errs = append(errs, errors.New("a node exports no switchboard_voters_* gauges"))
			continue
		}
		views = append(views, view{int(v), int(nv)})
	}
	if len(views) == 0 {
		return 0, 0, fmt.Errorf("no node answered: %w", errors.Join(errs...))
	}
	for _, w := range views[1:] {
		if w != views[0] {
			return 0, 0, fmt.Errorf("the nodes do not agree yet: %v", views)
		}
	}
	return views[0].v, views[0].nv, nil
}

// metricValue finds an unlabelled sample in a Prometheus text exposition.
func metricValue(body, name string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

func (d *processDriver) SessionClient() (sessionclient.Config, string) {
	var nodes []string
	for _, nd := range d.c.Nodes {
		nodes = append(nodes, nd.SessionAddr)
	}
	return sessionclient.Config{Nodes: nodes, TLS: d.tls, GiveUpAfter: 2 * time.Minute}, d.token
}

func (d *processDriver) Kill(i int) error { return d.c.Kill(i) }

func (d *processDriver) Restart(ctx context.Context, i int) error { return d.c.Restart(ctx, i) }

func (d *processDriver) StopNode(i int) error { return d.c.Nodes[i].Proc.Stop(15 * time.Second) }

func (d *processDriver) Pause(i int) error {
	if err := d.c.Nodes[i].Proc.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	d.paused[i] = true
	return nil
}

func (d *processDriver) Resume(i int) error {
	d.paused[i] = false
	return d.c.Nodes[i].Proc.Signal(syscall.SIGCONT)
}

func (d *processDriver) Up(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c.Nodes[i].Proc.Running() && !d.paused[i]
}

func (d *processDriver) Leader(ctx context.Context) (int, error) { return d.c.Leader(ctx) }

func (d *processDriver) WaitReady(ctx context.Context, timeout time.Duration) error {
	return d.c.WaitReady(ctx, timeout)
}

func (d *processDriver) Stop() error {
	for i := range d.paused {
		if d.paused[i] {
			_ = d.Resume(i)
		}
	}
	for _, cc := range d.conns {
		cc.Close()
	}
	return errors.Join(d.c.Stop(), d.disks.unmountAll())
}

// DiskDir is node i's data directory (a tmpfs with the diskfull nemesis).
func (d *processDriver) DiskDir(i int) string { return d.c.Nodes[i].DataDir }

// Exited reports whether node i's process ended without Kill or Stop.
func (d *processDriver) Exited(i int) bool {
	p := d.c.Nodes[i].Proc
	return p.Expected() && !p.Running()
}

var _ Admin = (*processDriver)(nil)

func (d *processDriver) AdminEndpoints() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, len(d.c.Nodes))
	for i, nd := range d.c.Nodes {
		out[i] = nd.AdminAddr
	}
	return out
}

// AdminCredential reads the first administrator's one-time credential from
// the data directory of the node that created it.
func (d *processDriver) AdminCredential(context.Context) (string, string, error) {
	var dirs []string
	for _, nd := range d.c.Nodes {
		dirs = append(dirs, nd.DataDir)
	}
	return readCredential(dirs)
}
