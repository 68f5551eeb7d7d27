package tlsutil

import (
	"crypto/x509"
	"os"
	"testing"
	"time"
)

func TestEnsureSelfSignedCreatesOnceAndRenewsWhenExpired(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := EnsureSelfSigned(dir, []string{"localhost", "127.0.0.1"}, now)
	if err != nil || !a.Created {
		t.Fatalf("first: %+v %v", a, err)
	}
	leaf, _ := x509.ParseCertificate(a.Cert.Certificate[0])
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(a.KeyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	b, err := EnsureSelfSigned(dir, []string{"localhost"}, now.Add(time.Hour))
	if err != nil || b.Created || b.Fingerprint != a.Fingerprint {
		t.Fatalf("second start must reuse: %+v %v", b, err)
	}
	c, err := EnsureSelfSigned(dir, []string{"localhost"}, now.Add(3*365*24*time.Hour))
	if err != nil || !c.Created || c.Fingerprint == a.Fingerprint {
		t.Fatalf("expired must be replaced: %+v %v", c, err)
	}
	os.WriteFile(c.CertFile, []byte("garbage"), 0o644)
	if _, err := EnsureSelfSigned(dir, []string{"localhost"}, now); err == nil {
		t.Fatal("a corrupt certificate must be reported, not replaced silently")
	}
}
