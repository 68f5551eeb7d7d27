package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// dockerDriver runs every node as a container of the project's image on a
// private Docker network with static addresses (as deploy/compose.yaml
// does), reached from the host at those addresses. Faults: docker kill and
// start, docker pause and unpause, and a network partition that isolates a
// node (docker network disconnect and connect).
type dockerDriver struct {
	id, image, network string
	nodes              []*dockerNode
	dir                string // report dir/cluster: the nodes' logs at the end
	log                *slog.Logger

	conns []*grpc.ClientConn
	logs  []eventspb.LogClient
	token string
	tls   *tls.Config
	http  *http.Client

	mu sync.Mutex // the nodes' states

	disks *tmpfsDisks // nil unless each node's /data is a tmpfs of the host

	delays delayers // the delay nemesis's packet delayers

	// The member nemesis: identities (certificate, config, address)
	// created up front for nodes added later, the arguments every node
	// starts with, and how many nodes the run started with.
	spares  []*dockerNode
	pki     string
	prefix  string
	extra   []string
	initial int
}

type dockerNode struct {
	id, ip, container string
	killed, paused    bool
	isolated, shaped  bool
	cut               bool // by a partition between nodes
	retired           bool // by the member nemesis, for good
	dial              grpc.DialOption
}

var (
	_ Driver      = (*dockerDriver)(nil)
	_ Partitioner = (*dockerDriver)(nil)
	_ Shaper      = (*dockerDriver)(nil)
	_ Cutter      = (*dockerDriver)(nil)
	_ Members     = (*dockerDriver)(nil)
)

// dockerSpares is how many node identities a run with the member nemesis
// creates beyond its nodes (each change uses one).
const dockerSpares = 24

// inNetns runs a host tool (iptables) in node i's network namespace.
func (d *dockerDriver) inNetns(i int, args ...string) error {
	pid, err := d.pid(i)
	if err != nil {
		return err
	}
	return run("nsenter", append([]string{"-t", pid, "-n"}, args...)...)
}

// pid returns the host pid of node i's container's first process.
func (d *dockerDriver) pid(i int) (string, error) {
	pid, err := docker(context.Background(), "inspect", "-f", "{{.State.Pid}}", d.nodes[i].container)
	if err != nil {
		return "", err
	}
	if pid = strings.TrimSpace(pid); pid == "0" {
		return "", fmt.Errorf("node %d's container is not running", i+1)
	}
	return pid, nil
}

// net injects the network faults inside the containers' namespaces.
func (d *dockerDriver) net() netFaults {
	return netFaults{exec: d.inNetns, ip: func(i int) string { return d.nodes[i].ip }, n: len(d.nodes), dev: "eth0",
		delays: &d.delays,
		netns: func(i int) (string, error) {
			pid, err := d.pid(i)
			return "/proc/" + pid + "/ns/net", err
		}}
}

// Shape degrades node i's network: netem delay or loss on what it sends, or
// a one-way partition (it drops what it receives from the other nodes).
func (d *dockerDriver) Shape(i int, k nemesis.Kind) error {
	err := d.net().shape(i, k)
	d.mu.Lock()
	d.nodes[i].shaped = true // also on error: Unshape cleans up what was set
	d.mu.Unlock()
	return err
}

// Unshape removes every shaping of node i.
func (d *dockerDriver) Unshape(i int) error {
	err := d.net().heal(i)
	d.mu.Lock()
	d.nodes[i].shaped = false
	d.mu.Unlock()
	return err
}

// Cut blocks the links between each pair of nodes, both ways (iptables in
// both containers' namespaces); the host still reaches every node.
func (d *dockerDriver) Cut(pairs [][2]int) error {
	d.mu.Lock()
	for _, p := range pairs {
		d.nodes[p[0]].cut, d.nodes[p[1]].cut = true, true // also on error: Mend cleans up
	}
	d.mu.Unlock()
	return d.net().cut(pairs)
}

// Mend removes every cut.
func (d *dockerDriver) Mend() error {
	var errs []error
	for i, nd := range d.nodes {
		d.mu.Lock()
		cut := nd.cut
		nd.cut = false
		d.mu.Unlock()
		if cut {
			errs = append(errs, d.net().heal(i))
		}
	}
	return errors.Join(errs...)
}

// docker runs a docker command and returns its standard output.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// startDocker creates the network, the credentials (switchboard init-cluster
// in a volume) and n node containers of image, and waits until they are
// ready. On failure everything created is removed again.
//
// With diskSize > 0 (root), each node's /data is a tmpfs of that size
// mounted in the host (DIR/disk-nI) and bound into the container, for the
// diskfull nemesis.
func startDocker(ctx context.Context, image string, n int, dir string, extra []string, diskSize int64, spares int, log *slog.Logger) (_ *dockerDriver, err error) {
	d := &dockerDriver{id: fmt.Sprintf("sbchaos%d", rand.Uint32()%1e8), image: image, dir: dir, log: log,
		http: &http.Client{Timeout: 2 * time.Second}, extra: extra, initial: n}
	defer func() {
		if err != nil {
			_ = d.Stop()
		}
	}()
	if _, err := docker(ctx, "image", "inspect", image); err != nil {
		return nil, fmt.Errorf("docker driver: image %s not found (make image builds switchboard:latest): %w", image, err)
	}
	var prefix string
	for attempt := 0; ; attempt++ {
		prefix = fmt.Sprintf("172.29.%d", 10+rand.IntN(240))
		_, err := docker(ctx, "network", "create", "--subnet", prefix+".0/24", d.id)
		if err == nil {
			d.network = d.id
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "overlap") {
			return nil, fmt.Errorf("docker driver: %w", err)
		}
	}
	d.prefix = prefix
	var spec []string
	for i := range n + spares {
		nd := &dockerNode{id: fmt.Sprintf("n%d", i+1), ip: fmt.Sprintf("%s.%d", prefix, 11+i)}
		nd.container = d.id + "-" + nd.id
		if i < n {
			d.nodes = append(d.nodes, nd)
		} else {
			d.spares = append(d.spares, nd)
		}
		spec = append(spec, nd.id+"="+nd.ip)
	}

	// Credentials: init-cluster and a client certificate in the pki volume,
	// copied out of the stopped init container.
	pki := d.id + "-pki"
	d.pki = pki
	if _, err := docker(ctx, "create", "--name", pki, "-v", pki+":/etc/switchboard", "--network", "none", image,
		"init-cluster", "--dir", "/etc/switchboard", "--nodes", strings.Join(spec, ",")); err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	if _, err := docker(ctx, "start", "-a", pki); err != nil {
		return nil, fmt.Errorf("docker driver: init-cluster: %w", err)
	}
	if _, err := docker(ctx, "run", "--rm", "--network", "none", "-v", pki+":/etc/switchboard", image,
		"tls", "cert", "create", "--dir", "/etc/switchboard", "--node", "chaos-client"); err != nil {
		return nil, fmt.Errorf("docker driver: client certificate: %w", err)
	}
	creds := filepath.Join(dir, "tls")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	for _, f := range []string{tlsutil.DefaultCACertFile, "chaos-client.pem", "chaos-client-key.pem", "host-token"} {
		b, err := copyOut(ctx, pki, "/etc/switchboard/"+f)
		if err != nil {
			return nil, fmt.Errorf("docker driver: %w", err)
		}
		if err := os.WriteFile(filepath.Join(creds, f), b, 0o600); err != nil {
			return nil, fmt.Errorf("docker driver: %w", err)
		}
	}
	token, err := os.ReadFile(filepath.Join(creds, "host-token"))
	if err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	d.token = strings.TrimSpace(string(token))
	caFile := filepath.Join(creds, tlsutil.DefaultCACertFile)
	client, err := tlsutil.Load(tlsutil.Files{CAFile: caFile, CertFile: filepath.Join(creds, "chaos-client.pem"),
		KeyFile: filepath.Join(creds, "chaos-client-key.pem")}, "chaos-client", time.Now())
	if err != nil {
		return nil, fmt.Errorf("docker driver: client certificate: %w", err)
	}
	pool, err := tlsutil.LoadCAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	d.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	if diskSize > 0 {
		// The image runs as 65532:65532.
		d.disks = &tmpfsDisks{size: diskSize, opts: "uid=65532,gid=65532"}
	}
	for _, nd := range d.nodes {
		var join []string
		for _, o := range d.nodes {
			if o != nd {
				join = append(join, o.ip+":7403")
			}
		}
		if err := d.startContainer(ctx, nd, join, n); err != nil {
			return nil, err
		}
	}
	if err := d.WaitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	dial := grpc.WithTransportCredentials(credentials.NewTLS(client.PeerConfig()))
	for _, nd := range append(d.nodes, d.spares...) {
		nd.dial = dial
	}
	for _, nd := range d.nodes {
		if err := d.dialNode(nd); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// startContainer starts node nd's container on the run's network, joining
// the gossip addresses in join; expect > 0 bootstraps a new cluster of that
// many nodes, 0 joins the running one.
func (d *dockerDriver) startContainer(ctx context.Context, nd *dockerNode, join []string, expect int) error {
	data := d.id + "-" + nd.id + "-data"
	if d.disks != nil {
		data = filepath.Join(d.dir, "disk-"+nd.id)
		if err := d.disks.mount(data); err != nil {
			return fmt.Errorf("docker driver: %w", err)
		}
	}
	args := []string{"run", "-d", "--name", nd.container, "--hostname", nd.id, "--network", d.network, "--ip", nd.ip,
		"-v", data + ":/data", "-v", d.pki + ":/etc/switchboard:ro",
		"-e", "SWITCHBOARD_CONFIG=/etc/switchboard/" + nd.id + ".toml",
		"-e", "SWITCHBOARD_RAFT_ADVERTISE=" + nd.ip + ":7400", "-e", "SWITCHBOARD_API_ADVERTISE=" + nd.ip + ":7401",
		"-e", "SWITCHBOARD_GOSSIP_ADVERTISE=" + nd.ip + ":7403", "-e", "SWITCHBOARD_ACTOR_ADVERTISE=" + nd.ip + ":7404",
		"-e", "SWITCHBOARD_JOIN=" + strings.Join(join, ","), "-e", fmt.Sprintf("SWITCHBOARD_BOOTSTRAP_EXPECT=%d", expect),
		// The harness reaches the admin API from the host (the gateway).
		"-e", "SWITCHBOARD_ADMIN_TRUSTED_NETWORKS=127.0.0.0/8," + d.prefix + ".1/32",
		d.image, "serve"}
	if _, err := docker(ctx, append(args, d.extra...)...); err != nil {
		return fmt.Errorf("docker driver: %w", err)
	}
	d.log.Info("started node", "node", nd.id, "container", nd.container, "ip", nd.ip)
	return nil
}

// dialNode opens the harness's gRPC connection to nd's log API.
func (d *dockerDriver) dialNode(nd *dockerNode) error {
	cc, err := grpc.NewClient(nd.ip+":7401", nd.dial)
	if err != nil {
		return fmt.Errorf("docker driver: dial %s: %w", nd.id, err)
	}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.logs = append(d.logs, eventspb.NewLogClient(cc))
	d.mu.Unlock()
	return nil
}

// AddNode starts the next spare node, which joins the running cluster.
func (d *dockerDriver) AddNode(ctx context.Context) (int, error) {
	d.mu.Lock()
	if len(d.spares) == 0 {
		d.mu.Unlock()
		return -1, errors.New("docker driver: no spare node identity left")
	}
	nd := d.spares[0]
	d.spares = d.spares[1:]
	var join []string
	for _, o := range d.nodes {
		if !o.retired {
			join = append(join, o.ip+":7403")
		}
	}
	d.mu.Unlock()
	// The container is not tied to ctx: docker run -d returns at once.
	if err := d.startContainer(ctx, nd, join, 0); err != nil {
		return -1, err
	}
	if err := d.dialNode(nd); err != nil {
		return -1, err
	}
	d.mu.Lock()
	d.nodes = append(d.nodes, nd)
	i := len(d.nodes) - 1
	d.mu.Unlock()
	return i, nil
}

// Retire stops node i's container gracefully, for good.
func (d *dockerDriver) Retire(i int) error {
	return d.set(i, func(n *dockerNode) { n.retired, n.killed = true, true }, "stop", "-t", "15", d.nodes[i].container)
}

func (d *dockerDriver) Retired(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return i < len(d.nodes) && d.nodes[i].retired
}

func (d *dockerDriver) Initial() int { return d.initial }

// Voters reads every running node's switchboard_voters_* gauges; they count
// once every node that answered agrees (see processDriver.Voters).
func (d *dockerDriver) Voters(ctx context.Context) (int, int, error) {
	var bodies []string
	var errs []error
	for i := range d.Nodes() {
		if d.Retired(i) || !d.Up(i) {
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		status, body, err := d.get(nctx, i, "/metrics")
		cancel()
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("%s /metrics: %d", d.nodes[i].id, status)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bodies = append(bodies, body)
	}
	return agreedVoters(bodies, errs)
}

// copyOut reads one file from a container (docker cp writes a tar stream).
func copyOut(ctx context.Context, container, path string) ([]byte, error) {
	out, err := docker(ctx, "cp", container+":"+path, "-")
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(strings.NewReader(out))
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("docker cp %s: %w", path, err)
	}
	return io.ReadAll(tr)
}

func (d *dockerDriver) Nodes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, len(d.nodes))
	for i, nd := range d.nodes {
		out[i] = nd.id
	}
	return out
}

func (d *dockerDriver) LogClients() []eventspb.LogClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]eventspb.LogClient(nil), d.logs...)
}

func (d *dockerDriver) SessionClient() (sessionclient.Config, string) {
	var nodes []string
	for _, nd := range d.nodes {
		nodes = append(nodes, nd.ip+":7405")
	}
	return sessionclient.Config{Nodes: nodes, TLS: d.tls, GiveUpAfter: 2 * time.Minute}, d.token
}

// set runs a docker command for node i and records the state change.
func (d *dockerDriver) set(i int, change func(*dockerNode), args ...string) error {
	if _, err := docker(context.Background(), args...); err != nil {
		return err
	}
	d.mu.Lock()
	change(d.nodes[i])
	d.mu.Unlock()
	return nil
}

func (d *dockerDriver) Kill(i int) error {
	return d.set(i, func(n *dockerNode) { n.killed = true }, "kill", d.nodes[i].container)
}

func (d *dockerDriver) StopNode(i int) error {
	return d.set(i, func(n *dockerNode) { n.killed = true }, "stop", "-t", "15", d.nodes[i].container)
}

func (d *dockerDriver) Restart(_ context.Context, i int) error {
	return d.set(i, func(n *dockerNode) { n.killed = false }, "start", d.nodes[i].container)
}

func (d *dockerDriver) Pause(i int) error {
	return d.set(i, func(n *dockerNode) { n.paused = true }, "pause", d.nodes[i].container)
}

func (d *dockerDriver) Resume(i int) error {
	return d.set(i, func(n *dockerNode) { n.paused = false }, "unpause", d.nodes[i].container)
}

func (d *dockerDriver) Isolate(i int) error {
	return d.set(i, func(n *dockerNode) { n.isolated = true }, "network", "disconnect", d.network, d.nodes[i].container)
}

func (d *dockerDriver) Rejoin(i int) error {
	return d.set(i, func(n *dockerNode) { n.isolated = false }, "network", "connect", "--ip", d.nodes[i].ip, d.network, d.nodes[i].container)
}

func (d *dockerDriver) Up(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nodes[i]
	return !n.killed && !n.paused && !n.isolated && !n.shaped && !n.cut
}

func (d *dockerDriver) get(ctx context.Context, i int, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.nodes[i].ip+":7402"+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), err
}

// Leader polls the reachable nodes' /metrics until exactly one says it leads.
func (d *dockerDriver) Leader(ctx context.Context) (int, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		found := -1
		for i := range d.nodes {
			if !d.Up(i) {
				continue
			}
			_, body, err := d.get(ctx, i, "/metrics")
			if err == nil && strings.Contains(body, "\nswitchboard_raft_state{state=\"Leader\"} 1\n") {
				if found >= 0 {
					found = -2 // two claim it (an old term): ask again
					break
				}
				found = i
			}
		}
		if found >= 0 {
			return found, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("docker driver: find leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitReady polls /readyz of every node that is up until all answer 200.
func (d *dockerDriver) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var pending []string
		for i, nd := range d.nodes {
			if !d.Up(i) {
				continue
			}
			status, body, err := d.get(ctx, i, "/readyz")
			switch {
			case err != nil:
				pending = append(pending, fmt.Sprintf("%s: %v", nd.id, err))
			case status != http.StatusOK:
				pending = append(pending, fmt.Sprintf("%s: %d %s", nd.id, status, strings.TrimSpace(body)))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("docker driver: not ready within %v: %s", timeout, strings.Join(pending, "; "))
		case <-tick.C:
		}
	}
}

// Stop saves every node's log into dir and removes the containers, the
// network and the volumes.
func (d *dockerDriver) Stop() error {
	ctx := context.Background()
	for _, cc := range d.conns {
		cc.Close()
	}
	errs := []error{d.delays.stopAll()}
	var volumes []string
	for _, nd := range d.nodes {
		if out, err := exec.CommandContext(ctx, "docker", "logs", nd.container).CombinedOutput(); err == nil {
			_ = os.WriteFile(filepath.Join(d.dir, nd.id+".log"), out, 0o644)
		}
		if _, err := docker(ctx, "rm", "-f", nd.container); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
		volumes = append(volumes, d.id+"-"+nd.id+"-data")
	}
	_, _ = docker(ctx, "rm", "-f", d.id+"-pki")
	if d.network != "" {
		if _, err := docker(ctx, "network", "rm", d.network); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range append(volumes, d.id+"-pki") {
		if _, err := docker(ctx, "volume", "rm", "-f", v); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.disks.unmountAll())
	return errors.Join(errs...)
}

var _ Disks = (*dockerDriver)(nil)

// DiskDir is the host directory bound as node i's /data (a tmpfs with the
// diskfull nemesis).
func (d *dockerDriver) DiskDir(i int) string { return filepath.Join(d.dir, "disk-"+d.nodes[i].id) }

// Exited reports whether node i's container stopped without docker kill or
// stop from the harness.
func (d *dockerDriver) Exited(i int) bool {
	d.mu.Lock()
	killed := d.nodes[i].killed
	d.mu.Unlock()
	out, err := docker(context.Background(), "inspect", "-f", "{{.State.Running}}", d.nodes[i].container)
	return !killed && err == nil && strings.TrimSpace(out) == "false"
}

var _ Admin = (*dockerDriver)(nil)

func (d *dockerDriver) AdminEndpoints() []string {
	out := make([]string, len(d.nodes))
	for i, nd := range d.nodes {
		out[i] = nd.ip + ":7406"
	}
	return out
}

// AdminCredential copies the first administrator's one-time credential out
// of the data volume of the node that created it.
func (d *dockerDriver) AdminCredential(ctx context.Context) (string, string, error) {
	for _, nd := range d.nodes {
		b, err := copyOut(ctx, nd.container, "/data/admin-credential")
		if err != nil {
			continue
		}
		if name, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":"); ok {
			return name, pass, nil
		}
	}
	return "", "", errors.New("docker driver: no node holds /data/admin-credential")
}
