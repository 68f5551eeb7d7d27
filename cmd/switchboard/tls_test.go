package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

// In a fresh directory, with the defaults: ca create, then cert create
// --node n1 give files that load as node n1.
func TestTLSCreateCAAndCertInWorkingDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var out bytes.Buffer
	if err := tlsCmd([]string{"ca", "create"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"switchboard-ca.pem", "switchboard-ca-key.pem", "switchboard tls cert create --node NAME"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ca create output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := tlsCmd([]string{"cert", "create", "--node", "n1", "--dns", "n1.example.com, extra", "--ip", "10.1.2.3"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"n1.pem", "n1-key.pem", "n1.example.com", "10.1.2.3", "tls.cert_file", `node_id must be "n1"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cert create output lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range []string{"switchboard-ca.pem", "switchboard-ca-key.pem", "n1.pem", "n1-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	b, err := tlsutil.Load(tlsutil.Files{CAFile: "switchboard-ca.pem", CertFile: "n1.pem", KeyFile: "n1-key.pem"}, "n1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Leaf().DNSNames; !strings.Contains(strings.Join(got, ","), "n1.example.com,extra") {
		t.Errorf("DNS SANs %v", got)
	}
	// Running it again overwrites nothing.
	err = tlsCmd([]string{"cert", "create", "--node", "n1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second cert create: %v", err)
	}
}

func TestTLSCreateWithDirAndDomain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out bytes.Buffer
	if err := tlsCmd([]string{"ca", "create", "--dir", dir, "--domain", "corp.example", "--days", "30", "--common-name", "Corp CA"}, &out); err != nil {
		t.Fatal(err)
	}
	if err := tlsCmd([]string{"cert", "create", "--dir", dir, "--node", "n2", "--days", "7"}, &out); err != nil {
		t.Fatal(err)
	}
	b, err := tlsutil.Load(tlsutil.Files{CAFile: filepath.Join(dir, "switchboard-ca.pem"), CertFile: filepath.Join(dir, "n2.pem"), KeyFile: filepath.Join(dir, "n2-key.pem")}, "n2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b.Domain() != "corp.example" || time.Until(b.NotAfter()) > 7*24*time.Hour {
		t.Errorf("domain %q, valid until %v", b.Domain(), b.NotAfter())
	}
}

func TestTLSCommandErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"cert", "create", "--dir", dir}, []string{"--node is required"}},
		{[]string{"cert", "create", "--node", "n1", "--ip", "nope,10.0.0.1", "--days", "0"}, []string{`--ip: "nope" is not an IP address`, "--days 0"}},
		{[]string{"cert", "create", "--node", "n1", "--dir", dir}, []string{"switchboard-ca.pem", "does not exist"}},
		{[]string{"ca", "create", "--bogus"}, []string{"tls ca create: flag provided but not defined: -bogus", "--help"}},
		{[]string{"ca", "create", "--dir", dir, "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"ca"}, []string{`expected "ca create" or "cert create"`, "Usage:"}},
		{nil, []string{`expected "ca create" or "cert create"`}},
		{[]string{"key", "create"}, []string{`got "key create"`}},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := tlsCmd(tc.args, &out)
		if err == nil {
			t.Errorf("%q: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error lacks %q:\n%v", tc.args, w, err)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed commands wrote %d files", len(entries))
	}
}

func TestTLSHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"ca", "create", "--help"}, {"cert", "create", "-h"}} {
		var out bytes.Buffer
		err := tlsCmd(args, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: %v, want flag.ErrHelp (exit 0)", args, err)
		}
		if !strings.Contains(out.String(), "Usage") {
			t.Errorf("%q printed no usage:\n%s", args, out.String())
		}
	}
	var out bytes.Buffer
	_ = tlsCmd([]string{"cert", "create", "--help"}, &out)
	for _, f := range []string{"-node", "-dir", "-ca", "-key", "-days", "-dns", "-ip", "-domain"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("cert create --help lacks %s", f)
		}
	}
}
