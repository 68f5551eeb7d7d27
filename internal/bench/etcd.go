package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

// EtcdPackage is the Debian package that provides the etcd server.
const EtcdPackage = "etcd-server"

// aptInstall installs a Debian package with apt-get (running `apt-get
// update` and retrying once if the first attempt fails), with apt's output on
// out; flag names the option that avoids the install.
func aptInstall(ctx context.Context, pkg, flag string, log *slog.Logger, out io.Writer) error {
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = out, out
		return cmd.Run()
	}
	err := install()
	if err != nil && ctx.Err() == nil {
		log.Warn("apt-get install failed; updating the package lists and retrying once", "err", err)
		upd := exec.CommandContext(ctx, "apt-get", "update")
		upd.Stdout, upd.Stderr = out, out
		if uerr := upd.Run(); uerr != nil {
			return fmt.Errorf("install Debian package %s: apt-get update: %w (first attempt: %w)", pkg, uerr, err)
		}
		err = install()
	}
	if err != nil {
		return fmt.Errorf("install Debian package %s with apt-get (run `apt-get install -y %s` as root, or pass %s): %w", pkg, pkg, flag, err)
	}
	return nil
}

// EnsureEtcd returns the path of the etcd server binary: binary itself if it
// is a path or found on PATH, otherwise it runs `apt-get install -y
// etcd-server` (saying so on log, with apt's output on out) and looks again.
func EnsureEtcd(ctx context.Context, binary string, log *slog.Logger, out io.Writer) (string, error) {
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	if strings.ContainsRune(binary, os.PathSeparator) {
		return "", fmt.Errorf("etcd: %s not found or not executable (--etcd-binary)", binary)
	}
	log.Info("etcd not on PATH: installing the Debian package with apt-get", "package", EtcdPackage, "command", "apt-get install -y "+EtcdPackage)
	if err := aptInstall(ctx, EtcdPackage, "--etcd-binary", log, out); err != nil {
		return "", fmt.Errorf("etcd: %w", err)
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("etcd: %s still not on PATH after installing %s: %w", binary, EtcdPackage, err)
	}
	return p, nil
}

// EtcdMember is one member of an EtcdCluster.
type EtcdMember struct {
	Name      string // e1, e2, ...
	DataDir   string // DIR/eI
	ClientURL string // http(s)://127.0.0.1:port
	PeerURL   string // http(s)://127.0.0.1:port
	Proc      *Proc  // output in DIR/eI.log
}

// EtcdCluster is an etcd cluster of member processes on loopback, started
// with default durability (fsync on: no --unsafe-no-fsync).
type EtcdCluster struct {
	Dir     string
	Members []*EtcdMember

	opts EtcdOptions
	http *http.Client
	tls  *tls.Config // clients' configuration with TLS on, else nil
}

// EtcdOptions configures StartEtcdClusterWith.
type EtcdOptions struct {
	ClusterOptions
	// TLS runs every member with mutual TLS on its client and peer URLs
	// (https, --client-cert-auth, --peer-client-cert-auth), as switchboard
	// nodes always run: a CA, member certificates (ECDSA P-256, with the IP
	// SAN 127.0.0.1) and a client certificate are created in DIR/tls with
	// the same code that creates the nodes' (cluster/tlsutil).
	TLS bool
}

// StartEtcdCluster starts an n-member etcd cluster with data under dir and
// waits until every member's /health reports healthy (the cluster has a
// leader and serves a quorum read).
func StartEtcdCluster(ctx context.Context, binary string, n int, dir string) (*EtcdCluster, error) {
	return StartEtcdClusterWith(ctx, binary, n, dir, EtcdOptions{})
}

// StartEtcdClusterWith is StartEtcdCluster with options.
func StartEtcdClusterWith(ctx context.Context, binary string, n int, dir string, opts EtcdOptions) (*EtcdCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcd cluster: %d members requested, need at least 1", n)
	}
	opts.ClusterOptions = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("etcd cluster: %w", err)
	}
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("etcd cluster: %w", err)
	}
	c := &EtcdCluster{Dir: dir, opts: opts, http: &http.Client{Timeout: 2 * time.Second}}
	scheme := "http"
	var tlsArgs func(name string) []string
	if opts.TLS {
		scheme = "https"
		if tlsArgs, err = c.createTLS(n); err != nil {
			return nil, err
		}
		c.http.Transport = &http.Transport{TLSClientConfig: c.tls}
	}
	initial := make([]string, n)
	for i := range n {
		m := &EtcdMember{
			Name:      fmt.Sprintf("e%d", i+1),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i+1]),
		}
		m.DataDir = filepath.Join(dir, m.Name)
		c.Members = append(c.Members, m)
		initial[i] = m.Name + "=" + m.PeerURL
	}
	token := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	for _, m := range c.Members {
		args := []string{
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap",
			"--log-outputs", "stderr",
		}
		if tlsArgs != nil {
			args = append(args, tlsArgs(m.Name)...)
		}
		m.Proc = &Proc{Name: m.Name, Path: binary, Args: append(args, opts.ExtraArgs...), LogPath: filepath.Join(dir, m.Name+".log")}
	}
	start := time.Now()
	for _, m := range c.Members {
		if err := m.Proc.Start(ctx); err != nil {
			c.Stop()
			return nil, fmt.Errorf("etcd cluster: %w", err)
		}
		opts.Logger.Info("started etcd member", "member", m.Name, "pid", m.Proc.Pid(), "client", m.ClientURL, "log", m.Proc.LogPath)
	}
	if err := c.WaitReady(ctx, opts.ReadyTimeout); err != nil {
		c.Stop()
		return nil, err
	}
	opts.Logger.Info("etcd cluster ready", "members", n, "after", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// createTLS creates the CA, the n members' certificates and the client's
// certificate in DIR/tls, sets c.tls, and returns each member's TLS flags.
func (c *EtcdCluster) createTLS(n int) (func(name string) []string, error) {
	dir := filepath.Join(c.Dir, "tls")
	caCert, caKey, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: dir, CommonName: "etcd bench CA"})
	if err != nil {
		return nil, fmt.Errorf("etcd cluster: TLS: %w", err)
	}
	cert := func(name string) (string, string, error) {
		certPath, keyPath, err := tlsutil.CreateCert(tlsutil.CertOptions{
			Dir: dir, CAFile: caCert, CAKeyFile: caKey, Node: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		})
		if err != nil {
			return "", "", fmt.Errorf("etcd cluster: TLS certificate for %s: %w", name, err)
		}
		return certPath, keyPath, nil
	}
	for i := range n {
		if _, _, err := cert(fmt.Sprintf("e%d", i+1)); err != nil {
			return nil, err
		}
	}
	clientCert, clientKey, err := cert("etcd-client")
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		return nil, fmt.Errorf("etcd cluster: TLS client certificate: %w", err)
	}
	pool, err := tlsutil.LoadCAPool(caCert)
	if err != nil {
		return nil, fmt.Errorf("etcd cluster: TLS: %w", err)
	}
	c.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return func(name string) []string {
		certPath, keyPath := tlsutil.CertFiles(dir, name)
		return []string{
			"--cert-file", certPath, "--key-file", keyPath,
			"--client-cert-auth", "--trusted-ca-file", caCert,
			"--peer-cert-file", certPath, "--peer-key-file", keyPath,
			"--peer-client-cert-auth", "--peer-trusted-ca-file", caCert,
		}
	}, nil
}

// ClientTLS returns the configuration clients of a cluster started with
// TLS connect with (nil without TLS).
func (c *EtcdCluster) ClientTLS() *tls.Config { return c.tls }

// Endpoints returns the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// Procs returns the member processes.
func (c *EtcdCluster) Procs() []*Proc {
	out := make([]*Proc, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.Proc
	}
	return out
}

// WaitReady polls /health on every member that was started and not stopped
// with Stop or Kill, until all report healthy; it fails as soon as one of
// them has exited on its own, or when ctx ends or timeout passes.
func (c *EtcdCluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	return waitReady(ctx, timeout, c.Procs(), func(ctx context.Context, i int) (bool, string) {
		m := c.Members[i]
		status, body, err := httpGet(ctx, c.http, m.ClientURL+"/health")
		if err != nil {
			return false, err.Error()
		}
		var h struct {
			Health string `json:"health"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil || h.Health != "true" {
			return false, fmt.Sprintf("%s /health: %d %s", m.Name, status, body)
		}
		return true, ""
	}, "etcd cluster")
}

// Leader returns the index in Members of the current leader.
func (c *EtcdCluster) Leader(ctx context.Context) (int, error) {
	cli, err := newEtcdClient(ctx, c.Endpoints(), c.tls)
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	for i, m := range c.Members {
		if !m.Proc.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil {
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.GetMemberId() {
			return i, nil
		}
	}
	return -1, errors.New("etcd cluster: no member reports itself leader")
}

// Stop stops every member (SIGTERM, then SIGKILL after the stop timeout).
func (c *EtcdCluster) Stop() error {
	if err := stopAll(c.Procs(), c.opts.StopTimeout); err != nil {
		return fmt.Errorf("etcd cluster: stop: %w", err)
	}
	return nil
}

// Kill sends SIGKILL to member i and waits for it to exit.
func (c *EtcdCluster) Kill(i int) error {
	if i < 0 || i >= len(c.Members) {
		return fmt.Errorf("etcd cluster: no member %d (have %d)", i, len(c.Members))
	}
	return c.Members[i].Proc.Kill()
}

// newEtcdClient connects a client to endpoints (the client balances its
// requests over them round-robin) with a silent logger, over TLS with tlsConf
// when it is not nil.
func newEtcdClient(ctx context.Context, endpoints []string, tlsConf *tls.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConf,
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %v: %w", endpoints, err)
	}
	return cli, nil
}

func execOutput(ctx context.Context, path string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
	}
	return string(out), nil
}
