package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

// badStart describes one serve invocation that must be refused.
type badStart struct {
	name  string
	args  []string // besides the node's addresses and data dir
	env   []string
	file  string   // TOML written to a file passed with --config ("" = none)
	want  []string // substrings of the error ({file} = the config file's path)
	dirOK bool     // the data directory may exist afterwards (it existed before)
}

// nodeAddrs are fresh loopback addresses for the node's listeners.
type nodeAddrs struct {
	raft, api, http, gossip, actor, session, admin string
}

func freshAddrs(t *testing.T) nodeAddrs {
	return nodeAddrs{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
}

func (a nodeAddrs) args() []string {
	return []string{"--raft-bind", a.raft, "--api-bind", a.api, "--http-bind", a.http, "--gossip-bind", a.gossip,
		"--actor-bind", a.actor, "--session-bind", a.session, "--admin-bind", a.admin}
}

// assertNothingBound checks that every address serve was given can be bound
// again (TCP, and UDP for gossip): no listener was left behind.
func assertNothingBound(t *testing.T, a nodeAddrs) {
	t.Helper()
	for _, addr := range []string{a.raft, a.api, a.http, a.gossip, a.actor, a.session, a.admin} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("port %s still bound after a refused start: %v", addr, err)
			continue
		}
		l.Close()
	}
	pc, err := net.ListenPacket("udp", a.gossip)
	if err != nil {
		t.Errorf("gossip UDP port %s still bound after a refused start: %v", a.gossip, err)
		return
	}
	pc.Close()
}

// runBadStart runs serve with c and checks the error, that no listener is
// left and that nothing was written to the data directory.
func runBadStart(t *testing.T, c badStart) {
	t.Helper()
	addrs := freshAddrs(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := append([]string{"--data-dir", dataDir}, addrs.args()...)
	path := ""
	if c.file != "" {
		path = filepath.Join(t.TempDir(), "switchboard.toml")
		if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	args = append(args, c.args...)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := serve(ctx, args, c.env, &out)
	if err == nil {
		t.Fatalf("serve accepted a bad start; output:\n%s", out.String())
	}
	for _, w := range c.want {
		w = strings.ReplaceAll(w, "{file}", path)
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(out.String(), "serving") {
		t.Errorf("serve printed that it serves:\n%s", out.String())
	}
	assertNothingBound(t, addrs)
	if _, serr := os.Stat(dataDir); !c.dirOK && !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("data directory %s was created by a refused start (stat: %v)", dataDir, serr)
	}
	if t.Failed() {
		t.Logf("serve error:\n%v", err)
	}
}

// Bad configuration files, flags and environment variables: every problem
// is named by its key and its source, with the fix, all at once; nothing
// is bound or written.
func TestServeRefusesBadConfiguration(t *testing.T) {
	cases := []badStart{
		{name: "toml syntax error", file: "node_id = \"n1\"\nraft_bind = 127.0.0.1:7400\n",
			want: []string{"config file {file}", "line 2"}},
		{name: "unknown key in file", file: "node_id = \"n1\"\nnodeid = \"n2\"\n[raft]\nheartbeat = \"1s\"\n",
			want: []string{`config file {file}: unknown key "nodeid"`, `unknown key "raft.heartbeat"`}},
		{name: "bad values in file", file: "node_id = \"n1\"\nbootstrap_expect = \"three\"\n[raft]\nheartbeat_timeout = \"fast\"\n",
			want: []string{"bootstrap_expect (config file {file})", "raft.heartbeat_timeout (config file {file})", `"fast"`}},
		{name: "invalid value in file", file: "node_id = \"n1\"\nlog_level = \"loud\"\n[gossip]\nkey = \"c2hvcnQ=\"\n",
			want: []string{`log_level: "loud" is not one of debug, info, warn, error`, "gossip.key:"}},
		{name: "config file missing", args: []string{"--config", "/nonexistent/switchboard.toml"},
			want: []string{"/nonexistent/switchboard.toml"}},
		{name: "unknown flag", args: []string{"--node-id", "n1", "--raft-heartbeat", "1s"},
			want: []string{"flag provided but not defined: -raft-heartbeat"}},
		{name: "bad flag values", args: []string{"--node-id", "n1", "--raft-heartbeat-timeout", "fast", "--bootstrap-expect", "many"},
			want: []string{`raft.heartbeat_timeout (flag --raft-heartbeat-timeout): "fast"`, `bootstrap_expect (flag --bootstrap-expect): "many"`}},
		{name: "invalid flag values", args: []string{"--node-id", "n1", "--raft-max-append-entries", "0", "--join", "nohost"},
			want: []string{"raft.max_append_entries: 0 is out of range 1..1024", `join: "nohost" is not host:port of another node's gossip_bind`}},
		{name: "bootstrap_expect without join", args: []string{"--node-id", "n1", "--bootstrap-expect", "3"},
			want: []string{"join: must list the other nodes' gossip addresses when bootstrap_expect is 3"}},
		{name: "bad env", args: []string{"--node-id", "n1"}, env: []string{"SWITCHBOARD_NODEID=n2", "SWITCHBOARD_GOSSIP_PROBE_INTERVAL=often", "PATH=/bin"},
			want: []string{"environment SWITCHBOARD_NODEID: not a configuration key (see --help)",
				`gossip.probe_interval (environment SWITCHBOARD_GOSSIP_PROBE_INTERVAL): "often"`}},
		{name: "problems from every source at once", file: "nodeid = \"x\"\n", args: []string{"--raft-commit-timeout", "soon"},
			env:  []string{"SWITCHBOARD_LOG_LEVEL=", "SWITCHBOARD_BOOTSTRAP_EXPECT=x"},
			want: []string{`unknown key "nodeid"`, "raft.commit_timeout (flag --raft-commit-timeout)", "bootstrap_expect (environment SWITCHBOARD_BOOTSTRAP_EXPECT)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runBadStart(t, c) })
	}
}

// writeCert signs a certificate for name with the CA in dir, shaped by
// edit, and writes it to dir/<file>.pem and dir/<file>-key.pem.
func writeCert(t *testing.T, dir, file, name string, edit func(*x509.Certificate)) (cert, key string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsutil.DefaultCACertFile), filepath.Join(dir, tlsutil.DefaultCAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, k.Public(), ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, file+".pem"), filepath.Join(dir, file+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// Bad node certificates: missing files, garbage, expired, issued for another
// node, a key that does not match, another CA. Each error names the key and
// file and says how to fix it; nothing is bound or written.
func TestServeRefusesBadCertificates(t *testing.T) {
	pki := t.TempDir()
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: pki}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, _, err := tlsutil.CreateCert(tlsutil.CertOptions{Dir: pki, Node: n}); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(pki, tlsutil.DefaultCACertFile)
	n1, n1Key := tlsutil.CertFiles(pki, "n1")
	n2, n2Key := tlsutil.CertFiles(pki, "n2")
	garbage := filepath.Join(pki, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("this is not PEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expired, expiredKey := writeCert(t, pki, "expired", "n1", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	otherCA := t.TempDir()
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: otherCA}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tlsutil.CreateCert(tlsutil.CertOptions{Dir: otherCA, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	foreign, foreignKey := tlsutil.CertFiles(otherCA, "n1")

	tlsArgs := func(ca, cert, key string) []string {
		return []string{"--node-id", "n1", "--tls-ca-file", ca, "--tls-cert-file", cert, "--tls-key-file", key}
	}
	fix := "switchboard tls cert create --node n1"
	cases := []badStart{
		{name: "missing cert file", args: tlsArgs(ca, "/nonexistent/n1.pem", n1Key),
			want: []string{`tls.cert_file: file "/nonexistent/n1.pem" does not exist`, fix}},
		{name: "only a CA configured", args: []string{"--node-id", "n1", "--tls-ca-file", ca},
			want: []string{"tls.cert_file: must be set", "tls.key_file: must be set"}},
		{name: "garbage cert", args: tlsArgs(ca, garbage, n1Key),
			want: []string{"tls.cert_file=" + garbage, "holds no PEM data", fix}},
		{name: "garbage CA", args: tlsArgs(garbage, n1, n1Key),
			want: []string{"tls.ca_file=" + garbage, "holds no PEM data", "switchboard tls ca create"}},
		{name: "garbage key", args: tlsArgs(ca, n1, garbage),
			want: []string{"tls.key_file=" + garbage, "holds no PEM data"}},
		{name: "files swapped", args: tlsArgs(ca, n1Key, n1),
			want: []string{"tls.cert_file=" + n1Key, "are two files swapped?"}},
		{name: "expired cert", args: tlsArgs(ca, expired, expiredKey),
			want: []string{"tls.cert_file=" + expired, "expired on", fix}},
		{name: "cert of another node", args: tlsArgs(ca, n2, n2Key),
			want: []string{"tls.cert_file=" + n2, `not for node "n1"`, fix}},
		{name: "key does not match", args: tlsArgs(ca, n1, n2Key),
			want: []string{"tls.key_file=" + n2Key, "does not match", "tls.cert_file=" + n1, fix}},
		{name: "cert of another CA", args: tlsArgs(ca, foreign, foreignKey),
			want: []string{"tls.cert_file=" + foreign, "is not signed by the CA in tls.ca_file=" + ca, fix}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runBadStart(t, c) })
	}
}

// A start that fails after the listeners are bound (the data directory
// cannot be created) releases every one of them.
func TestServeReleasesListenersWhenStartFails(t *testing.T) {
	addrs := freshAddrs(t)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pki := t.TempDir()
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: pki}); err != nil {
		t.Fatal(err)
	}
	cert, key, err := tlsutil.CreateCert(tlsutil.CertOptions{Dir: pki, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--node-id", "n1", "--data-dir", filepath.Join(file, "data"), "--log-level", "error",
		"--tls-ca-file", filepath.Join(pki, tlsutil.DefaultCACertFile), "--tls-cert-file", cert, "--tls-key-file", key}, addrs.args()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err = serve(ctx, args, nil, &out)
	if err == nil {
		t.Fatalf("serve started with its data directory under a file; output:\n%s", out.String())
	}
	if !strings.Contains(err.Error(), "data_dir") || !strings.Contains(err.Error(), file) {
		t.Errorf("error does not name data_dir and the path: %v", err)
	}
	assertNothingBound(t, addrs)
}
