package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// pki is a CA in a temporary directory with node certificates made on demand.
type pki struct {
	t   *testing.T
	dir string
	ca  string
	key string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, key, err := CreateCA(CAOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, dir: dir, ca: ca, key: key}
}

// node creates (once) and returns the files of a node certificate.
func (p *pki) node(name string) Files {
	p.t.Helper()
	cert, key := CertFiles(p.dir, name)
	if _, err := os.Stat(cert); err != nil {
		if cert, key, err = CreateCert(CertOptions{Dir: p.dir, Node: name}); err != nil {
			p.t.Fatal(err)
		}
	}
	return Files{CAFile: p.ca, CertFile: cert, KeyFile: key}
}

func (p *pki) bundle(name string) *Bundle {
	p.t.Helper()
	b, err := Load(p.node(name), name, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// issue signs a certificate shaped by edit (starting from a valid node
// certificate for name) and writes it as name.pem / name-key.pem.
func (p *pki) issue(name string, edit func(*x509.Certificate)) Files {
	p.t.Helper()
	ca, caKey, err := loadCA(p.ca, p.key, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial, _ := newSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name, name + ".server." + DefaultDomain, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, kp := CertFiles(p.dir, name)
	if err := writePair(cert, der, kp, key); err != nil {
		p.t.Fatal(err)
	}
	return Files{CAFile: p.ca, CertFile: cert, KeyFile: kp}
}

// certOnly is a tls.Config that presents files' certificate and trusts
// nothing in particular (for clients that the server should reject).
func certOnly(t *testing.T, f Files) *tls.Config {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
}

type handshakeResult struct {
	serverErr, clientErr error
	clientCert           *x509.Certificate // what the server saw
	serverCert           *x509.Certificate // what the client saw
	serverState          tls.ConnectionState
}

// handshake runs one TLS connection over loopback: the server completes its
// handshake and writes one byte; the client handshakes and reads it (with
// TLS 1.3 a client learns that the server rejected its certificate only
// when it reads).
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Server(raw, server)
		if err := c.Handshake(); err != nil {
			res.serverErr = err
			return
		}
		res.serverState = c.ConnectionState()
		if pc := res.serverState.PeerCertificates; len(pc) > 0 {
			res.clientCert = pc[0]
		}
		_, res.serverErr = c.Write([]byte("k"))
	}()
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), client)
	if err != nil {
		res.clientErr = err
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if pc := c.ConnectionState().PeerCertificates; len(pc) > 0 {
			res.serverCert = pc[0]
		}
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err != nil {
			res.clientErr = err
		}
		c.Close()
	}
	<-done
	return res
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error lacks %q:\n%v", p, err)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(to); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
