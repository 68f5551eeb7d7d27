package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

const tlsUsage = `Usage:
  switchboard tls ca create [flags]                 create the cluster CA (once per cluster)
  switchboard tls cert create --node NAME [flags]   create a node certificate signed by the CA (once per node)

Nodes talk to each other over mutual TLS with these files (keys tls.ca_file,
tls.cert_file, tls.key_file). Add --help to a command to list its flags.
`

// tlsCmd runs `switchboard tls ...`.
func tlsCmd(args []string, stdout io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, tlsUsage)
		return flag.ErrHelp
	}
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		return fmt.Errorf("tls: expected \"ca create\" or \"cert create\", got %q\n%s", strings.Join(args, " "), tlsUsage)
	}
	if args[0] == "ca" {
		return tlsCACreate(args[2:], stdout)
	}
	return tlsCertCreate(args[2:], stdout)
}

// parseFlags parses args; --help prints the flags to stdout and returns
// flag.ErrHelp; a bad flag gives an error that points at --help.
func parseFlags(fs *flag.FlagSet, synopsis string, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err != nil {
		return fmt.Errorf("%s: %w (see --help)", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see --help)", fs.Name(), fs.Arg(0))
	}
	return nil
}

func tlsCACreate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tls ca create", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory to write switchboard-ca.pem and switchboard-ca-key.pem into")
	cn := fs.String("common-name", tlsutil.DefaultCACommonName, "subject common name of the CA")
	days := fs.Int("days", tlsutil.DefaultCADays, "days the CA is valid")
	domain := fs.String("domain", tlsutil.DefaultDomain, "cluster domain; node certificates get the name NODE.server.DOMAIN")
	if err := parseFlags(fs, "switchboard tls ca create [flags]", args, stdout); err != nil {
		return err
	}
	if *days <= 0 {
		return fmt.Errorf("tls ca create: --days %d: must be a positive number of days", *days)
	}
	certPath, keyPath, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: *dir, CommonName: *cn, Days: *days, Domain: *domain})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `Created the cluster CA %q (domain %s), valid for %d days:
  certificate: %s  (copy to every node: tls.ca_file)
  key:         %s  (mode 0600; keep it secret, ideally offline: it is only needed to create node certificates)
Next: create a certificate for each node (its node_id) with this CA:
  switchboard tls cert create --node NAME --dir %s
`, *cn, *domain, *days, certPath, keyPath, *dir)
	return nil
}

func tlsCertCreate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tls cert create", flag.ContinueOnError)
	node := fs.String("node", "", "node name, the node_id of the node that will use the certificate (required)")
	dir := fs.String("dir", ".", "directory to write NODE.pem and NODE-key.pem into")
	ca := fs.String("ca", "", "CA certificate (default DIR/"+tlsutil.DefaultCACertFile+")")
	caKey := fs.String("key", "", "CA key (default DIR/"+tlsutil.DefaultCAKeyFile+")")
	days := fs.Int("days", tlsutil.DefaultCertDays, "days the certificate is valid (never beyond the CA)")
	dnsList := fs.String("dns", "", "extra DNS names, comma-separated (e.g. node1.example.com)")
	ipList := fs.String("ip", "", "extra IP addresses, comma-separated (e.g. 10.0.0.1); 127.0.0.1 is always included")
	domain := fs.String("domain", "", "cluster domain (default: the CA's, as given to tls ca create)")
	if err := parseFlags(fs, "switchboard tls cert create --node NAME [flags]", args, stdout); err != nil {
		return err
	}
	var problems []string
	if *node == "" {
		problems = append(problems, "--node is required: the node_id of the node that will use the certificate (e.g. --node n1)")
	}
	if *days <= 0 {
		problems = append(problems, fmt.Sprintf("--days %d: must be a positive number of days", *days))
	}
	ips, bad := parseIPs("--ip", *ipList)
	problems = append(problems, bad...)
	if len(problems) > 0 {
		return fmt.Errorf("tls cert create:\n  %s", strings.Join(problems, "\n  "))
	}
	certPath, keyPath, err := tlsutil.CreateCert(tlsutil.CertOptions{
		Dir: *dir, CAFile: *ca, CAKeyFile: *caKey, Node: *node, Days: *days,
		DNSNames: splitList(*dnsList), IPs: ips, Domain: *domain,
	})
	if err != nil {
		return err
	}
	caPath := *ca
	if caPath == "" {
		caPath = filepath.Join(*dir, tlsutil.DefaultCACertFile)
	}
	files := tlsutil.Files{CAFile: caPath, CertFile: certPath, KeyFile: keyPath}
	b, err := tlsutil.Load(files, *node, time.Now())
	if err != nil {
		return fmt.Errorf("tls cert create: the new certificate does not load: %w", err)
	}
	names := append([]string{}, b.Leaf().DNSNames...)
	for _, ip := range b.Leaf().IPAddresses {
		names = append(names, ip.String())
	}
	fmt.Fprintf(stdout, `Created the certificate of node %q, valid until %s:
  certificate: %s
  key:         %s  (mode 0600; keep it secret)
  names:       %s
Next: copy %s, %s and %s to node %s and set
  tls.ca_file   = %q
  tls.cert_file = %q
  tls.key_file  = %q
(node_id must be %q).
`, *node, b.NotAfter().UTC().Format("2006-01-02"), certPath, keyPath, strings.Join(names, ", "),
		filepath.Base(caPath), filepath.Base(certPath), filepath.Base(keyPath), *node,
		caPath, certPath, keyPath, *node)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseIPs parses a comma-separated list of IP addresses given as flag,
// returning one problem per entry that is not one.
func parseIPs(flag, list string) (ips []net.IP, problems []string) {
	for _, s := range splitList(list) {
		ip := net.ParseIP(s)
		if ip == nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not an IP address", flag, s))
			continue
		}
		ips = append(ips, ip)
	}
	return ips, problems
}
