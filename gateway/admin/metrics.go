package admin

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	calls        *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	denied       *prometheus.CounterVec
	panics       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_admin_call_seconds",
			Help: "Admin API calls by method and gRPC code.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)},
			[]string{"method", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_admin_auth_failures_total",
			Help: "Admin API calls refused as unauthenticated, by credential kind (token, client, missing, login)."}, []string{"kind"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_admin_denied_total",
			Help: "Admin API calls refused by role or tenant."}, []string{"method"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_admin_panics_total",
			Help: "Admin API calls that panicked (recovered)."}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.authFailures, m.denied, m.panics)
	}
	return m
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}
