// Package entity is the shell every job's entities run in: a protoactor-go
// cluster grain whose state is its event stream in the replicated log.
//
// A job supplies a Spec: pure functions Initial, Decide, Evolve and Reply over
// its own state type, with commands and events as protobuf messages. The shell
// does all I/O:
//
//   - on activation it claims the entity's stream (a new activation epoch,
//     which fences every older activation), reads the stream with a consistent
//     read (so it has caught up with the log) and folds it with Evolve;
//   - for each command it calls Decide, appends the resulting events with the
//     stream's expected version and its epoch, applies them with Evolve and
//     replies with Reply;
//   - it passivates (stops) after Options.IdleTimeout without messages, and
//     stops itself as soon as the log says a newer activation exists (fenced)
//     or when it no longer knows its own state (an append whose outcome is
//     unknown).
//
// Commands are handled one at a time per entity, in arrival order. Replies
// that are not the job's are *entitypb.Error values; Call turns them into
// *Error values that errors.Is matches against ErrRejected, ErrMoved, ...
//
// Every command, reply and event type must be a generated protobuf message
// linked into the binary: all nodes run the same binary, so every node can
// decode every message a peer sends.
package entity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/actors/entity/entitypb"
	"github.com/switchboard-io/switchboard/events"
)

// Env is what Decide may know besides the state and the command. It is passed
// in (not read from the clock) so that Decide stays pure and testable.
type Env struct {
	ID string // the entity's identity
	// Version is the stream's version: before the command in Decide, after
	// its events in Reply.
	Version uint64
	Epoch   uint64    // the activation's epoch
	Now     time.Time // the activation's clock when the command arrived
	// Appended is the number of events the command appended (in Reply and
	// Effects; 0 in Decide), so a reply can tell a command that wrote from
	// one that was a no-op, e.g. a retried duplicate.
	Appended int
}

// Spec is the pure core of a job's entity kind.
type Spec[S any] struct {
	// Kind names the entity kind; its streams are named "<Kind>/<id>".
	Kind string
	// Initial returns the state of an entity whose stream is empty.
	Initial func(id string) S
	// Decide returns the events a command produces (none for a query). An
	// error rejects the command: nothing is written and the caller gets
	// ErrRejected with the error's text. It must not modify state.
	Decide func(state S, cmd proto.Message, env Env) ([]proto.Message, error)
	// Evolve applies one event and returns the new state.
	Evolve func(state S, ev proto.Message) S
	// Reply returns the reply to cmd given the state after its events.
	Reply func(state S, cmd proto.Message, env Env) proto.Message
	// Effects (optional) returns messages the shell sends, fire and forget,
	// once a command's events are appended and applied: state is the state
	// after them, evs the events (none for a command that writes nothing)
	// and env.Version the stream's version after them, so event i of evs has
	// version env.Version-len(evs)+1+i. It runs only when the command was
	// accepted. Delivery is at most once: a receiver that must not miss a
	// message recovers from the stream.
	Effects func(state S, cmd proto.Message, evs []proto.Message, env Env) []Effect
	// OnActivate (optional) returns messages to send once an activation has
	// rebuilt its state (for example to tell connected parties that the
	// entity moved, so they check what they may have missed).
	OnActivate func(state S, env Env) []Effect
}

// Effect is a message for an actor, addressed by the parts of its PID (the
// actor system's host:port and the actor's id) so that a pure core can keep
// addresses in its state.
type Effect struct {
	Address, ID string
	Msg         proto.Message
}

// Rejection is a Decide error that carries a machine-readable reason besides
// its text; the caller sees it as *Error with Reason set. Jobs use it to give
// their clients documented error codes.
type Rejection struct {
	Reason  string
	Message string
}

func (r *Rejection) Error() string { return r.Message }

// Reject returns a *Rejection.
func Reject(reason, format string, args ...any) error {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Validate reports every missing part at once.
func (s Spec[S]) Validate() error {
	var errs []error
	if s.Kind == "" {
		errs = append(errs, errors.New("field Kind is empty"))
	}
	if s.Initial == nil {
		errs = append(errs, errors.New("field Initial is nil"))
	}
	if s.Decide == nil {
		errs = append(errs, errors.New("field Decide is nil"))
	}
	if s.Evolve == nil {
		errs = append(errs, errors.New("field Evolve is nil"))
	}
	if s.Reply == nil {
		errs = append(errs, errors.New("field Reply is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("entity: invalid spec %q: %w", s.Kind, err)
	}
	return nil
}

// Log is what the shell needs from the replicated event log; *events.Node
// implements it. Contracts are those of events.Node: Claim returns a new epoch
// and the stream's version; Append returns a typed error (events.FencedError,
// events.ConflictError, events.ErrTooLarge, events.ErrInvalid) or
// events.ErrUnavailable when the outcome is unknown (retrying with the same
// append id is then safe); ReadStream with consistent=true first catches up
// with the log.
type Log interface {
	Claim(ctx context.Context, stream string) (epoch, version uint64, err error)
	Append(ctx context.Context, a events.Append) (events.Result, error)
	ReadStream(ctx context.Context, stream string, from uint64, max int, consistent bool) ([]events.RecordedEvent, error)
}

var _ Log = (*events.Node)(nil)

// Options configure the shell of one kind.
type Options struct {
	Log Log
	// IdleTimeout passivates an entity that received no message for this long.
	IdleTimeout time.Duration
	// ActivateTimeout bounds claiming and replaying the stream.
	ActivateTimeout time.Duration
	// AppendTimeout bounds one command's append, retries included.
	AppendTimeout time.Duration
	// ReadPage is the number of events read per page while replaying.
	ReadPage int
	Logger   *slog.Logger
	Metrics  *Metrics // nil = no metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultOptions returns the defaults; the caller sets Log.
func DefaultOptions() Options {
	return Options{
		IdleTimeout:     5 * time.Minute,
		ActivateTimeout: 30 * time.Second,
		AppendTimeout:   5 * time.Second,
		ReadPage:        1000,
	}
}

// Validate reports every problem at once.
func (o Options) Validate() error {
	var errs []error
	if o.Log == nil {
		errs = append(errs, errors.New("field Log is nil"))
	}
	if o.IdleTimeout <= 0 {
		errs = append(errs, errors.New("idle_timeout must be positive"))
	}
	if o.ActivateTimeout <= 0 {
		errs = append(errs, errors.New("activate_timeout must be positive"))
	}
	if o.AppendTimeout <= 0 {
		errs = append(errs, errors.New("append_timeout must be positive"))
	}
	if o.ReadPage < 1 {
		errs = append(errs, errors.New("read_page must be at least 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("entity: invalid options: %w", err)
	}
	return nil
}

// StreamName is the stream holding the events of entity id of kind.
func StreamName(kind, id string) string { return kind + "/" + id }

// NewKind returns the protoactor cluster kind running spec in the shell.
func NewKind[S any](spec Spec[S], o Options) (*pcluster.Kind, error) {
	if err := errors.Join(spec.Validate(), o.Validate()); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &shell[S]{spec: spec, o: o}
	})
	return pcluster.NewKind(spec.Kind, props), nil
}

// shell is one activation of one entity.
type shell[S any] struct {
	spec    Spec[S]
	o       Options
	log     *slog.Logger
	id      string
	stream  string
	state   S
	version uint64
	epoch   uint64
	ready   bool
}

func (s *shell[S]) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Restarting:
	case *pcluster.ClusterInit:
		s.activate(ctx, msg.Identity)
	case *actor.ReceiveTimeout:
		s.log.Debug("passivating idle entity")
		s.stop(ctx, "idle")
	case *actor.Stopped:
		if s.ready && s.o.Metrics != nil {
			s.o.Metrics.active.WithLabelValues(s.spec.Kind).Dec()
		}
	case proto.Message:
		s.handle(ctx, msg)
	default:
		// Not a protobuf message: cannot have come over the wire; ignore.
		if ctx.Sender() != nil {
			ctx.Respond(&entitypb.Error{Code: CodeInvalid, Message: fmt.Sprintf("%T is not a command", msg)})
		}
	}
}

func (s *shell[S]) activate(ctx actor.Context, ci *pcluster.ClusterIdentity) {
	start := s.o.Now()
	if ci == nil {
		s.o.Logger.Error("entity started without a cluster identity", "component", "entity", "kind", s.spec.Kind)
		ctx.Stop(ctx.Self())
		return
	}
	s.id = ci.Identity
	s.stream = StreamName(s.spec.Kind, s.id)
	s.log = s.o.Logger.With("component", "entity", "kind", s.spec.Kind, "id", s.id)
	if err := s.replay(); err != nil {
		s.log.Warn("activation failed; stopping", "err", err)
		if s.o.Metrics != nil {
			s.o.Metrics.activations.WithLabelValues(s.spec.Kind, "error").Inc()
		}
		ctx.Stop(ctx.Self())
		return
	}
	s.ready = true
	ctx.SetReceiveTimeout(s.o.IdleTimeout)
	if s.spec.OnActivate != nil {
		s.send(ctx, s.spec.OnActivate(s.state, Env{ID: s.id, Version: s.version, Epoch: s.epoch, Now: s.o.Now()}))
	}
	if s.o.Metrics != nil {
		s.o.Metrics.activations.WithLabelValues(s.spec.Kind, "ok").Inc()
		s.o.Metrics.active.WithLabelValues(s.spec.Kind).Inc()
		s.o.Metrics.activateSeconds.WithLabelValues(s.spec.Kind).Observe(s.o.Now().Sub(start).Seconds())
	}
	s.log.Debug("activated", "epoch", s.epoch, "version", s.version, "took", s.o.Now().Sub(start))
}

// replay claims the stream and folds it.
func (s *shell[S]) replay() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.ActivateTimeout)
	defer cancel()
	epoch, version, err := s.o.Log.Claim(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("claim %s: %w", s.stream, err)
	}
	s.epoch, s.state = epoch, s.spec.Initial(s.id)
	var have uint64
	for have < version {
		// The first page is a consistent read: it waits until this node has
		// applied the log at least up to the claim.
		evs, err := s.o.Log.ReadStream(ctx, s.stream, have+1, s.o.ReadPage, have == 0)
		if err != nil {
			return fmt.Errorf("read %s from version %d: %w", s.stream, have+1, err)
		}
		if len(evs) == 0 {
			return fmt.Errorf("read %s: stream ends at version %d, claim said %d", s.stream, have, version)
		}
		for _, re := range evs {
			if re.Version != have+1 {
				return fmt.Errorf("read %s: version %d after %d", s.stream, re.Version, have)
			}
			ev, err := DecodeEvent(re.Type, re.Data)
			if err != nil {
				return fmt.Errorf("replay %s version %d: %w", s.stream, re.Version, err)
			}
			s.state = s.spec.Evolve(s.state, ev)
			have = re.Version
			if have == version {
				break
			}
		}
	}
	s.version = version
	return nil
}

func (s *shell[S]) handle(ctx actor.Context, cmd proto.Message) {
	if !s.ready {
		s.respond(ctx, &entitypb.Error{Code: CodeMoved, Message: "entity is not active"}, "moved")
		return
	}
	env := Env{ID: s.id, Version: s.version, Epoch: s.epoch, Now: s.o.Now()}
	evs, err := s.spec.Decide(s.state, cmd, env)
	if err != nil {
		e := &entitypb.Error{Code: CodeRejected, Message: err.Error()}
		var r *Rejection
		if errors.As(err, &r) {
			e.Reason = r.Reason
		}
		s.respond(ctx, e, "rejected")
		return
	}
	if len(evs) > 0 {
		if code, msg := s.append(evs); code != "" {
			s.respond(ctx, &entitypb.Error{Code: code, Message: msg}, code)
			if code == CodeMoved || code == CodeUnavailable {
				// Fenced: a newer activation owns the stream. Unavailable: we
				// no longer know our own state. Either way this activation
				// must not take another command.
				s.stop(ctx, code)
			}
			return
		}
		for _, ev := range evs {
			s.state = s.spec.Evolve(s.state, ev)
		}
	}
	env.Version, env.Appended = s.version, len(evs)
	if s.spec.Effects != nil {
		s.send(ctx, s.spec.Effects(s.state, cmd, evs, env))
	}
	s.respond(ctx, s.spec.Reply(s.state, cmd, env), "ok")
}

// send delivers effects, fire and forget.
func (s *shell[S]) send(ctx actor.Context, effs []Effect) {
	for _, e := range effs {
		if e.Msg == nil || e.ID == "" || e.Address == "" {
			continue
		}
		ctx.Send(actor.NewPID(e.Address, e.ID), e.Msg)
	}
}

// append writes evs at the current version and epoch; it returns an error
// code ("" on success) and a message.
func (s *shell[S]) append(evs []proto.Message) (code, message string) {
	a := events.Append{Stream: s.stream, Expected: events.Exact(s.version), Epoch: s.epoch, Events: make([]events.Event, len(evs))}
	for i, ev := range evs {
		e, err := EncodeEvent(ev)
		if err != nil {
			return CodeInvalid, err.Error()
		}
		a.Events[i] = e
	}
	// One append id for every attempt: a retry after an unknown outcome is
	// never written twice.
	a.ID = newAppendID()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.AppendTimeout)
	defer cancel()
	res, err := s.o.Log.Append(ctx, a)
	switch {
	case err == nil:
		s.version = res.Version
		return "", ""
	case errors.Is(err, events.ErrFenced), errors.Is(err, events.ErrConflict):
		s.log.Info("fenced by a newer activation; stopping", "err", err)
		return CodeMoved, err.Error()
	case errors.Is(err, events.ErrTooLarge):
		return CodeTooLarge, err.Error()
	case errors.Is(err, events.ErrInvalid):
		return CodeInvalid, err.Error()
	default:
		s.log.Warn("append outcome unknown; stopping so the next activation reloads", "err", err)
		return CodeUnavailable, err.Error()
	}
}

func (s *shell[S]) respond(ctx actor.Context, reply proto.Message, outcome string) {
	if s.o.Metrics != nil {
		s.o.Metrics.commands.WithLabelValues(s.spec.Kind, outcome).Inc()
	}
	if ctx.Sender() != nil && reply != nil {
		ctx.Respond(reply)
	}
}

func (s *shell[S]) stop(ctx actor.Context, why string) {
	if s.log != nil {
		s.log.Debug("stopping activation", "why", why)
	}
	ctx.Stop(ctx.Self())
}

// EncodeEvent turns a protobuf event into a log event whose type is the
// message's full protobuf name.
func EncodeEvent(ev proto.Message) (events.Event, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return events.Event{}, fmt.Errorf("entity: encode %s: %w", proto.MessageName(ev), err)
	}
	return events.Event{Type: string(proto.MessageName(ev)), Data: data}, nil
}

// DecodeEvent is the inverse of EncodeEvent; the type must be linked into the
// binary.
func DecodeEvent(typ string, data []byte) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		return nil, fmt.Errorf("entity: unknown event type %q: %w", typ, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("entity: decode %q: %w", typ, err)
	}
	return m, nil
}
