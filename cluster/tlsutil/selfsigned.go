package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SelfSigned is a certificate generated for a listener people reach with a
// browser or the CLI (the admin console) when no certificate is configured.
type SelfSigned struct {
	CertFile, KeyFile string
	Cert              tls.Certificate
	// Fingerprint is the SHA-256 of the certificate (DER), hex, colon
	// separated: what a person compares with the browser's.
	Fingerprint string
	Created     bool
}

// EnsureSelfSigned loads dir/cert.pem and dir/key.pem, or creates them (an
// ECDSA P-256 certificate valid for two years for hosts: DNS names and IP
// addresses) when they do not exist or have expired.
func EnsureSelfSigned(dir string, hosts []string, now time.Time) (SelfSigned, error) {
	s := SelfSigned{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if c, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile); err == nil && c.Leaf != nil && now.Before(c.Leaf.NotAfter) {
		s.Cert, s.Fingerprint = c, Fingerprint(c.Leaf.Raw)
		return s, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("tlsutil: self-signed certificate in %s: %w (remove both files to get a new one)", dir, err)
	}
	for _, p := range []string{s.CertFile, s.KeyFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s, fmt.Errorf("tlsutil: replace expired self-signed certificate: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return s, fmt.Errorf("tlsutil: self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return s, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "switchboard admin " + strings.Join(hosts, " "), Organization: []string{"Switchboard (self-signed)"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return s, fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	if err := writePair(s.CertFile, der, s.KeyFile, key); err != nil {
		return s, fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return s, fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	s.Cert, s.Fingerprint, s.Created = c, Fingerprint(der), true
	return s, nil
}

// Fingerprint returns the colon-separated hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}
