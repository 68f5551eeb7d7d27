package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/cluster"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/gateway/admin"
	"github.com/switchboard-io/switchboard/gateway/console"
	"github.com/switchboard-io/switchboard/projections"
)

// AdminConfig holds the admin.* keys (the admin API and console on
// admin_bind).
type AdminConfig struct {
	TLSCertFile     string        `conf:"tls_cert_file" help:"PEM certificate (chain) of the admin console and API (default: a self-signed one created at first start in data_dir/admin-tls, its fingerprint printed)"`
	TLSKeyFile      string        `conf:"tls_key_file" help:"PEM private key of admin.tls_cert_file"`
	Plaintext       bool          `conf:"plaintext" help:"serve the admin console and API over plain HTTP (only behind a TLS-terminating proxy on the same host)"`
	TrustedNetworks []string      `conf:"trusted_networks" help:"CIDRs allowed to connect to admin_bind, comma-separated; others are disconnected at once"`
	TokenTTL        time.Duration `conf:"token_ttl" help:"how long an administrator's login lasts"`
	LoginsPerMinute float64       `conf:"logins_per_minute" help:"logins and password changes per client address per minute"`
	RequestsPerSec  float64       `conf:"requests_per_second" help:"admin API calls per client address per second"`
}

func defaultAdminConfig() AdminConfig {
	d := admin.DefaultConfig()
	return AdminConfig{TrustedNetworks: []string{"127.0.0.0/8", "::1/128"}, TokenTTL: d.TokenTTL,
		LoginsPerMinute: d.LoginsPerMinute, RequestsPerSec: d.RequestsPerSecond}
}

func (a AdminConfig) gatewayConfig() admin.Config {
	c := admin.DefaultConfig()
	c.TokenTTL, c.LoginsPerMinute, c.RequestsPerSecond = a.TokenTTL, a.LoginsPerMinute, a.RequestsPerSec
	return c
}

// problems lists every bad admin.* key.
func (a AdminConfig) problems() []string {
	errs := listenerTLSProblems("admin", a.TLSCertFile, a.TLSKeyFile, a.Plaintext)
	if len(a.TrustedNetworks) == 0 {
		errs = append(errs, "admin.trusted_networks: empty: nobody could connect (e.g. 127.0.0.0/8,::1/128)")
	}
	for _, n := range a.TrustedNetworks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			errs = append(errs, fmt.Sprintf("admin.trusted_networks: %q is not a CIDR (e.g. 10.0.0.0/8)", n))
		}
	}
	if err := a.gatewayConfig().Validate(); err != nil {
		errs = append(errs, fmt.Sprintf("admin: %v", err))
	}
	return errs
}

// adminServer is the running admin listener.
type adminServer struct {
	gw    *admin.Server
	http  *http.Server
	views *projections.Engine
	url   string
	fp    string // fingerprint of a self-signed certificate ("" otherwise)
	certF string
}

// openViews opens the node's projections (data_dir/views).
func openViews(cfg ServeConfig, node *cluster.Node, logger *slog.Logger, reg prometheus.Registerer) (*projections.Engine, error) {
	e, err := projections.Open(projections.Config{Dir: filepath.Join(cfg.DataDir, "views"), Logger: logger, Registerer: reg},
		projections.NodeSource(node.Log), projections.Sessions{}, projections.Audit{}, projections.Accounts{})
	if err != nil {
		return nil, err
	}
	e.Start()
	return e, nil
}

// startAdmin serves the admin API and console on l.
func startAdmin(cfg ServeConfig, node *cluster.Node, views *projections.Engine, l net.Listener, logger *slog.Logger, reg prometheus.Registerer) (*adminServer, error) {
	gw, err := admin.New(cfg.Admin.gatewayConfig(), admin.NewNodeBackend(node, views), logger, reg)
	if err != nil {
		return nil, err
	}
	con, err := console.New(console.Config{Plaintext: cfg.Admin.Plaintext}, gw, logger)
	if err != nil {
		gw.Close()
		return nil, err
	}
	gw.Handle("/", con.Handler())
	a := &adminServer{gw: gw, views: views}
	trusted, _ := admin.ParseNetworks(cfg.Admin.TrustedNetworks)
	ln := admin.TrustedListener(l, trusted, logger)
	a.http = &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	scheme := "https"
	if cfg.Admin.Plaintext {
		scheme = "http"
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true) // gRPC without TLS
		a.http.Protocols = &p
		logger.Warn("admin console and API without TLS (admin.plaintext)", "component", "serve")
	} else {
		var cert tls.Certificate
		if cfg.Admin.TLSCertFile != "" {
			if cert, err = tls.LoadX509KeyPair(cfg.Admin.TLSCertFile, cfg.Admin.TLSKeyFile); err != nil {
				gw.Close()
				return nil, fmt.Errorf("admin.tls_cert_file: %w", err)
			}
		} else {
			host, _ := os.Hostname()
			ss, err := tlsutil.EnsureSelfSigned(filepath.Join(cfg.DataDir, "admin-tls"), []string{"localhost", "127.0.0.1", "::1", host, hostOnly(l.Addr().String())}, time.Now())
			if err != nil {
				gw.Close()
				return nil, err
			}
			cert, a.fp, a.certF = ss.Cert, ss.Fingerprint, ss.CertFile
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"},
			CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
			}}
		ln = tls.NewListener(ln, tc)
	}
	a.url = scheme + "://" + l.Addr().String() + "/"
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin server stopped", "component", "serve", "err", err)
		}
	}()
	return a, nil
}

func hostOnly(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// bootstrapAdmin creates the first administrator once the node is ready and
// prints its one-time credential (only on the node that created it).
func (a *adminServer) bootstrapAdmin(ctx context.Context, node *cluster.Node, dataDir string, stdout io.Writer, logger *slog.Logger) {
	credFile := filepath.Join(dataDir, "admin-credential")
	for ctx.Err() == nil && node.Ready() != nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		pw, err := a.gw.Bootstrap(bctx, credFile)
		cancel()
		if err == nil {
			if pw != "" {
				fmt.Fprintf(stdout, "  admin:   first administrator %q, one-time password (shown once; also in %s, mode 0600;\n"+
					"           the first login must change it):\n             %s\n", admin.FirstAdmin, credFile, pw)
			} else if _, err := os.Stat(credFile); err == nil {
				fmt.Fprintf(stdout, "  admin:   the first administrator's one-time password is in %s (delete the file once it is changed)\n", credFile)
			}
			return
		}
		logger.Warn("cannot bootstrap the first administrator yet; retrying", "component", "serve", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (a *adminServer) shutdown(ctx context.Context) {
	_ = a.http.Shutdown(ctx)
	a.gw.Close()
}
