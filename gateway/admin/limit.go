package admin

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// limiter implements go-grpc-middleware's ratelimit.Limiter: a token bucket
// per client address for every call, and a stricter one for logins and
// password changes. Buckets idle for 10 minutes are dropped.
type limiter struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	calls, logins *rate.Limiter
	seen          time.Time
}

func newLimiter(cfg Config, now func() time.Time) *limiter {
	return &limiter{cfg: cfg, now: now, buckets: map[string]*bucket{}}
}

// Limit implements ratelimit.Limiter.
func (l *limiter) Limit(ctx context.Context) error {
	method, _ := grpc.Method(ctx)
	login := method == methodLogin || method == methodChangePassword
	addr := clientAddr(ctx)
	now := l.now()
	l.mu.Lock()
	if now.Sub(l.sweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b := l.buckets[addr]
	if b == nil {
		b = &bucket{calls: rate.NewLimiter(rate.Limit(l.cfg.RequestsPerSecond), l.cfg.Burst),
			logins: rate.NewLimiter(rate.Limit(l.cfg.LoginsPerMinute/60), l.cfg.LoginBurst)}
		l.buckets[addr] = b
	}
	b.seen = now
	l.mu.Unlock()
	if !b.calls.AllowN(now, 1) {
		return fmt.Errorf("more than %g calls/s from %s", l.cfg.RequestsPerSecond, addr)
	}
	if login && !b.logins.AllowN(now, 1) {
		return fmt.Errorf("more than %g logins per minute from %s; wait and retry", l.cfg.LoginsPerMinute, addr)
	}
	return nil
}

// clientAddr is the caller's IP: the gRPC peer, or for REST calls (whose
// peer is the in-process pipe) the address the HTTP handler recorded.
func clientAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if ok && p.Addr != nil && p.Addr.Network() != pipeNetwork {
		return hostOf(p.Addr.String())
	}
	if ok && p.Addr != nil {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(headerClientAddr); len(v) > 0 {
				return hostOf(v[len(v)-1])
			}
		}
	}
	return "unknown"
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
