package admin

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// ParseNetworks parses CIDRs, reporting every bad one.
func ParseNetworks(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var bad []string
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			bad = append(bad, c)
			continue
		}
		out = append(out, p.Masked())
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("admin: not CIDRs: %q", bad)
	}
	return out, nil
}

// TrustedListener accepts only connections from the trusted networks; the
// others are closed at once (before TLS) and logged.
func TrustedListener(l net.Listener, trusted []netip.Prefix, logger *slog.Logger) net.Listener {
	return &trustedListener{Listener: l, trusted: trusted, log: logger}
}

type trustedListener struct {
	net.Listener
	trusted []netip.Prefix
	log     *slog.Logger
}

func (t *trustedListener) Accept() (net.Conn, error) {
	for {
		c, err := t.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if t.allowed(c.RemoteAddr()) {
			return c, nil
		}
		t.log.Warn("admin connection from an untrusted network refused", "component", "admin", "remote", c.RemoteAddr().String())
		c.Close()
	}
}

func (t *trustedListener) allowed(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range t.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
