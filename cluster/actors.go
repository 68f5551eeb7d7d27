package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// ActorsConfig configures the node's protoactor actor system.
type ActorsConfig struct {
	// Bind is the host:port of the protoactor remote listener; Advertise the
	// address peers dial (default Bind).
	Bind, Advertise string
	// Kinds are the grain kinds this node hosts.
	Kinds []*pcluster.Kind
	// LookupTimeout bounds one activation request to a grain's owner.
	LookupTimeout time.Duration
	// RequestTimeout is protoactor's default grain request timeout.
	RequestTimeout time.Duration
	// ServerOptions and DialOptions carry transport credentials (mutual TLS
	// in production). Default: insecure (tests on loopback).
	ServerOptions []grpc.ServerOption
	DialOptions   []grpc.DialOption
	// EndpointPatience bounds how long a connection to a peer's actor
	// system waits for the peer's address to answer before protoactor
	// gives it up (endpointDialOptions). Default DefaultEndpointPatience;
	// negative: no waiting (protoactor's own behaviour).
	EndpointPatience time.Duration
	Logger           *slog.Logger
	// ActorLogLevel is the minimum level of protoactor's own log records
	// (it logs every dead letter at Info). Default: Warn.
	ActorLogLevel slog.Level
	// OnActivations reports the number of local activations (metrics).
	OnActivations func(int)
}

// Actors is a running actor system joined to the cluster.
type Actors struct {
	System   *actor.ActorSystem
	Cluster  *pcluster.Cluster
	lookup   *Lookup
	provider *Provider

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// StartActors starts an actor system, its remote listener and cluster
// membership through m. Protoactor reports start failures by panicking; they
// come back here as errors.
func StartActors(cfg ActorsConfig, m Membership) (a *Actors, err error) {
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("actor_bind %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("actor_bind %q: bad port: %w", cfg.Bind, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 250 * time.Millisecond
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	actorLog := slog.New(minLevel{h: logger.Handler(), min: cfg.ActorLogLevel}).With("component", "actors")
	system := actor.NewActorSystemWithConfig(actor.Configure(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return actorLog }),
		actor.WithDeadLetterRequestLogging(false),
	))
	dial := cfg.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.EndpointPatience == 0 {
		cfg.EndpointPatience = DefaultEndpointPatience
	}
	if cfg.EndpointPatience > 0 {
		dial = append(endpointDialOptions(cfg.EndpointPatience), dial...)
	}
	server := append([]grpc.ServerOption{grpc.ChainStreamInterceptor(recoverStream(logger))}, cfg.ServerOptions...)
	ropts := []remote.ConfigOption{remote.WithDialOptions(dial...), remote.WithServerOptions(server...)}
	if cfg.Advertise != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	rc := remote.Configure(host, port, ropts...)
	// Upstream retries a dead peer 5 times with 2 s sleeps while messages to
	// it are neither delivered nor bounced; one attempt makes them dead
	// letters at once, which callers retry at the new owner.
	rc.MaxRetryCount = 1
	lookup := NewLookup(cfg.LookupTimeout, logger)
	lookup.OnActivations = cfg.OnActivations
	provider := NewProvider(m, logger)
	cc := pcluster.Configure("switchboard", provider, lookup, rc,
		pcluster.WithKinds(cfg.Kinds...),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
	)
	c := pcluster.New(system, cc)
	// The pinned StartMember panics on errors and ends with a fixed 1 s
	// sleep after the provider has started; the member is complete once the
	// provider's StartMember has run, so wait for that, not for the sleep
	// (it costs every start and every rejoin a second).
	started := make(chan error, 1)
	provider.started = started
	go func() {
		defer func() {
			if r := recover(); r != nil {
				select {
				case started <- fmt.Errorf("%v", r):
				default:
				}
			}
		}()
		c.StartMember()
	}()
	if err := <-started; err != nil {
		system.Shutdown()
		return nil, fmt.Errorf("start actor system on %s: %w", cfg.Bind, err)
	}
	// A broken connection to another node's actor system is the earliest
	// sign that the node died: have the membership check it at once.
	if h, ok := m.(interface{ CheckActorAddress(string) }); ok {
		system.EventStream.Subscribe(func(ev any) {
			if t, ok := ev.(*remote.EndpointTerminatedEvent); ok {
				h.CheckActorAddress(t.Address)
			}
		})
	}
	return &Actors{System: system, Cluster: c, lookup: lookup, provider: provider, stopped: make(chan struct{})}, nil
}

// ID is the actor system's id (new on every start).
func (a *Actors) ID() string { return a.System.ID }

// TopologySize is the number of members in the latest grain topology.
func (a *Actors) TopologySize() int { return a.lookup.Members() }

// Address is the actor system's host:port.
func (a *Actors) Address() string { return a.System.Address() }

// Stop leaves the cluster: withdraw from the topology (graceful), stop every
// local activation, then the actor system and its remote listener. It returns
// when done or when ctx ends. Later calls wait for the first one.
func (a *Actors) Stop(ctx context.Context, graceful bool) error {
	a.stopOnce.Do(func() {
		go func() {
			a.stopErr = a.provider.Shutdown(graceful)
			a.lookup.Shutdown()
			a.Cluster.Shutdown(false)
			close(a.stopped)
		}()
	})
	select {
	case <-a.stopped:
		return a.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stop actor system: %w", ctx.Err())
	}
}

// recoverStream turns a panic while serving a remote stream (the pinned
// protoactor panics on a message type it cannot decode) into an error for
// that stream instead of a crashed node.
func recoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("remote stream panicked; stream closed", "component", "actors", "method", info.FullMethod, "panic", fmt.Sprint(r))
				err = status.Errorf(codes.Internal, "remote: %v", r)
			}
		}()
		return handler(srv, ss)
	}
}

// minLevel drops records below min.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{h: m.h.WithGroup(n), min: m.min} }
