// Package tlsutil loads and creates the certificates of node-to-node mutual
// TLS: Raft (through a raft.StreamLayer such as faultnet.TCPStreamLayer),
// gRPC log forwarding and protoactor remote all run over it.
//
// Every node holds three PEM files: the cluster CA certificate (shared by all
// nodes), its own node certificate and the node certificate's key. A node
// certificate is signed by the CA, is valid for both server and client
// authentication, and names its node as DNS SANs: "<node>" and
// "<node>.server.<domain>" (the latter is how a peer recognises a node
// certificate, see Bundle.PeerConfig). CreateCA and CreateCert make such files
// in the style of `consul tls ca create` / `consul tls cert create`; EnsureDev
// makes a throw-away set for development.
//
// Load checks the files once and reports, in words an operator can act on,
// what is wrong and how to fix it. The configurations a Bundle returns require
// TLS 1.3 and a certificate from the peer on both ends.
package tlsutil

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Files names the PEM files of one node. The conf tags let a server
// configuration embed it (e.g. as `conf:"tls"`, giving tls.ca_file, ...).
type Files struct {
	CAFile   string `conf:"ca_file" help:"PEM file of the cluster CA certificate (switchboard tls ca create)"`
	CertFile string `conf:"cert_file" help:"PEM file of this node's certificate (switchboard tls cert create --node NAME)"`
	KeyFile  string `conf:"key_file" help:"PEM file of this node's private key"`
}

// Validate reports every problem at once, naming the key: a path that is
// empty, names no file, names a directory or cannot be read.
func (f Files) Validate() error {
	var errs []string
	for _, k := range []struct{ key, path, fix string }{
		{"tls.ca_file", f.CAFile, "the CA certificate, e.g. switchboard-ca.pem from switchboard tls ca create"},
		{"tls.cert_file", f.CertFile, "the node certificate, e.g. n1.pem from switchboard tls cert create --node n1"},
		{"tls.key_file", f.KeyFile, "the node key, e.g. n1-key.pem from switchboard tls cert create --node n1"},
	} {
		if msg := checkFile(k.path, k.fix); msg != "" {
			errs = append(errs, k.key+": "+msg)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tlsutil: invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// checkFile returns what is wrong with path, or "".
func checkFile(path, fix string) string {
	if path == "" {
		return "must be set to the path of " + fix
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("file %q does not exist: set the path of %s", path, fix)
	case err != nil:
		return fmt.Sprintf("cannot read %q: %v", path, err)
	case st.IsDir():
		return fmt.Sprintf("%q is a directory: set the path of %s", path, fix)
	}
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("cannot read %q: %v", path, err)
	}
	fh.Close()
	return ""
}

// LoadCAPool reads the PEM certificates in path into a new pool, for clients
// that verify servers against a CA. It fails when the file cannot be read or
// holds no PEM certificate.
func LoadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate in the file", path)
	}
	return pool, nil
}
