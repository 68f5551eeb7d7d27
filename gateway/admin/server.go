// Package admin is the admin gateway of a node: the gRPC services of
// adminpb (authentication, cluster, sessions, audit, accounts) behind
// go-grpc-middleware interceptors, the same API as JSON over HTTP
// (grpc-gateway, OpenAPI document at /v1/openapi.json), and the web console,
// all on one listener (admin_bind).
//
// Contracts:
//
//   - Every method but Auth.Login authenticates the caller (a token from
//     Login, or an API client's name and secret) against the accounts
//     projection of this node, then authorizes it by role and tenant (the
//     rule of each method is in rules.go and docs/api.md). Refusals change
//     nothing.
//   - Requests are validated before they run; a bad request is refused with
//     INVALID_ARGUMENT (HTTP 400) and a google.rpc.BadRequest detail naming
//     every bad field.
//   - Callers are rate limited per client address, and logins more strictly;
//     over the limit a call gets RESOURCE_EXHAUSTED (HTTP 429).
//   - Reads answer from this node's projections; consistent = true first
//     waits until they include every change acknowledged in the cluster.
//   - Writes go through the entity grains (sessions, accounts), so every
//     change is an event in the log and appears in the audit view.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

// Config tunes the gateway.
type Config struct {
	// TokenTTL is how long a token from Login is valid.
	TokenTTL time.Duration
	// RequestsPerSecond and Burst limit the calls of one client address.
	RequestsPerSecond float64
	Burst             int
	// LoginsPerMinute and LoginBurst limit Login and ChangePassword calls
	// of one client address.
	LoginsPerMinute float64
	LoginBurst      int
	// PasswordParams hashes new passwords (auth.DefaultParams).
	PasswordParams sbauth.Params
	// MaxConcurrentHashes bounds password hashing at once (memory-hard:
	// each takes PasswordParams.Memory).
	MaxConcurrentHashes int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{TokenTTL: 8 * time.Hour, RequestsPerSecond: 50, Burst: 100, LoginsPerMinute: 10, LoginBurst: 5,
		PasswordParams: sbauth.DefaultParams, MaxConcurrentHashes: 2}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.TokenTTL < time.Minute || c.TokenTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("token_ttl: %s is outside 1m..168h", c.TokenTTL))
	}
	if c.RequestsPerSecond <= 0 || c.Burst < 1 {
		errs = append(errs, errors.New("rate limit: requests_per_second must be positive and burst at least 1"))
	}
	if c.LoginsPerMinute <= 0 || c.LoginBurst < 1 {
		errs = append(errs, errors.New("login rate limit: logins_per_minute must be positive and login_burst at least 1"))
	}
	if err := c.PasswordParams.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("password params: %w", err))
	}
	if c.MaxConcurrentHashes < 1 {
		errs = append(errs, errors.New("max_concurrent_hashes: must be at least 1"))
	}
	return errors.Join(errs...)
}

// Backend is what the gateway needs from the node. *NodeBackend implements
// it on a cluster node; tests may supply their own.
type Backend interface {
	NodeID() string
	// Views is this node's projection engine.
	Views() *projections.Engine
	// Call sends a command to an entity grain and returns its reply
	// (entity.Call semantics: typed *entity.Error for refusals).
	Call(ctx context.Context, kind, id string, cmd proto.Message) (proto.Message, error)
	// Cluster returns the live cluster view (members, leader, indexes).
	Cluster(ctx context.Context) (*adminpb.ClusterView, error)
	// Keys returns the token key ring, creating the first key in the log
	// if there is none; refresh re-reads the log (a token named a key this
	// node has not seen).
	Keys(ctx context.Context, refresh bool) (*sbauth.Keyring, error)
	// ReadEvent returns the event at a log position (audit details).
	ReadEvent(pos uint64) (events.RecordedEvent, bool, error)
}

// Server is the admin gateway.
type Server struct {
	cfg     Config
	b       Backend
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	limits  *limiter
	hashes  chan struct{}

	grpc   *grpc.Server
	pipe   *pipeListener
	conn   *grpc.ClientConn
	rest   *runtime.ServeMux
	http   http.Handler
	extra  *http.ServeMux
	closed sync.Once

	dummyOnce sync.Once
	dummy     string // see dummyHash

	adminpb.UnimplementedAuthServer
	adminpb.UnimplementedClusterServer
	adminpb.UnimplementedSessionsServer
	adminpb.UnimplementedAuditServer
	adminpb.UnimplementedAccountsServer
}

// New builds the gateway: the gRPC server with its interceptors and
// services, and the HTTP handler (gRPC, REST, OpenAPI, and whatever Handle
// adds, e.g. the console).
func New(cfg Config, b Backend, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admin: invalid configuration: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, b: b, log: logger.With("component", "admin"), now: time.Now,
		metrics: newMetrics(reg), hashes: make(chan struct{}, cfg.MaxConcurrentHashes)}
	s.limits = newLimiter(cfg, s.now)

	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
			s.metrics.unary,
			logging.UnaryServerInterceptor(slogAdapter(s.log), logging.WithLogOnEvents(logging.FinishCall)),
			ratelimit.UnaryServerInterceptor(s.limits),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.authenticate), selector.MatchFunc(needsAuth)),
			s.authorize,
			s.validate,
		),
		grpc.MaxRecvMsgSize(1<<20),
	)
	adminpb.RegisterAuthServer(s.grpc, s)
	adminpb.RegisterClusterServer(s.grpc, s)
	adminpb.RegisterSessionsServer(s.grpc, s)
	adminpb.RegisterAuditServer(s.grpc, s)
	adminpb.RegisterAccountsServer(s.grpc, s)

	// The REST gateway calls the gRPC server in-process (through the same
	// interceptors) over an in-memory listener.
	s.pipe = newPipeListener()
	go func() { _ = s.grpc.Serve(s.pipe) }()
	conn, err := grpc.NewClient("passthrough:///admin-inprocess", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.pipe.dial(ctx) }))
	if err != nil {
		s.grpc.Stop()
		return nil, fmt.Errorf("admin: in-process client: %w", err)
	}
	s.conn = conn
	s.rest = runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(restHeaders), runtime.WithForwardResponseOption(noStore))
	ctx := context.Background()
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		adminpb.RegisterAuthHandler, adminpb.RegisterClusterHandler, adminpb.RegisterSessionsHandler,
		adminpb.RegisterAuditHandler, adminpb.RegisterAccountsHandler,
	} {
		if err := reg(ctx, s.rest, conn); err != nil {
			s.Close()
			return nil, fmt.Errorf("admin: REST gateway: %w", err)
		}
	}
	s.extra = http.NewServeMux()
	s.extra.Handle("/v1/", s.restHandler())
	s.extra.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	s.http = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			s.grpc.ServeHTTP(w, r)
			return
		}
		s.extra.ServeHTTP(w, r)
	})
	return s, nil
}

// Handle adds an HTTP route (the console) to the gateway's handler.
func (s *Server) Handle(pattern string, h http.Handler) { s.extra.Handle(pattern, h) }

// Handler serves gRPC (HTTP/2, application/grpc), the REST API, the
// OpenAPI document and the routes added with Handle.
func (s *Server) Handler() http.Handler { return s.http }

// Conn returns an in-process client connection to the gateway's own gRPC
// server: calls through it pass every interceptor (the console uses it with
// the logged-in administrator's token).
func (s *Server) Conn() *grpc.ClientConn { return s.conn }

// GRPC returns the gRPC server (tests may serve it on their own listener).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Close stops the in-process server.
func (s *Server) Close() {
	s.closed.Do(func() {
		if s.conn != nil {
			s.conn.Close()
		}
		s.grpc.Stop()
		s.pipe.Close()
	})
}

// restHandler adds the client address to REST calls (the in-process gRPC
// peer is the pipe) and limits request bodies.
func (s *Server) restHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		r.Header.Del(headerClientAddr)
		r.Header.Set(headerClientAddr, r.RemoteAddr)
		s.rest.ServeHTTP(w, r)
	})
}

// headerClientAddr carries a REST caller's address to the in-process gRPC
// server; it is trusted only from the pipe.
const headerClientAddr = "X-Switchboard-Client-Addr"

func restHeaders(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "authorization":
		return "authorization", true
	case strings.ToLower(headerClientAddr):
		return strings.ToLower(headerClientAddr), true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// noStore keeps credentials and views out of caches.
func noStore(_ context.Context, w http.ResponseWriter, _ proto.Message) error {
	w.Header().Set("Cache-Control", "no-store")
	return nil
}

func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "admin call panicked", "panic", fmt.Sprint(p))
	s.metrics.panics.Inc()
	return status.Error(codes.Internal, "internal error (logged on the node)")
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
