package faultnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// tlsConfig returns a config usable on both sides: a self-signed
// certificate for 127.0.0.1 that is also the only trusted root, required
// from clients too.
func tlsConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "faultnet test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func newLayer(t testing.TB, cfg *tls.Config, opts ...TCPOption) *TCPStreamLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewTCPStreamLayer(ln, "", cfg, opts...)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// exchange dials to from `from`, sends a message each way and checks both.
// The accepting side reads at once, as raft's transport does: with TLS the
// server's handshake runs in that first Read.
func exchange(t testing.TB, from raft.StreamLayer, to *TCPStreamLayer) {
	t.Helper()
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			c, err := to.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitTimeout))
			buf := make([]byte, len("request"))
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
			if string(buf) != "request" {
				return fmt.Errorf("server read %q", buf)
			}
			_, err = c.Write([]byte("response"))
			return err
		}()
	}()
	c, err := from.Dial(raft.ServerAddress(to.Addr().String()), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, []byte("response"))
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestTCPStreamLayerPlain(t *testing.T) {
	a, b := newLayer(t, nil), newLayer(t, nil, WithLocalAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	exchange(t, b, a)
	exchange(t, a, b)
}

func TestTCPStreamLayerTLS(t *testing.T) {
	cfg := tlsConfig(t)
	a, b := newLayer(t, cfg), newLayer(t, cfg)
	exchange(t, b, a)

	// A plain client cannot talk to a TLS listener.
	plain := newLayer(t, nil)
	go func() {
		if c, err := a.Accept(); err == nil {
			io.Copy(io.Discard, c) // drives the failing handshake
			c.Close()
		}
	}()
	c, err := plain.Dial(raft.ServerAddress(a.Addr().String()), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("not a client hello"))
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(c); err != nil && isTimeout(err) {
		t.Fatal("TLS listener kept a plain connection open")
	}
}

// faultnet can sit above TLS (wrapping the stream layer) or below it
// (WithDialFunc); either way a partition stalls the traffic until Heal.
func TestTCPStreamLayerUnderFaultnet(t *testing.T) {
	cfg := tlsConfig(t)
	n := newNetwork(t)
	a := newLayer(t, cfg)
	n.Register("a", a.Addr().String())
	n.Register("b")
	below := newLayer(t, cfg, WithDialFunc(n.Dialer("b", nil)))
	above := n.StreamLayer("b", newLayer(t, cfg))

	for name, from := range map[string]raft.StreamLayer{"below TLS": below, "above TLS": above} {
		t.Run(name, func(t *testing.T) {
			n.Heal()
			exchange(t, from, a)

			n.Partition([]string{"a"}, []string{"b"})
			if c, err := from.Dial(raft.ServerAddress(a.Addr().String()), waitTimeout); err == nil {
				c.Close()
				t.Fatal("dial across a partition succeeded")
			} else if !strings.Contains(err.Error(), "faultnet: b -> a blocked") {
				t.Fatalf("dial error %q does not name the link", err)
			}
			n.Heal()
			exchange(t, from, a)
		})
	}
}

// Every problem with the arguments is reported at once.
func TestNewTCPStreamLayerValidates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewTCPStreamLayer(ln, "0.0.0.0:7000", &tls.Config{},
		WithLocalAddr(&net.TCPAddr{}), WithDialFunc((&net.Dialer{}).DialContext))
	if err == nil {
		t.Fatal("invalid arguments accepted")
	}
	for _, want := range []string{"unspecified host", "WithLocalAddr and WithDialFunc", "no certificate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Port 0 advertises the listener's port.
	l, err := NewTCPStreamLayer(ln, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Addr().String(), ln.Addr().String(); got != want {
		t.Fatalf("advertised %s, want the listener's %s", got, want)
	}
}
