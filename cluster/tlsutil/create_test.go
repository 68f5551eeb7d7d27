package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCreateCAAndCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // created on demand
	ca, caKey, err := CreateCA(CAOptions{Dir: dir, CommonName: "Test CA", Days: 10, Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if ca != filepath.Join(dir, "switchboard-ca.pem") || caKey != filepath.Join(dir, "switchboard-ca-key.pem") {
		t.Errorf("paths %s %s", ca, caKey)
	}
	c := readPEMCert(t, ca)
	if !c.IsCA || c.Subject.CommonName != "Test CA" || domainOf(c) != "example.com" {
		t.Errorf("CA: IsCA %v CN %q domain %q", c.IsCA, c.Subject.CommonName, domainOf(c))
	}
	if pk, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if d := time.Until(c.NotAfter); d < 9*24*time.Hour || d > 10*24*time.Hour {
		t.Errorf("CA valid for %v, want 10 days", d)
	}

	cert, key, err := CreateCert(CertOptions{Dir: dir, Node: "n1", Days: 365,
		DNSNames: []string{"n1.example.org", "localhost"}, IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if cert != filepath.Join(dir, "n1.pem") || key != filepath.Join(dir, "n1-key.pem") {
		t.Errorf("paths %s %s", cert, key)
	}
	leaf := readPEMCert(t, cert)
	if want := []string{"n1", "n1.server.example.com", "localhost", "n1.example.org"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs %v, want %v (domain from the CA, no duplicates)", leaf.DNSNames, want)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage %v", leaf.ExtKeyUsage)
	}
	if !leaf.NotAfter.Equal(c.NotAfter) {
		t.Errorf("certificate valid until %v, want clamped to the CA's %v", leaf.NotAfter, c.NotAfter)
	}
	for _, k := range []string{caKey, key} {
		if m := mode(t, k); m != 0o600 {
			t.Errorf("%s has mode %o, want 0600", k, m)
		}
	}
	b, err := Load(Files{ca, cert, key}, "n1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b.Domain() != "example.com" {
		t.Errorf("domain %q", b.Domain())
	}
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, err := CreateCA(CAOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := CreateCert(CertOptions{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, p := range []string{ca, caKey, cert, key} {
		before[p], _ = os.ReadFile(p)
	}
	_, _, err = CreateCA(CAOptions{Dir: dir})
	wantErr(t, err, ca+" already exists: refusing to overwrite", caKey+" already exists")
	_, _, err = CreateCert(CertOptions{Dir: dir, Node: "n1"})
	wantErr(t, err, cert+" already exists: refusing to overwrite", key+" already exists")
	// Only the key left over (e.g. the certificate was moved away): still refused.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	_, _, err = CreateCert(CertOptions{Dir: dir, Node: "n1"})
	wantErr(t, err, key+" already exists")
	for p, data := range before {
		if now, _ := os.ReadFile(p); p != cert && !bytes.Equal(now, data) {
			t.Errorf("%s changed", p)
		}
	}
}

func TestCreateCertReportsEveryBadOption(t *testing.T) {
	dir := t.TempDir()
	_, _, err := CreateCert(CertOptions{Dir: dir, Node: "bad_name", Days: -1, DNSNames: []string{"ok.example", "not valid"}, IPs: []net.IP{{1, 2}}})
	wantErr(t, err, `node: "bad_name" is not a DNS name`, "days: -1", `dns: "not valid"`, "ip: entry 1", "ca: file", "switchboard-ca.pem", "does not exist")

	_, _, err = CreateCert(CertOptions{Dir: dir})
	wantErr(t, err, "node: must be set")

	if _, _, err := CreateCA(CAOptions{Dir: dir, Domain: "one.example"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = CreateCert(CertOptions{Dir: dir, Node: "n1", Domain: "two.example"})
	wantErr(t, err, `domain: "two.example" differs from the CA's domain "one.example"`)

	_, _, err = CreateCert(CertOptions{Dir: dir, Node: "n1", CAKeyFile: filepath.Join(dir, "switchboard-ca.pem")})
	wantErr(t, err, "key: CA key", "holds CERTIFICATE but no PRIVATE KEY")

	other := t.TempDir()
	if _, _, err := CreateCA(CAOptions{Dir: other}); err != nil {
		t.Fatal(err)
	}
	_, _, err = CreateCert(CertOptions{Dir: dir, Node: "n1", CAKeyFile: filepath.Join(other, "switchboard-ca-key.pem")})
	wantErr(t, err, "does not match CA certificate")
}

func TestEnsureDevIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	now := time.Now()
	f, err := EnsureDev(dir, "n1", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f, "n1", now); err != nil {
		t.Fatal(err)
	}
	read := func() map[string][]byte {
		out := map[string][]byte{}
		for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile, filepath.Join(dir, DefaultCAKeyFile)} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = data
		}
		return out
	}
	first := read()
	f2, err := EnsureDev(dir, "n1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if f2 != f {
		t.Errorf("second call returned %+v, want %+v", f2, f)
	}
	for p, data := range read() {
		if !bytes.Equal(data, first[p]) {
			t.Errorf("%s was rewritten by the second call", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, devLockFile)); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
}

func TestEnsureDevRegenerates(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	f1, err := EnsureDev(dir, "n1", now)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := EnsureDev(dir, "n2", now)
	if err != nil {
		t.Fatal(err)
	}
	if f2.CAFile != f1.CAFile {
		t.Fatalf("n2 got CA %s, want the shared %s", f2.CAFile, f1.CAFile)
	}
	caBefore, _ := os.ReadFile(f1.CAFile)

	// n1's files now hold n2's certificate: regenerated for n1, same CA.
	copyFile(t, f2.CertFile, f1.CertFile)
	copyFile(t, f2.KeyFile, f1.KeyFile)
	if _, err := Load(f1, "n1", now); err == nil {
		t.Fatal("setup: n2's certificate loads as n1")
	}
	if _, err := EnsureDev(dir, "n1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f1, "n1", now); err != nil {
		t.Fatalf("after EnsureDev: %v", err)
	}
	if caAfter, _ := os.ReadFile(f1.CAFile); !bytes.Equal(caBefore, caAfter) {
		t.Error("a usable CA was replaced")
	}

	// Expired certificate (CA still valid): a new certificate, same CA.
	later := now.AddDate(2, 0, 0)
	if _, err := EnsureDev(dir, "n1", later); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f1, "n1", later); err != nil {
		t.Fatalf("after EnsureDev in two years: %v", err)
	}
	if caAfter, _ := os.ReadFile(f1.CAFile); !bytes.Equal(caBefore, caAfter) {
		t.Error("a usable CA was replaced")
	}

	// Garbage CA: a new CA and certificate.
	writeFile(t, f1.CAFile, "garbage")
	if _, err := EnsureDev(dir, "n1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f1, "n1", now); err != nil {
		t.Fatalf("after replacing the CA: %v", err)
	}

	_, err = EnsureDev(dir, "../escape", now)
	wantErr(t, err, `node name "../escape" is not a DNS name`)
}

// Nodes sharing a dev directory start at once: they end up with one CA.
func TestEnsureDevConcurrentNodesShareOneCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	nodes := []string{"n1", "n2", "n3"}
	files := make([]Files, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			files[i], errs[i] = EnsureDev(dir, n, now)
		}()
	}
	wg.Wait()
	var bundles []*Bundle
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("%s: %v", n, errs[i])
		}
		b, err := Load(files[i], n, now)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		bundles = append(bundles, b)
	}
	r := handshake(t, bundles[0].PeerConfig(), bundles[2].PeerConfig())
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("n1<-n3: server %v client %v", r.serverErr, r.clientErr)
	}
}

func TestLoadCAPool(t *testing.T) {
	dir := t.TempDir()
	caCert, _, err := CreateCA(CAOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCAPool(caCert)
	if err != nil || pool == nil {
		t.Fatalf("LoadCAPool(%s) = %v, %v", caCert, pool, err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCAPool(notPEM); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a file without a certificate: %v", err)
	}
	if _, err := LoadCAPool(filepath.Join(dir, "missing.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file: %v, want fs.ErrNotExist", err)
	}
}
