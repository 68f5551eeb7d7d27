package main

// Commands for container deployments, where the image has no shell:
// `init-cluster` writes a whole cluster's credentials and per-node
// configuration files, `healthcheck` probes a node's HTTP endpoint.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/switchboard-io/switchboard/cluster/membership"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

// Files init-cluster writes next to the certificates.
const (
	gossipKeyFile = "gossip.key"
	hostTokenFile = "host-token"
)

// initNode is one --nodes entry: a node_id and extra IP addresses its
// certificate names.
type initNode struct {
	name string
	ips  []net.IP
}

// initCluster runs `switchboard init-cluster`: everything a cluster's nodes
// share or need, created once and never overwritten, so that it can run at
// every start of a deployment (a compose init service, a Kubernetes job).
func initCluster(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init-cluster", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory to write the CA, node certificates, gossip key, host token and NODE.toml files into")
	nodeList := fs.String("nodes", "", "node_ids, comma-separated, each optionally with IP addresses for its certificate: n1=10.0.0.11,n2=10.0.0.12 (required)")
	dnsList := fs.String("dns", "", "extra DNS names for every node certificate, comma-separated (e.g. the client service's name)")
	ipList := fs.String("ip", "", "extra IP addresses for every node certificate, comma-separated")
	mount := fs.String("path", "", "directory in which the nodes see these files, written into NODE.toml (default: --dir)")
	user := fs.String("user", "supporter", "user name of the session host token")
	days := fs.Int("days", tlsutil.DefaultCertDays, "days the node certificates are valid")
	if err := parseFlags(fs, "switchboard init-cluster --nodes n1[=IP],n2[=IP],... [flags]", args, stdout); err != nil {
		return err
	}
	nodes, problems := parseInitNodes(*nodeList)
	extraIPs, bad := parseIPs("--ip", *ipList)
	problems = append(problems, bad...)
	if *days <= 0 {
		problems = append(problems, fmt.Sprintf("--days %d: must be a positive number of days", *days))
	}
	if *user == "" || strings.Contains(*user, ":") {
		problems = append(problems, fmt.Sprintf("--user %q: must be a non-empty name without ':'", *user))
	}
	if len(problems) > 0 {
		return fmt.Errorf("init-cluster:\n  %s", strings.Join(problems, "\n  "))
	}
	if *mount == "" {
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return fmt.Errorf("init-cluster: --dir: %w", err)
		}
		*mount = abs
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("init-cluster: %w", err)
	}

	var created []string
	caPath := filepath.Join(*dir, tlsutil.DefaultCACertFile)
	caKeyPath := filepath.Join(*dir, tlsutil.DefaultCAKeyFile)
	switch haveCA, haveKey := exists(caPath), exists(caKeyPath); {
	case !haveCA && !haveKey:
		if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: *dir, CommonName: tlsutil.DefaultCACommonName,
			Days: tlsutil.DefaultCADays, Domain: tlsutil.DefaultDomain}); err != nil {
			return fmt.Errorf("init-cluster: %w", err)
		}
		created = append(created, caPath, caKeyPath)
	case haveCA != haveKey:
		return fmt.Errorf("init-cluster: only one of %s and %s exists: restore the other or remove both to create a new CA", caPath, caKeyPath)
	}
	for _, n := range nodes {
		certPath, keyPath := tlsutil.CertFiles(*dir, n.name)
		switch haveCert, haveKey := exists(certPath), exists(keyPath); {
		case !haveCert && !haveKey:
			if _, _, err := tlsutil.CreateCert(tlsutil.CertOptions{Dir: *dir, Node: n.name, Days: *days,
				DNSNames: splitList(*dnsList), IPs: append(append([]net.IP{}, n.ips...), extraIPs...)}); err != nil {
				return fmt.Errorf("init-cluster: %w", err)
			}
			created = append(created, certPath, keyPath)
		case haveCert != haveKey:
			return fmt.Errorf("init-cluster: only one of %s and %s exists: remove both to create them again", certPath, keyPath)
		}
		if _, err := tlsutil.Load(tlsutil.Files{CAFile: caPath, CertFile: certPath, KeyFile: keyPath}, n.name, time.Now()); err != nil {
			return fmt.Errorf("init-cluster: node %s: %w", n.name, err)
		}
	}
	gossipKey, made, err := ensureSecretFile(filepath.Join(*dir, gossipKeyFile), func() (string, error) {
		return membership.GenerateSecretKey(), nil
	})
	if err != nil {
		return err
	}
	if made {
		created = append(created, filepath.Join(*dir, gossipKeyFile))
	}
	if _, err := membership.ParseSecretKey(gossipKey); err != nil {
		return fmt.Errorf("init-cluster: %s: %w", filepath.Join(*dir, gossipKeyFile), err)
	}
	token, newToken, err := ensureSecretFile(filepath.Join(*dir, hostTokenFile), newHostToken)
	if err != nil {
		return err
	}
	if newToken {
		created = append(created, filepath.Join(*dir, hostTokenFile))
	}
	sum := sha256.Sum256([]byte(token))
	tokenEntry := *user + ":sha256:" + hex.EncodeToString(sum[:])
	for _, n := range nodes {
		path := filepath.Join(*dir, n.name+".toml")
		made, err := writeNodeConfig(path, n.name, *mount, gossipKey, tokenEntry)
		if err != nil {
			return err
		}
		if made {
			created = append(created, path)
		}
	}

	if len(created) == 0 {
		fmt.Fprintf(stdout, "init-cluster: %s already holds everything for nodes %s; nothing created\n", *dir, *nodeList)
		return nil
	}
	fmt.Fprintf(stdout, "init-cluster: created in %s:\n", *dir)
	for _, c := range created {
		fmt.Fprintf(stdout, "  %s\n", filepath.Base(c))
	}
	fmt.Fprintf(stdout, "Start each node with --config %s/NODE.toml (node_id, gossip key, TLS files and the host token's hash).\n", *mount)
	if newToken {
		fmt.Fprintf(stdout, "Session host token (user %s; also in %s, mode 0600):\n  %s\n", *user, filepath.Join(*dir, hostTokenFile), token)
	}
	return nil
}

// parseInitNodes parses "n1=IP,n2,n3=IP".
func parseInitNodes(list string) ([]initNode, []string) {
	var nodes []initNode
	var problems []string
	seen := map[string]bool{}
	for _, entry := range splitList(list) {
		name, ipText, _ := strings.Cut(entry, "=")
		n := initNode{name: strings.TrimSpace(name)}
		switch {
		case n.name == "" || strings.ContainsAny(n.name, `/\ `) || n.name == "." || n.name == "..":
			problems = append(problems, fmt.Sprintf("--nodes: %q is not a node_id (letters, digits, '-', '_', '.')", name))
			continue
		case seen[n.name]:
			problems = append(problems, fmt.Sprintf("--nodes: %s listed twice", n.name))
			continue
		}
		seen[n.name] = true
		ips, bad := parseIPs("--nodes "+n.name, ipText)
		if len(bad) > 0 {
			problems = append(problems, bad...)
			continue
		}
		n.ips = ips
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 && len(problems) == 0 {
		problems = append(problems, "--nodes is required: the node_ids of the cluster's nodes (e.g. --nodes n1,n2,n3)")
	}
	return nodes, problems
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ensureSecretFile returns the trimmed content of path, creating the file
// (mode 0600) with gen's value first if it does not exist.
func ensureSecretFile(path string, gen func() (string, error)) (value string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, false, nil
		}
		return "", false, fmt.Errorf("init-cluster: %s is empty: remove it to create a new one", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("init-cluster: %w", err)
	}
	v, err := gen()
	if err != nil {
		return "", false, fmt.Errorf("init-cluster: %s: %w", path, err)
	}
	if err := writeNew(path, []byte(v+"\n")); err != nil {
		return "", false, err
	}
	return v, true, nil
}

// newHostToken returns a random session host token in the format the nodes
// create for themselves (sessionedge.EnsureHostToken).
func newHostToken() (string, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("host token: %w", err)
	}
	return "sbh_" + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// nodeFile is the part of a node's configuration init-cluster writes: its
// identity and secrets. Addresses come from the deployment (env or flags).
type nodeFile struct {
	NodeID string `toml:"node_id"`
	Gossip struct {
		Key string `toml:"key"`
	} `toml:"gossip"`
	TLS struct {
		CAFile   string `toml:"ca_file"`
		CertFile string `toml:"cert_file"`
		KeyFile  string `toml:"key_file"`
	} `toml:"tls"`
	Session struct {
		HostTokens []string `toml:"host_tokens"`
	} `toml:"session"`
}

// writeNodeConfig writes path unless it exists; an existing file is left
// alone (an operator may have edited it).
func writeNodeConfig(path, node, mount, gossipKey, tokenEntry string) (bool, error) {
	if exists(path) {
		return false, nil
	}
	var f nodeFile
	f.NodeID = node
	f.Gossip.Key = gossipKey
	f.TLS.CAFile = filepath.Join(mount, tlsutil.DefaultCACertFile)
	certPath, keyPath := tlsutil.CertFiles(mount, node)
	f.TLS.CertFile, f.TLS.KeyFile = certPath, keyPath
	f.Session.HostTokens = []string{tokenEntry}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Written by switchboard init-cluster: identity and secrets of node %s.\n"+
		"# Use with: switchboard serve --config %s (addresses from flags or SWITCHBOARD_* variables).\n", node, filepath.Join(mount, node+".toml"))
	if err := toml.NewEncoder(&buf).Encode(f); err != nil {
		return false, fmt.Errorf("init-cluster: %s: %w", path, err)
	}
	if err := writeNew(path, buf.Bytes()); err != nil {
		return false, err
	}
	return true, nil
}

// writeNew creates path (mode 0600) with b; it fails if path exists.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("init-cluster: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("init-cluster: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("init-cluster: %s: %w", path, err)
	}
	return nil
}

// DefaultHealthURL is what `switchboard healthcheck` probes without an
// argument: the readiness of a node with http_bind on port 7402.
const DefaultHealthURL = "http://127.0.0.1:7402/readyz"

// healthcheck runs `switchboard healthcheck [URL]`: nil when URL answers 200
// within the timeout (for container health checks in an image without curl).
func healthcheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "bound of the whole check")
	quiet := fs.Bool("quiet", false, "print nothing when healthy")
	var url string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		url, args = args[0], args[1:]
	}
	if err := parseFlags(fs, "switchboard healthcheck [URL] [flags] (default URL "+DefaultHealthURL+")", args, stdout); err != nil {
		return err
	}
	if url == "" {
		url = DefaultHealthURL
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if !*quiet {
		fmt.Fprintf(stdout, "%s: %s", url, body)
	}
	return nil
}
