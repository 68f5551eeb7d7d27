package tlsutil

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Bundle is a loaded, checked node identity: the CA pool, the node's
// certificate and key, and the node's name. It is immutable and safe for
// concurrent use; the configurations it returns are fresh on every call.
// (Reloading certificates without a restart can later wrap a Bundle behind
// tls.Config.GetCertificate / GetClientCertificate.)
type Bundle struct {
	node     string
	domain   string // from the node's "<node>.server.<domain>" SAN; "" when it has none
	pool     *x509.CertPool
	cert     tls.Certificate
	leaf     *x509.Certificate
	notAfter time.Time
}

const timeFormat = "2006-01-02 15:04:05 MST"

// Load reads the files and checks them at time now: the files exist and
// parse; tls.ca_file holds only CA certificates; the key matches the
// certificate; the certificate is signed by the CA; it is valid at now; its
// extended key usage allows both server and client authentication; and it
// names nodeName as a DNS SAN. Every error names the file and says how to
// fix it; independent problems of the certificate (dates, usage, name,
// signer) are reported together.
func Load(f Files, nodeName string, now time.Time) (*Bundle, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if nodeName == "" {
		return nil, errors.New("tlsutil: node name is empty: set node_id")
	}
	caLabel := "CA certificate tls.ca_file=" + f.CAFile
	certLabel := "certificate tls.cert_file=" + f.CertFile
	keyLabel := "key tls.key_file=" + f.KeyFile
	createHint := "create one with switchboard tls cert create --node " + nodeName

	cas, err := readCerts(f.CAFile, caLabel, "the CA certificate (switchboard-ca.pem from switchboard tls ca create)")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("tlsutil: %s holds %s, which is not a CA certificate: tls.ca_file must name the CA certificate (switchboard-ca.pem), not a node certificate", caLabel, describe(c))
		}
		pool.AddCert(c)
	}
	chain, err := readCerts(f.CertFile, certLabel, "the node certificate ("+nodeName+".pem from switchboard tls cert create --node "+nodeName+")")
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	key, err := readKey(f.KeyFile, keyLabel, "the node's key ("+nodeName+"-key.pem)")
	if err != nil {
		return nil, err
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("tlsutil: %s does not match %s: use the key created together with the certificate (%s-key.pem next to %s.pem), or %s",
			keyLabel, certLabel, nodeName, nodeName, createHint)
	}

	var problems []error
	if now.Before(leaf.NotBefore) {
		problems = append(problems, fmt.Errorf("%s is not valid until %s: check this machine's clock, or %s",
			certLabel, leaf.NotBefore.UTC().Format(timeFormat), createHint))
	}
	if now.After(leaf.NotAfter) {
		problems = append(problems, fmt.Errorf("%s expired on %s: %s", certLabel, leaf.NotAfter.UTC().Format(timeFormat), createHint))
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	// The signature is checked at a time inside the leaf's validity so that
	// an expired leaf is reported once, above, and not as a chain problem.
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	} else if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: intermediates, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr != nil {
		var ua x509.UnknownAuthorityError
		var inv x509.CertificateInvalidError
		switch {
		case errors.As(verr, &ua):
			problems = append(problems, fmt.Errorf("%s is not signed by the CA in tls.ca_file=%s (it was issued by %q): create it with switchboard tls cert create --node %s using that CA, or set tls.ca_file to the CA that signed it",
				certLabel, f.CAFile, leaf.Issuer.String(), nodeName))
		case errors.As(verr, &inv) && inv.Reason == x509.Expired && inv.Cert != leaf:
			problems = append(problems, fmt.Errorf("%s: %s is not valid at %s (valid %s to %s): create a new CA (switchboard tls ca create) and new node certificates",
				caLabel, describe(inv.Cert), now.UTC().Format(timeFormat), inv.Cert.NotBefore.UTC().Format(timeFormat), inv.Cert.NotAfter.UTC().Format(timeFormat)))
		default:
			problems = append(problems, fmt.Errorf("%s does not verify against tls.ca_file=%s: %w", certLabel, f.CAFile, verr))
		}
	} else {
		for _, c := range chains[0][1:] {
			if now.After(c.NotAfter) {
				problems = append(problems, fmt.Errorf("%s: %s expired on %s: create a new CA (switchboard tls ca create) and new node certificates",
					caLabel, describe(c), c.NotAfter.UTC().Format(timeFormat)))
			}
		}
	}
	for _, u := range []struct {
		eku  x509.ExtKeyUsage
		name string
	}{{x509.ExtKeyUsageServerAuth, "server"}, {x509.ExtKeyUsageClientAuth, "client"}} {
		if !hasEKU(leaf, u.eku) {
			problems = append(problems, fmt.Errorf("%s is not valid for %s authentication (extended key usage: %s): a node certificate must allow both server and client auth: %s",
				certLabel, u.name, ekuNames(leaf), createHint))
		}
	}
	if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, nodeName) }) {
		problems = append(problems, fmt.Errorf("%s is for %v, not for node %q: %s", certLabel, leaf.DNSNames, nodeName, createHint))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("tlsutil: %w", err)
	}

	b := &Bundle{
		node: nodeName,
		pool: pool,
		cert: tls.Certificate{Certificate: derChain(chain), PrivateKey: key, Leaf: leaf},
		leaf: leaf,
	}
	b.notAfter = leaf.NotAfter
	for _, c := range chains[0] {
		if c.NotAfter.Before(b.notAfter) {
			b.notAfter = c.NotAfter
		}
	}
	suffix := strings.ToLower(nodeName) + ".server."
	for _, n := range leaf.DNSNames {
		if d, ok := strings.CutPrefix(strings.ToLower(n), suffix); ok && d != "" {
			b.domain = d
			break
		}
	}
	return b, nil
}

// NodeName is the node this identity belongs to.
func (b *Bundle) NodeName() string { return b.node }

// Domain is the cluster domain taken from the node certificate's
// "<node>.server.<domain>" DNS SAN, or "" if it has none (see PeerConfig).
func (b *Bundle) Domain() string { return b.domain }

// NotAfter is when this identity stops working: the earliest expiry of the
// node certificate and the chain that verifies it.
func (b *Bundle) NotAfter() time.Time { return b.notAfter }

// Leaf is the node certificate, for diagnostics. Callers must not modify it.
func (b *Bundle) Leaf() *x509.Certificate { return b.leaf }

func (b *Bundle) base() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{b.cert},
		VerifyConnection: b.verifyNode,
	}
}

// ServerConfig is for a listener of node-to-node traffic: it presents the
// node certificate and requires the client to present a node certificate
// signed by the CA (RequireAndVerifyClientCert against the CA pool, client
// auth usage, and the node certificate checks of PeerConfig). TLS 1.3 only.
func (b *Bundle) ServerConfig() *tls.Config {
	c := b.base()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = b.pool
	return c
}

// ClientConfig is for dialing a node whose name is known: it verifies the
// server's certificate against the CA pool and serverName (a node name, or
// an address in its SANs) and presents the node certificate. TLS 1.3 only.
func (b *Bundle) ClientConfig(serverName string) *tls.Config {
	c := b.base()
	c.RootCAs = b.pool
	c.ServerName = serverName
	return c
}

// PeerConfig is for transports that use one configuration on both ends and
// whose dialer knows only an address (raft's stream layer, e.g.
// faultnet.NewTCPStreamLayer; protoactor remote): it is ServerConfig plus a
// client side that accepts any node certificate signed by the CA, whatever
// the address dialed.
//
// Why that is enough: every node shares the one cluster CA, and the CA signs
// node certificates only (a separate CA, or at least a different usage and
// name, is expected for anything else such as device certificates). A peer is
// accepted when its chain verifies against the CA pool for BOTH server and
// client auth and it carries a DNS SAN "<node>.server.<domain>" of this
// node's domain; this keeps out a certificate of the same CA that was made
// for something else. Which node it is, is checked by name where the caller
// knows it (ClientConfig, or PeerNode on the connection state). If this
// node's own certificate has no "<node>.server.<domain>" SAN (one not made by
// switchboard tls cert create), the name form is not checked and the chain
// and usages alone decide.
//
// The client side sets InsecureSkipVerify only to replace crypto/tls's host
// name check, which cannot work with addresses that are not in the
// certificate; VerifyConnection does the full chain verification instead.
func (b *Bundle) PeerConfig() *tls.Config {
	c := b.ServerConfig()
	c.RootCAs = b.pool
	c.InsecureSkipVerify = true // chain, usages and name form verified in VerifyConnection
	return c
}

// PeerNode returns the node name in the peer's "<node>.server.<domain>" SAN,
// for a connection made with one of the Bundle's configurations. It reports
// false when the peer sent no certificate or it has no such name.
func (b *Bundle) PeerNode(cs tls.ConnectionState) (string, bool) {
	if len(cs.PeerCertificates) == 0 || b.domain == "" {
		return "", false
	}
	suffix := ".server." + b.domain
	for _, n := range cs.PeerCertificates[0].DNSNames {
		if len(n) > len(suffix) && strings.EqualFold(n[len(n)-len(suffix):], suffix) {
			return n[:len(n)-len(suffix)], true
		}
	}
	return "", false
}

// verifyNode is the VerifyConnection of every configuration: the peer's
// certificate must chain to the CA pool for both server and client auth and,
// when the domain is known, carry a "<node>.server.<domain>" SAN.
func (b *Bundle) verifyNode(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsutil: peer presented no certificate: nodes must present a node certificate signed by the cluster CA")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			return fmt.Errorf("tlsutil: peer certificate %s is not a node certificate of the cluster CA: %w", describe(leaf), err)
		}
	}
	if b.domain != "" {
		if _, ok := b.PeerNode(cs); !ok {
			return fmt.Errorf("tlsutil: peer certificate %s (DNS names %v) is not a node certificate: it has no <node>.server.%s name", describe(leaf), leaf.DNSNames, b.domain)
		}
	}
	return nil
}

// readCerts reads every CERTIFICATE block of a PEM file; there must be one.
func readCerts(path, label, what string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %s: %w", label, err)
	}
	var certs []*x509.Certificate
	var other []string
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			other = append(other, blk.Type)
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: %s: certificate %d does not parse: %w: it must be %s", label, len(certs)+1, err, what)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(other) > 0 {
			return nil, fmt.Errorf("tlsutil: %s holds %s but no CERTIFICATE: it must be %s (are two files swapped?)", label, strings.Join(other, ", "), what)
		}
		return nil, fmt.Errorf("tlsutil: %s holds no PEM data: it must be %s", label, what)
	}
	return certs, nil
}

// readKey reads the private key of a PEM file (PKCS#8, SEC 1 or PKCS#1).
func readKey(path, label, what string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %s: %w", label, err)
	}
	var types []string
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			types = append(types, blk.Type)
			continue
		}
		if blk.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(blk.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("tlsutil: %s is encrypted: switchboard needs an unencrypted key file, readable only by the user switchboard runs as", label)
		}
		k, err := parseKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: %s: %w", label, err)
		}
		return k, nil
	}
	if len(types) > 0 {
		return nil, fmt.Errorf("tlsutil: %s holds %s but no PRIVATE KEY: it must be %s (are two files swapped?)", label, strings.Join(types, ", "), what)
	}
	return nil, fmt.Errorf("tlsutil: %s holds no PEM data: it must be %s", label, what)
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("private key does not parse (expected PKCS#8, SEC 1 EC or PKCS#1 RSA)")
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true // no restriction: valid for any usage (RFC 5280, as crypto/x509 verifies)
	}
	return slices.Contains(c.ExtKeyUsage, want) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func ekuNames(c *x509.Certificate) string {
	var out []string
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "server auth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "client auth")
		default:
			out = append(out, fmt.Sprintf("usage %d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return strings.Join(out, ", ")
}

// describe names a certificate in messages.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", c.Subject.String(), c.SerialNumber.Text(16))
}

func derChain(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}
