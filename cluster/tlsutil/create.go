package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults of CreateCA and CreateCert.
const (
	DefaultCACertFile   = "switchboard-ca.pem"
	DefaultCAKeyFile    = "switchboard-ca-key.pem"
	DefaultCACommonName = "Switchboard CA"
	DefaultCADays       = 1825
	DefaultCertDays     = 365
	DefaultDomain       = "switchboard"
)

// backdate is how far NotBefore lies before the creation time, so that a
// peer whose clock is slightly behind accepts a fresh certificate.
const backdate = time.Minute

// domainOUPrefix marks the organizational unit in which a CA made by
// CreateCA records its cluster domain, so that CreateCert uses the same one.
const domainOUPrefix = "domain="

// CAOptions configures CreateCA. Zero values take the defaults.
type CAOptions struct {
	Dir        string // where to write the files (default "."; created if missing)
	CommonName string // subject common name (default "Switchboard CA")
	Days       int    // validity in days (default 1825)
	Domain     string // cluster domain recorded in the CA for CreateCert (default "switchboard")
}

// CertOptions configures CreateCert. Zero values take the defaults.
type CertOptions struct {
	Dir       string   // where to write the files (default "."; created if missing)
	CAFile    string   // CA certificate (default Dir/switchboard-ca.pem)
	CAKeyFile string   // CA key (default Dir/switchboard-ca-key.pem)
	Node      string   // node name (node_id); required, a DNS name
	Days      int      // validity in days (default 365; never beyond the CA's expiry)
	DNSNames  []string // extra DNS SANs
	IPs       []net.IP // extra IP SANs
	Domain    string   // cluster domain (default: the CA's, else "switchboard"); must match the CA's
}

// CertFiles returns the paths CreateCert writes for node in dir.
func CertFiles(dir, node string) (certPath, keyPath string) {
	return filepath.Join(dir, node+".pem"), filepath.Join(dir, node+"-key.pem")
}

// CreateCA creates a CA (ECDSA P-256) and writes switchboard-ca.pem and
// switchboard-ca-key.pem (mode 0600) into o.Dir. It refuses to overwrite
// either file.
func CreateCA(o CAOptions) (certPath, keyPath string, err error) {
	return createCA(o, time.Now())
}

func createCA(o CAOptions, now time.Time) (string, string, error) {
	if o.Dir == "" {
		o.Dir = "."
	}
	if o.CommonName == "" {
		o.CommonName = DefaultCACommonName
	}
	if o.Days == 0 {
		o.Days = DefaultCADays
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	var problems []string
	if o.Days < 0 {
		problems = append(problems, fmt.Sprintf("days: %d is not a positive number of days", o.Days))
	}
	if !validDNSName(o.Domain, false) {
		problems = append(problems, fmt.Sprintf("domain: %q is not a DNS name (e.g. switchboard or example.com)", o.Domain))
	}
	certPath := filepath.Join(o.Dir, DefaultCACertFile)
	keyPath := filepath.Join(o.Dir, DefaultCAKeyFile)
	problems = append(problems, refuseExisting(certPath, keyPath)...)
	if len(problems) > 0 {
		return "", "", fmt.Errorf("tlsutil: create CA:\n  %s", strings.Join(problems, "\n  "))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tlsutil: create CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         o.CommonName,
			Organization:       []string{"Switchboard"},
			OrganizationalUnit: []string{domainOUPrefix + o.Domain},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(0, 0, o.Days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs node certificates only, no intermediates
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return "", "", fmt.Errorf("tlsutil: create CA: sign: %w", err)
	}
	if err := writePair(certPath, der, keyPath, key); err != nil {
		return "", "", fmt.Errorf("tlsutil: create CA: %w", err)
	}
	return certPath, keyPath, nil
}

// CreateCert creates a node certificate (ECDSA P-256) signed by the CA and
// writes "<node>.pem" and "<node>-key.pem" (mode 0600) into o.Dir. Its DNS
// SANs are the node name, "<node>.server.<domain>", "localhost" and
// o.DNSNames; its IP SANs 127.0.0.1 and o.IPs; it is valid for server and
// client authentication. It refuses to overwrite either file.
func CreateCert(o CertOptions) (certPath, keyPath string, err error) {
	return createCert(o, time.Now())
}

func createCert(o CertOptions, now time.Time) (string, string, error) {
	if o.Dir == "" {
		o.Dir = "."
	}
	if o.CAFile == "" {
		o.CAFile = filepath.Join(o.Dir, DefaultCACertFile)
	}
	if o.CAKeyFile == "" {
		o.CAKeyFile = filepath.Join(o.Dir, DefaultCAKeyFile)
	}
	if o.Days == 0 {
		o.Days = DefaultCertDays
	}
	var problems []string
	switch {
	case o.Node == "":
		problems = append(problems, "node: must be set to the node's name (its node_id), e.g. --node n1")
	case !validDNSName(o.Node, false):
		problems = append(problems, fmt.Sprintf("node: %q is not a DNS name (letters, digits, '-' and '.'; it becomes a DNS SAN)", o.Node))
	}
	if o.Days < 0 {
		problems = append(problems, fmt.Sprintf("days: %d is not a positive number of days", o.Days))
	}
	for _, n := range o.DNSNames {
		if !validDNSName(n, true) {
			problems = append(problems, fmt.Sprintf("dns: %q is not a DNS name", n))
		}
	}
	for i, ip := range o.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			problems = append(problems, fmt.Sprintf("ip: entry %d is not an IP address", i+1))
		}
	}
	if o.Domain != "" && !validDNSName(o.Domain, false) {
		problems = append(problems, fmt.Sprintf("domain: %q is not a DNS name", o.Domain))
	}
	var certPath, keyPath string
	if o.Node != "" {
		certPath, keyPath = CertFiles(o.Dir, o.Node)
		problems = append(problems, refuseExisting(certPath, keyPath)...)
	}
	ca, caKey, err := loadCA(o.CAFile, o.CAKeyFile, now)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if ca != nil {
		caDomain := domainOf(ca)
		switch {
		case o.Domain == "" && caDomain != "":
			o.Domain = caDomain
		case o.Domain == "":
			o.Domain = DefaultDomain
		case caDomain != "" && !strings.EqualFold(o.Domain, caDomain):
			problems = append(problems, fmt.Sprintf("domain: %q differs from the CA's domain %q: all nodes must share one domain (leave --domain out)", o.Domain, caDomain))
		}
	}
	if len(problems) > 0 {
		return "", "", fmt.Errorf("tlsutil: create certificate:\n  %s", strings.Join(problems, "\n  "))
	}

	dns := appendUniqueFold(nil, o.Node, o.Node+".server."+o.Domain, "localhost")
	dns = appendUniqueFold(dns, o.DNSNames...)
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, ip := range o.IPs {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	notAfter := now.AddDate(0, 0, o.Days)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tlsutil: create certificate: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.Node + ".server." + o.Domain},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return "", "", fmt.Errorf("tlsutil: create certificate: sign: %w", err)
	}
	if err := writePair(certPath, der, keyPath, key); err != nil {
		return "", "", fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	return certPath, keyPath, nil
}

// loadCA reads a CA certificate and its key and checks that they belong
// together, that it is a CA and that it is valid at now.
func loadCA(certFile, keyFile string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	for _, k := range []struct{ flag, path string }{{"ca", certFile}, {"key", keyFile}} {
		if msg := checkFile(k.path, "the CA's "+k.flag+" file (switchboard tls ca create writes switchboard-ca.pem and switchboard-ca-key.pem)"); msg != "" {
			return nil, nil, fmt.Errorf("%s: %s", k.flag, msg)
		}
	}
	certs, err := readCerts(certFile, "CA certificate "+certFile, "a CA certificate (switchboard-ca.pem)")
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s", strings.TrimPrefix(err.Error(), "tlsutil: "))
	}
	ca := certs[0]
	if !ca.IsCA || !ca.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("ca: %s holds %s, which is not a CA certificate", certFile, describe(ca))
	}
	key, err := readKey(keyFile, "CA key "+keyFile, "the CA key (switchboard-ca-key.pem)")
	if err != nil {
		return nil, nil, fmt.Errorf("key: %s", strings.TrimPrefix(err.Error(), "tlsutil: "))
	}
	if pub, ok := ca.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("key: CA key %s does not match CA certificate %s", keyFile, certFile)
	}
	if now.Before(ca.NotBefore) || now.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("ca: CA certificate %s is valid only from %s to %s: create a new CA with switchboard tls ca create",
			certFile, ca.NotBefore.UTC().Format(timeFormat), ca.NotAfter.UTC().Format(timeFormat))
	}
	return ca, key, nil
}

// domainOf returns the domain a CA made by CreateCA records, or "".
func domainOf(ca *x509.Certificate) string {
	for _, ou := range ca.Subject.OrganizationalUnit {
		if d, ok := strings.CutPrefix(ou, domainOUPrefix); ok {
			return d
		}
	}
	return ""
}

func refuseExisting(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, fmt.Sprintf("%s already exists: refusing to overwrite it (move it away or choose another --dir)", p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			out = append(out, fmt.Sprintf("cannot check %s: %v", p, err))
		}
	}
	return out
}

// writePair writes the key (0600) and then the certificate (0644), each
// only if it does not exist yet; on failure it removes what it wrote.
func writePair(certPath string, der []byte, keyPath string, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew creates path with data; it fails if path exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite it", path)
		}
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// validDNSName reports whether s is a host name usable as a DNS SAN; with
// wildcard, a leading "*." label is allowed.
func validDNSName(s string, wildcard bool) bool {
	if wildcard {
		s = strings.TrimPrefix(s, "*.")
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func appendUniqueFold(dst []string, names ...string) []string {
	for _, n := range names {
		if !slices.ContainsFunc(dst, func(d string) bool { return strings.EqualFold(d, n) }) {
			dst = append(dst, n)
		}
	}
	return dst
}
