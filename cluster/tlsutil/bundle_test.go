package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFilesValidateNamesEveryKey(t *testing.T) {
	dir := t.TempDir()
	err := Files{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: dir}.Validate()
	wantErr(t, err, "tls.ca_file: must be set", "tls.cert_file: file", "nope.pem", "does not exist", "tls.key_file:", "is a directory")

	if os.Geteuid() != 0 { // root reads anything
		p := filepath.Join(dir, "locked.pem")
		writeFile(t, p, "x")
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		wantErr(t, Files{CAFile: p, CertFile: p, KeyFile: p}.Validate(), "tls.ca_file: cannot read", "tls.key_file: cannot read")
	}
}

func TestLoadReturnsTheNodeIdentity(t *testing.T) {
	p := newPKI(t)
	b := p.bundle("n1")
	if b.NodeName() != "n1" || b.Domain() != DefaultDomain {
		t.Errorf("node %q domain %q, want n1 %q", b.NodeName(), b.Domain(), DefaultDomain)
	}
	leaf := readPEMCert(t, p.node("n1").CertFile)
	if !b.NotAfter().Equal(leaf.NotAfter) {
		t.Errorf("NotAfter %v, want the certificate's %v", b.NotAfter(), leaf.NotAfter)
	}
	if got := time.Until(b.NotAfter()); got < 364*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("certificate valid for %v, want 365 days", got)
	}
}

func TestLoadFailures(t *testing.T) {
	p := newPKI(t)
	n1 := p.node("n1")
	n2 := p.node("n2")
	other := newPKI(t)
	foreign := other.node("n1")
	now := time.Now()
	garbage := filepath.Join(p.dir, "garbage.pem")
	writeFile(t, garbage, "this is not PEM\n")
	clientless := p.issue("serveronly", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })

	tests := []struct {
		name  string
		files Files
		node  string
		now   time.Time
		want  []string
	}{
		{"missing file", Files{n1.CAFile, filepath.Join(p.dir, "n9.pem"), n1.KeyFile}, "n1", now,
			[]string{"tls.cert_file: file", "n9.pem", "does not exist"}},
		{"garbage PEM", Files{n1.CAFile, garbage, n1.KeyFile}, "n1", now,
			[]string{"certificate tls.cert_file=" + garbage + " holds no PEM data", "switchboard tls cert create --node n1"}},
		{"garbage key", Files{n1.CAFile, n1.CertFile, garbage}, "n1", now,
			[]string{"key tls.key_file=" + garbage + " holds no PEM data", "n1-key.pem"}},
		{"cert and key swapped", Files{n1.CAFile, n1.KeyFile, n1.CertFile}, "n1", now,
			[]string{"tls.cert_file=" + n1.KeyFile + " holds PRIVATE KEY but no CERTIFICATE", "swapped"}},
		{"node cert as CA", Files{n2.CertFile, n1.CertFile, n1.KeyFile}, "n1", now,
			[]string{"CA certificate tls.ca_file=" + n2.CertFile, "not a CA certificate"}},
		{"key of another certificate", Files{n1.CAFile, n1.CertFile, n2.KeyFile}, "n1", now,
			[]string{"key tls.key_file=" + n2.KeyFile + " does not match certificate tls.cert_file=" + n1.CertFile}},
		{"certificate of another CA", Files{n1.CAFile, foreign.CertFile, foreign.KeyFile}, "n1", now,
			[]string{"certificate tls.cert_file=" + foreign.CertFile + " is not signed by the CA in tls.ca_file=" + n1.CAFile}},
		{"expired", n1, "n1", now.AddDate(2, 0, 0),
			[]string{"certificate tls.cert_file=" + n1.CertFile + " expired on ", "switchboard tls cert create --node n1"}},
		{"not yet valid", n1, "n1", now.Add(-time.Hour),
			[]string{"certificate tls.cert_file=" + n1.CertFile + " is not valid until ", "clock"}},
		{"CA expired too", n1, "n1", now.AddDate(10, 0, 0),
			[]string{"expired on", "CA certificate tls.ca_file=" + n1.CAFile, "switchboard tls ca create"}},
		{"wrong node", n1, "n9", now,
			[]string{`certificate tls.cert_file=` + n1.CertFile + ` is for [n1 n1.server.switchboard localhost], not for node "n9": create one with switchboard tls cert create --node n9`}},
		{"no client auth", clientless, "serveronly", now,
			[]string{"tls.cert_file=" + clientless.CertFile + " is not valid for client authentication (extended key usage: server auth)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Load(tc.files, tc.node, tc.now)
			if b != nil {
				t.Error("Load returned a bundle with an error")
			}
			wantErr(t, err, tc.want...)
		})
	}
}

func TestLoadReportsIndependentProblemsTogether(t *testing.T) {
	p := newPKI(t)
	f := p.issue("odd", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
	_, err := Load(f, "n1", time.Now().AddDate(1, 0, 0))
	wantErr(t, err, "expired on", "not valid for server authentication", `not for node "n1"`)
}

// A full mutual handshake with ServerConfig and ClientConfig: both sides
// see the other's node certificate.
func TestServerAndClientConfigHandshake(t *testing.T) {
	p := newPKI(t)
	n1, n2 := p.bundle("n1"), p.bundle("n2")
	for _, serverName := range []string{"n1", "n1.server.switchboard", "localhost", "127.0.0.1"} {
		t.Run(serverName, func(t *testing.T) {
			r := handshake(t, n1.ServerConfig(), n2.ClientConfig(serverName))
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("server: %v; client: %v", r.serverErr, r.clientErr)
			}
			if r.clientCert == nil || !slices.Contains(r.clientCert.DNSNames, "n2") {
				t.Fatalf("server saw client certificate %v, want n2's", r.clientCert)
			}
			if !slices.Contains(r.serverCert.DNSNames, "n1") {
				t.Fatalf("client saw server certificate %v, want n1's", r.serverCert.DNSNames)
			}
			if node, ok := n1.PeerNode(r.serverState); !ok || node != "n2" {
				t.Errorf("PeerNode = %q, %v; want n2", node, ok)
			}
			if r.serverState.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", r.serverState.Version)
			}
		})
	}
}

func TestClientConfigChecksServerName(t *testing.T) {
	p := newPKI(t)
	r := handshake(t, p.bundle("n1").ServerConfig(), p.bundle("n2").ClientConfig("n3"))
	wantErr(t, r.clientErr, "n3")
}

// PeerConfig on both ends, dialing by address only.
func TestPeerConfigHandshake(t *testing.T) {
	p := newPKI(t)
	n1, n2 := p.bundle("n1"), p.bundle("n2")
	r := handshake(t, n1.PeerConfig(), n2.PeerConfig())
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("server: %v; client: %v", r.serverErr, r.clientErr)
	}
	if node, ok := n1.PeerNode(r.serverState); !ok || node != "n2" {
		t.Errorf("server saw peer %q, %v; want n2", node, ok)
	}
	if !slices.Contains(r.serverCert.DNSNames, "n1") {
		t.Errorf("client saw %v, want n1's certificate", r.serverCert.DNSNames)
	}
}

func TestServerRejectsClients(t *testing.T) {
	p := newPKI(t)
	n1 := p.bundle("n1")
	foreign := newPKI(t).node("n2")
	device := p.issue("device", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		c.DNSNames = nil
	})
	noNodeName := p.issue("web", func(c *x509.Certificate) { c.DNSNames = []string{"web", "localhost"} })
	noCert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}

	tests := []struct {
		name   string
		client *tls.Config
		want   string // in the server's error
	}{
		{"no certificate", noCert, "client didn't provide a certificate"},
		{"certificate of another CA", certOnly(t, foreign), "unknown authority"},
		{"client-only certificate of our CA", certOnly(t, device), "not a node certificate"},
		{"certificate of our CA without a node name", certOnly(t, noNodeName), "no <node>.server.switchboard name"},
	}
	for _, tc := range tests {
		for cfgName, server := range map[string]*tls.Config{"ServerConfig": n1.ServerConfig(), "PeerConfig": n1.PeerConfig()} {
			t.Run(tc.name+"/"+cfgName, func(t *testing.T) {
				r := handshake(t, server, tc.client)
				wantErr(t, r.serverErr, tc.want)
				if r.clientErr == nil {
					t.Error("client did not notice the rejection")
				}
				if r.clientCert != nil {
					t.Error("server accepted the client's certificate")
				}
			})
		}
	}
}

func TestPeerConfigRejectsServerOfAnotherCA(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	r := handshake(t, other.bundle("n1").PeerConfig(), p.bundle("n2").PeerConfig())
	wantErr(t, r.clientErr, "not a node certificate of the cluster CA", "unknown authority")
}

func TestPeerConfigIsUsableAsClientAndServer(t *testing.T) {
	c := newPKI(t).bundle("n1").PeerConfig()
	if c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS13 {
		t.Fatalf("PeerConfig is not a full mutual configuration: %+v", c)
	}
	if !strings.Contains(c.Certificates[0].Leaf.DNSNames[0], "n1") {
		t.Errorf("certificate %v", c.Certificates[0].Leaf.DNSNames)
	}
}
