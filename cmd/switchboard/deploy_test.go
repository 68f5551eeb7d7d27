package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchboard-io/switchboard/gateway/sessionedge"
	"github.com/switchboard-io/switchboard/internal/conf"
	"github.com/switchboard-io/switchboard/internal/ports"
)

// init-cluster writes files that serve accepts as they are: each NODE.toml
// loads through serve's configuration loader, validates (TLS files for that
// node, gossip key) and admits the clear host token.
func TestInitClusterWritesConfigsServeAccepts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out bytes.Buffer
	if err := initCluster([]string{"--dir", dir, "--nodes", "n1=10.9.0.11,n2,n3", "--dns", "sb.example.com"}, &out); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, hostTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), strings.TrimSpace(string(token))) {
		t.Errorf("the first run does not print the host token:\n%s", out.String())
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		cfg := DefaultServeConfig()
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		if _, err := conf.Load(&cfg, fs, []string{"--config", filepath.Join(dir, n+".toml")}, nil); err != nil {
			t.Fatalf("%s.toml: %v", n, err)
		}
		if cfg.NodeID != n {
			t.Errorf("%s.toml: node_id %q", n, cfg.NodeID)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s.toml: %v", n, err)
		}
		if _, err := loadTLS(cfg, nil, &out); err != nil {
			t.Errorf("%s.toml: %v", n, err)
		}
		tokens, err := sessionedge.ParseHostTokens(cfg.Session.HostTokens)
		if err != nil {
			t.Fatal(err)
		}
		if user, ok := tokens.Check(strings.TrimSpace(string(token))); !ok || user != "supporter" {
			t.Errorf("%s.toml: host token not accepted (%q, %v)", n, user, ok)
		}
	}
	b, err := loadTLS(ServeConfig{NodeID: "n1", TLS: TLSConfig{CAFile: filepath.Join(dir, "switchboard-ca.pem"),
		CertFile: filepath.Join(dir, "n1.pem"), KeyFile: filepath.Join(dir, "n1-key.pem")}}, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if ips := fmt.Sprint(b.Leaf().IPAddresses); !strings.Contains(ips, "10.9.0.11") {
		t.Errorf("n1's certificate lacks its IP: %s", ips)
	}
	if dns := strings.Join(b.Leaf().DNSNames, ","); !strings.Contains(dns, "sb.example.com") {
		t.Errorf("n1's certificate lacks the extra name: %s", dns)
	}

	// Again, with one more node: only that node's files are created, and
	// the existing secrets are kept.
	before := readDir(t, dir)
	out.Reset()
	if err := initCluster([]string{"--dir", dir, "--nodes", "n1,n2,n3,n4"}, &out); err != nil {
		t.Fatal(err)
	}
	after := readDir(t, dir)
	for name, content := range before {
		if after[name] != content {
			t.Errorf("%s changed on the second run", name)
		}
	}
	for _, f := range []string{"n4.pem", "n4-key.pem", "n4.toml"} {
		if _, ok := after[f]; !ok {
			t.Errorf("second run did not create %s", f)
		}
	}
	if len(after) != len(before)+3 || strings.Contains(out.String(), "sbh_") {
		t.Errorf("second run: %d files before, %d after; output:\n%s", len(before), len(after), out.String())
	}
	out.Reset()
	if err := initCluster([]string{"--dir", dir, "--nodes", "n1,n2,n3,n4"}, &out); err != nil || !strings.Contains(out.String(), "nothing created") {
		t.Errorf("third run: %v\n%s", err, out.String())
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func TestInitClusterReportsEveryBadFlag(t *testing.T) {
	var out bytes.Buffer
	err := initCluster([]string{"--dir", t.TempDir(), "--nodes", "a/b,n1,n1,n2=nope", "--ip", "x", "--user", "a:b"}, &out)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"a/b" is not a node_id`, "n1 listed twice", `--nodes n2: "nope" is not an IP`, `--ip: "x"`, `--user "a:b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := initCluster([]string{"--dir", t.TempDir()}, &out); err == nil || !strings.Contains(err.Error(), "--nodes is required") {
		t.Errorf("without --nodes: %v", err)
	}
}

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: no leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := healthcheck(context.Background(), []string{srv.URL + "/readyz"}, &out); err != nil || !strings.Contains(out.String(), "ready") {
		t.Errorf("ready server: %v %q", err, out.String())
	}
	ready.Store(false)
	err := healthcheck(context.Background(), []string{srv.URL + "/readyz", "--quiet"}, &out)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("unready server: %v", err)
	}
	// Nothing listening: an error, not a hang.
	addr, err := ports.Addr()
	if err != nil {
		t.Fatal(err)
	}
	if err := healthcheck(context.Background(), []string{"http://" + addr + "/readyz", "--timeout", "1s"}, &out); err == nil {
		t.Error("closed port: no error")
	}
}
