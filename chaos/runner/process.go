package runner

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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
}

var (
	_ Driver = (*processDriver)(nil)
	_ Disks  = (*processDriver)(nil)
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
	d := &processDriver{token: hex.EncodeToString(tok[:]), paused: make([]bool, n)}
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
	out := make([]string, len(d.c.Nodes))
	for i, nd := range d.c.Nodes {
		out[i] = nd.ID
	}
	return out
}

func (d *processDriver) LogClients() []eventspb.LogClient { return d.logs }

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

func (d *processDriver) Up(i int) bool { return d.c.Nodes[i].Proc.Running() && !d.paused[i] }

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
