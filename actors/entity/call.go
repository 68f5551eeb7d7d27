package entity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity/entitypb"
)

// Error codes carried by entitypb.Error (see entity.proto for their meaning).
const (
	CodeRejected    = "rejected"
	CodeMoved       = "moved"
	CodeUnavailable = "unavailable"
	CodeInvalid     = "invalid"
	CodeTooLarge    = "too_large"
)

// Sentinel errors matched by *Error with errors.Is.
var (
	// ErrRejected: the job refused the command; nothing was written.
	ErrRejected = errors.New("entity: command rejected")
	// ErrUnavailable: the command's outcome is unknown (the entity could not
	// be reached in time, or its append's outcome is unknown).
	ErrUnavailable = errors.New("entity: unavailable")
	// ErrInvalid: the command is malformed; nothing was written.
	ErrInvalid = errors.New("entity: invalid command")
	// ErrTooLarge: the command's events exceed the log's limits.
	ErrTooLarge = errors.New("entity: too large")
)

// Error is an entity's refusal as seen by the caller.
type Error struct {
	Kind, ID string
	Code     string
	// Reason is the job's machine-readable reason of a rejection (see
	// Rejection); empty when the job gave none.
	Reason  string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("entity %s/%s: %s: %s", e.Kind, e.ID, e.Code, e.Message)
}

// Is matches the sentinel of the error's code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrRejected:
		return e.Code == CodeRejected
	case ErrUnavailable:
		return e.Code == CodeUnavailable || e.Code == CodeMoved
	case ErrInvalid:
		return e.Code == CodeInvalid
	case ErrTooLarge:
		return e.Code == CodeTooLarge
	}
	return false
}

// CallOption changes how Call retries.
type CallOption func(*callConfig)

type callConfig struct {
	idempotent bool
	attempt    time.Duration
}

// Idempotent declares the command safe to deliver twice (a query, or a
// command the job deduplicates): Call then also retries after a timeout,
// with each attempt bounded by attempt.
func Idempotent(attempt time.Duration) CallOption {
	return func(c *callConfig) { c.idempotent, c.attempt = true, attempt }
}

// Call sends cmd to entity id of kind and returns its reply. It retries, with
// jittered backoff until ctx ends, whenever the command certainly did not take
// effect: no owner known yet, the activation is gone (dead letter), or it was
// fenced by a newer activation. A timeout is retried only for Idempotent
// commands; otherwise it returns an error matching ErrUnavailable, since the
// command may have taken effect. Replies that are entitypb.Error come back as
// *Error.
//
// c may be nil (the node's actor system is restarting, e.g. while it rejoins
// after being declared dead): Call then fails at once with an error matching
// ErrUnavailable, and the caller retries with the node's next cluster.
func Call(ctx context.Context, c *pcluster.Cluster, kind, id string, cmd proto.Message, opts ...CallOption) (proto.Message, error) {
	if c == nil {
		return nil, errNotRunning(kind, id)
	}
	return call(ctx, fixed{c}, false, kind, id, cmd, opts...)
}

// Source gives the cluster a node currently runs. It changes when the node
// rejoins under a new actor system (cluster.Node), and is nil while the node
// has none.
type Source interface {
	Cluster() *pcluster.Cluster
}

// CallOn is Call for a caller that holds the node rather than one of its
// clusters: every attempt uses src's current cluster, and while the node has
// none (or only the one it is stopping) attempts wait with the same backoff
// until ctx ends. A call that began just before the node rejoined therefore
// continues on the new actor system. (With Call, it kept asking through the
// stopped one, whose address the new system had taken over: the owner's
// replies arrived at the new system, which had no such request, and the call
// failed every attempt until its deadline — seconds of stalled sessions after
// every rejoin, docs/chaos.md.)
func CallOn(ctx context.Context, src Source, kind, id string, cmd proto.Message, opts ...CallOption) (proto.Message, error) {
	return call(ctx, src, true, kind, id, cmd, opts...)
}

type fixed struct{ c *pcluster.Cluster }

func (f fixed) Cluster() *pcluster.Cluster { return f.c }

func errNotRunning(kind, id string) *Error {
	return &Error{Kind: kind, ID: id, Code: CodeUnavailable, Message: "the node's actor system is not running (rejoining the cluster)"}
}

// call is Call and CallOn; follow says whether a missing or stopped cluster
// is waited for (src may replace it) or final.
func call(ctx context.Context, src Source, follow bool, kind, id string, cmd proto.Message, opts ...CallOption) (proto.Message, error) {
	cfg := callConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	// Retries are cheap (a lookup and a message) and the usual reason for
	// one is a grain moving after a node died: a low cap lets callers reach
	// the new activation within ~100 ms of the topology change.
	backoff := 10 * time.Millisecond
	var last error
	start := time.Now()
	attemptTimeout := min(cfg.attempt, firstAttempt)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			slog.Debug("grain call retry", "component", "entity", "kind", kind, "id", id, "attempt", attempt, "elapsed", time.Since(start), "last", last)
			d := backoff/2 + rand.N(backoff/2+1)
			if backoff < 100*time.Millisecond {
				backoff *= 2
			}
			select {
			case <-ctx.Done():
				return nil, &Error{Kind: kind, ID: id, Code: CodeUnavailable, Message: fmt.Sprintf("%v (last: %v)", ctx.Err(), last)}
			case <-time.After(d):
			}
		}
		remaining := time.Until(deadline(ctx))
		if remaining <= 0 {
			return nil, &Error{Kind: kind, ID: id, Code: CodeUnavailable, Message: fmt.Sprintf("deadline exceeded (last: %v)", last)}
		}
		c := src.Cluster()
		if c == nil || c.ActorSystem.IsStopped() {
			if !follow {
				return nil, errNotRunning(kind, id)
			}
			last = errNotRunning(kind, id)
			continue
		}
		pid := lookup(c, kind, id)
		if pid == nil {
			last = errors.New("no activation available")
			continue
		}
		timeout := remaining
		if cfg.idempotent && cfg.attempt > 0 {
			// A request to a node that just died is often neither answered
			// nor bounced: it times out. Short first attempts, doubling up to
			// cfg.attempt, find the new activation quickly; a slow but live
			// activation is reached by a later attempt (the command is
			// idempotent, so an earlier copy taking effect does no harm).
			timeout = min(timeout, attemptTimeout)
			attemptTimeout = min(2*attemptTimeout, cfg.attempt)
		}
		res, err := c.ActorSystem.Root.RequestFuture(pid, cmd, timeout).Result()
		switch {
		case err == nil:
		case errors.Is(err, actor.ErrDeadLetter) || errors.Is(err, remote.ErrDeadLetter):
			// Never delivered: safe to retry at the (possibly new) owner.
			c.PidCache.RemoveByValue(id, kind, pid)
			last = err
			continue
		case errors.Is(err, actor.ErrTimeout) || errors.Is(err, remote.ErrTimeout):
			// The cached activation stays: when its node leaves, the
			// cluster drops the PIDs of that member from the cache, and an
			// activation on a live member is only slow. (Forgetting it on
			// every timeout sent the commands of a loaded node through new
			// lookups and made the session edge fall back to one frame per
			// call: sessions starved for seconds in bench session.)
			last = err
			if cfg.idempotent {
				continue
			}
			return nil, &Error{Kind: kind, ID: id, Code: CodeUnavailable, Message: "no reply in time; the command may have taken effect"}
		default:
			return nil, fmt.Errorf("entity %s/%s: %w", kind, id, err)
		}
		if e, ok := res.(*entitypb.Error); ok {
			if e.GetCode() == CodeMoved {
				c.PidCache.RemoveByValue(id, kind, pid)
				last = errors.New(e.GetMessage())
				continue
			}
			return nil, &Error{Kind: kind, ID: id, Code: e.GetCode(), Reason: e.GetReason(), Message: e.GetMessage()}
		}
		m, ok := res.(proto.Message)
		if !ok {
			return nil, fmt.Errorf("entity %s/%s: reply %T is not a protobuf message", kind, id, res)
		}
		return m, nil
	}
}

// firstAttempt bounds the first attempt of an idempotent call.
const firstAttempt = 250 * time.Millisecond

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

func lookup(c *pcluster.Cluster, kind, id string) *actor.PID {
	if pid, ok := c.PidCache.Get(id, kind); ok && pid != nil {
		return pid
	}
	pid := c.Get(id, kind)
	if pid != nil {
		c.PidCache.Set(id, kind, pid)
	}
	return pid
}

// Metrics are the shell's Prometheus metrics.
type Metrics struct {
	activations     *prometheus.CounterVec
	active          *prometheus.GaugeVec
	activateSeconds *prometheus.HistogramVec
	commands        *prometheus.CounterVec
}

// NewMetrics registers the shell's metrics on reg (nil = unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_entity_activations_total", Help: "Entity activations by kind and result (ok, error).",
		}, []string{"kind", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_entity_active", Help: "Entities active on this node by kind.",
		}, []string{"kind"}),
		activateSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchboard_entity_activate_seconds", Help: "Time to claim and replay an entity's stream.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"kind"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_entity_commands_total", Help: "Commands handled by kind and outcome.",
		}, []string{"kind", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.activations, m.active, m.activateSeconds, m.commands)
	}
	return m
}
