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
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/cluster"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/sessionedge"
	"github.com/switchboard-io/switchboard/projections"
)

// listenerTLSProblems checks the <section>.tls_cert_file, tls_key_file and
// plaintext keys of a client-facing listener.
func listenerTLSProblems(section, certFile, keyFile string, plaintext bool) []string {
	var errs []string
	if (certFile == "") != (keyFile == "") {
		errs = append(errs, fmt.Sprintf("%[1]s.tls_cert_file, %[1]s.tls_key_file: set both or neither", section))
	}
	if certFile != "" && keyFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			errs = append(errs, fmt.Sprintf("%[1]s.tls_cert_file %[2]s / %[1]s.tls_key_file %[3]s: %[4]v", section, certFile, keyFile, err))
		}
	}
	if plaintext && certFile != "" {
		errs = append(errs, fmt.Sprintf("%[1]s.plaintext: true contradicts %[1]s.tls_cert_file (remove one)", section))
	}
	return errs
}

// problems lists every bad session.* key.
func (s SessionConfig) problems() []string {
	errs := listenerTLSProblems("session", s.TLSCertFile, s.TLSKeyFile, s.Plaintext)
	if s.SweepInterval < time.Second/10 {
		errs = append(errs, fmt.Sprintf("session.sweep_interval: %s is below 100ms (e.g. 30s)", s.SweepInterval))
	}
	if len(s.HostTokens) > 0 {
		if _, err := sessionedge.ParseHostTokens(s.HostTokens); err != nil {
			errs = append(errs, fmt.Sprintf("session.host_tokens: %v", err))
		}
	}
	cfg := sessionedge.DefaultConfig()
	cfg.NodeID, cfg.HostTokens = "x", &sessionedge.HostTokens{}
	cfg.AllowedOrigins, cfg.MaxConnections, cfg.Heartbeat = s.AllowedOrigins, s.MaxConnections, s.Heartbeat
	cfg.IsolationGrace = s.IsolationGrace
	if err := cfg.Validate(); err != nil {
		var j interface{ Unwrap() []error }
		if errors.As(err, &j) {
			for _, e := range j.Unwrap() {
				errs = append(errs, e.Error())
			}
		} else {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// edgeNode adapts a cluster node to what the session edge needs.
type edgeNode struct{ n *cluster.Node }

func (a edgeNode) Cluster() *pcluster.Cluster { return a.n.Cluster() }
func (a edgeNode) ReadStream(ctx context.Context, stream string, from uint64, max int, consistent bool) ([]events.RecordedEvent, error) {
	return a.n.Log.ReadStream(ctx, stream, from, max, consistent)
}
func (a edgeNode) Watch() (<-chan struct{}, func()) { return a.n.Members.Watch() }
func (a edgeNode) Healthy() error                   { return a.n.Ready() }
func (a edgeNode) Topology() string {
	var b strings.Builder
	for _, m := range a.n.Members.Routable() {
		if m.ActorSystemID != "" {
			b.WriteString(m.NodeID + "/" + m.ActorSystemID + ",")
		}
	}
	return b.String()
}

// sessionTLS is the TLS configuration clients see: Mozilla's "intermediate"
// profile (TLS 1.2+, AEAD suites) with the configured certificate or the
// node's own.
func sessionTLS(cfg SessionConfig, nodeCert []tls.Certificate) (*tls.Config, error) {
	certs := nodeCert
	if cfg.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("session.tls_cert_file: %w", err)
		}
		certs = []tls.Certificate{c}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: certs,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
		},
		NextProtos: []string{"http/1.1"},
	}, nil
}

// hostTokens returns the configured host tokens, or the node's own (created
// at first start; the clear token is returned once, as created).
func hostTokens(cfg ServeConfig) (t *sessionedge.HostTokens, created, file string, err error) {
	entries := cfg.Session.HostTokens
	if len(entries) == 0 {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, "", "", fmt.Errorf("data_dir: %w", err)
		}
		file = filepath.Join(cfg.DataDir, "session-host-token")
		entry, c, err := sessionedge.EnsureHostToken(file, "supporter")
		if err != nil {
			return nil, "", "", err
		}
		entries, created = []string{entry}, c
	}
	t, err = sessionedge.ParseHostTokens(entries)
	if err != nil {
		return nil, "", "", fmt.Errorf("session.host_tokens: %w", err)
	}
	return t, created, file, nil
}

// startSessionEdge serves the session WebSocket endpoint on l.
func startSessionEdge(cfg ServeConfig, node *cluster.Node, l net.Listener, nodeCerts []tls.Certificate, tokens *sessionedge.HostTokens,
	accounts sessionedge.HostAuthenticator, logger *slog.Logger, reg prometheus.Registerer) (*sessionedge.Edge, *http.Server, error) {
	ec := sessionedge.DefaultConfig()
	ec.NodeID, ec.HostTokens, ec.Accounts, ec.Logger, ec.Registerer = cfg.NodeID, tokens, accounts, logger, reg
	ec.AllowedOrigins, ec.MaxConnections, ec.Heartbeat = cfg.Session.AllowedOrigins, cfg.Session.MaxConnections, cfg.Session.Heartbeat
	ec.IsolationGrace = cfg.Session.IsolationGrace
	edge, err := sessionedge.New(ec, edgeNode{node})
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: edge.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	if !cfg.Session.Plaintext {
		tc, err := sessionTLS(cfg.Session, nodeCerts)
		if err != nil {
			_ = edge.Shutdown(context.Background())
			return nil, nil, err
		}
		// TLS in the listener (not ServeTLS) so that the edge's listener
		// wraps the TLS connection and can send bursts as one write.
		ln := edge.Listener(tls.NewListener(l, tc))
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("session server stopped", "component", "serve", "err", err)
			}
		}()
	} else {
		logger.Warn("session endpoint without TLS (session.plaintext): only behind a TLS-terminating proxy", "component", "serve")
		ln := edge.Listener(l)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("session server stopped", "component", "serve", "err", err)
			}
		}()
	}
	return edge, srv, nil
}

func printHostToken(w io.Writer, created, file string) {
	if created == "" {
		if file != "" {
			fmt.Fprintf(w, "  hosts:   token in %s (hashed; delete the file and restart for a new one)\n", file)
		}
		return
	}
	fmt.Fprintf(w, "  hosts:   one-time host token (shown once; stored hashed in %s):\n             %s\n", file, created)
}

// sweepSessions ends, every interval and only while this node leads Raft,
// the sessions its projection sees past their expiry or idle timeout. The
// edges sweep the sessions their clients are connected to; this catches the
// ones nobody is connected to any more. The grain decides: Expire on a
// session that is not due writes nothing.
func sweepSessions(ctx context.Context, node *cluster.Node, views *projections.Engine, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !node.Log.IsLeader() || node.Cluster() == nil {
			continue
		}
		due, err := views.DueSessions(time.Now(), 1000)
		if err != nil {
			logger.Warn("session sweep: cannot read the sessions view", "component", "sweep", "err", err)
			continue
		}
		for _, code := range due {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := entity.CallOn(cctx, node, session.Kind, code, &sessionpb.Expire{}, entity.Idempotent(time.Second))
			cancel()
			if err != nil && ctx.Err() == nil {
				logger.Warn("session sweep: expire failed", "component", "sweep", "session", code, "err", err)
			}
		}
		if len(due) > 0 {
			logger.Debug("session sweep", "component", "sweep", "due", len(due))
		}
	}
}
