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
	// Evolve applies one event and returns the new state. It must leave
	// its input unchanged (copy what it modifies): while appends are in
	// flight the shell keeps the committed state and the states after each
	// pending command side by side.
	Evolve func(state S, ev proto.Message) S
	// Reply returns the reply to cmd given the state after its events.
	Reply func(state S, cmd proto.Message, env Env) proto.Message
	// Effects (optional) returns messages the shell sends, fire and forget,
	// once a command's events are appended and applied: before and after
	// are the states before and after them, evs the events (none for a
	// command that writes nothing) and env.Version the stream's version after
	// them, so event i of evs has version env.Version-len(evs)+1+i. It runs only when the command was
	// accepted. Delivery is at most once: a receiver that must not miss a
	// message recovers from the stream.
	Effects func(before, after S, cmd proto.Message, evs []proto.Message, env Env) []Effect
	// Immediate (optional) marks commands that are handled at once even
	// while earlier commands' appends are in flight: they are decided on the
	// committed state, must write nothing (Decide returns no events for
	// them; one that does is handled in order instead), and get their reply
	// and effects before the commands queued ahead of them. For traffic that
	// is relayed, not recorded, and must not wait behind the log (a
	// session's stream frames behind its durable ones).
	Immediate func(cmd proto.Message) bool
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
// append id is then safe); Claim returns once the claim is applied locally,
// so ReadStream afterwards sees the stream up to the claimed version;
// ReadStream with consistent=true first catches up with the log.
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
	props, err := NewProps(spec, o)
	if err != nil {
		return nil, err
	}
	return pcluster.NewKind(spec.Kind, props), nil
}

// NewProps returns the props of the shell running spec, without the
// cluster's middleware: an activation spawned from them outside a cluster
// starts when it receives a *cluster.ClusterInit naming its identity (the
// shell's own tests do this).
func NewProps[S any](spec Spec[S], o Options) (*actor.Props, error) {
	if err := errors.Join(spec.Validate(), o.Validate()); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &shell[S]{spec: spec, o: o}
	}), nil
}

// shell is one activation of one entity.
type shell[S any] struct {
	spec    Spec[S]
	o       Options
	log     *slog.Logger
	id      string
	stream  string
	state   S // committed
	version uint64
	epoch   uint64
	ready   bool

	// spec_ and specVersion are the state and version after every queued
	// and in-flight command; inflight is the batch being appended, queue
	// the commands decided since.
	spec_       S
	specVersion uint64
	inflight    []pending[S]
	queue       []pending[S]
	stopping    bool
}

func (s *shell[S]) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Restarting:
	case *pcluster.ClusterInit:
		s.activate(ctx, msg.Identity)
	case *actor.ReceiveTimeout:
		if len(s.inflight) > 0 || len(s.queue) > 0 {
			return
		}
		s.log.Debug("passivating idle entity")
		s.stop(ctx, "idle")
	case *appendDone:
		s.done(ctx, msg)
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
		// Claim returned once this node applied the claim, so the local
		// store has every event up to version: no read fence needed.
		evs, err := s.o.Log.ReadStream(ctx, s.stream, have+1, s.o.ReadPage, false)
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
	s.spec_, s.specVersion = s.state, s.version
	return nil
}

// pending is a command decided on the speculative state, waiting for the
// append that carries its events (and every earlier command's) to commit.
type pending[S any] struct {
	sender *actor.PID
	cmd    proto.Message
	env    Env
	evs    []proto.Message
	before S // the state before its events
	after  S // the state after its events
	// reject, when set, is the reply (a rejection) to send once everything
	// before it committed.
	reject *entitypb.Error
}

// appendDone reports the result of the append started by flush.
type appendDone struct {
	res events.Result
	err error
}

// handle decides cmd on the speculative state (the committed state plus the
// events of the commands not yet committed) and queues it. Commands are
// answered in arrival order, each once everything before it and its own
// events are committed. So an entity keeps taking commands while an append is
// in flight and writes the events of all of them with its next append (group
// commit per entity), while every reply and effect still reflects a
// committed state.
func (s *shell[S]) handle(ctx actor.Context, cmd proto.Message) {
	if !s.ready || s.stopping {
		s.respond(ctx, &entitypb.Error{Code: CodeMoved, Message: "entity is not active"}, "moved")
		return
	}
	busy := len(s.inflight) > 0 || len(s.queue) > 0
	if busy && s.spec.Immediate != nil && s.spec.Immediate(cmd) && s.immediate(ctx, cmd) {
		return
	}
	p := s.decide(ctx.Sender(), cmd, s.o.Now())
	if !busy && len(p.evs) == 0 {
		// Nothing pending: answer at once from the committed state.
		s.finish(ctx, p)
		return
	}
	s.queue = append(s.queue, p)
	if len(s.inflight) == 0 {
		s.flush(ctx)
	}
}

// immediate handles an Immediate command on the committed state, ahead of
// the pending ones, and reports whether it did (false: it wrote events, and
// must be handled in order).
func (s *shell[S]) immediate(ctx actor.Context, cmd proto.Message) bool {
	env := Env{ID: s.id, Version: s.version, Epoch: s.epoch, Now: s.o.Now()}
	evs, err := s.spec.Decide(s.state, cmd, env)
	if err == nil && len(evs) > 0 {
		s.log.Error("an Immediate command produced events; handling it in order", "command", fmt.Sprintf("%T", cmd))
		return false
	}
	p := pending[S]{sender: ctx.Sender(), cmd: cmd, env: env}
	if err != nil {
		p.reject = rejection(err)
	}
	s.finish(ctx, p)
	return true
}

// rejection is the error reply for a command Decide refused.
func rejection(err error) *entitypb.Error {
	e := &entitypb.Error{Code: CodeRejected, Message: err.Error()}
	var r *Rejection
	if errors.As(err, &r) {
		e.Reason = r.Reason
	}
	return e
}

// decide runs Decide for cmd on the speculative state and advances it.
func (s *shell[S]) decide(sender *actor.PID, cmd proto.Message, now time.Time) pending[S] {
	env := Env{ID: s.id, Version: s.specVersion, Epoch: s.epoch, Now: now}
	p := pending[S]{sender: sender, cmd: cmd, env: env, before: s.spec_, after: s.spec_}
	evs, err := s.spec.Decide(s.spec_, cmd, env)
	if err != nil {
		p.reject = rejection(err)
		return p
	}
	st := s.spec_
	for _, ev := range evs {
		st = s.spec.Evolve(st, ev)
	}
	p.evs, p.after = evs, st
	s.spec_, s.specVersion = st, s.specVersion+uint64(len(evs))
	return p
}

// flush answers the queued commands that wrote nothing and are next in
// line, then starts one append with the events of the following queued
// commands (within the batch limits); its result comes back as *appendDone.
func (s *shell[S]) flush(ctx actor.Context) {
	s.answerReady(ctx)
	if len(s.queue) == 0 {
		return
	}
	a := events.Append{Stream: s.stream, Expected: events.Exact(s.version), Epoch: s.epoch, ID: events.NewAppendID()}
	n, size := 0, 0
	for n < len(s.queue) {
		p := s.queue[n]
		encoded := make([]events.Event, 0, len(p.evs))
		psize := 0
		var encErr error
		for _, ev := range p.evs {
			e, err := EncodeEvent(ev)
			if err != nil {
				encErr = err
				break
			}
			encoded = append(encoded, e)
			psize += len(e.Type) + len(e.Data) + len(e.Meta)
		}
		if encErr != nil {
			if n > 0 {
				break // append what precedes it first
			}
			s.refuseFirst(ctx, CodeInvalid, encErr.Error())
			return
		}
		if n > 0 && (len(a.Events)+len(encoded) > maxBatchEvents || size+psize > maxBatchBytes) {
			break
		}
		a.Events = append(a.Events, encoded...)
		size += psize
		n++
	}
	s.inflight = s.queue[:n:n]
	s.queue = append([]pending[S](nil), s.queue[n:]...)
	self, timeout, log, root := ctx.Self(), s.o.AppendTimeout, s.o.Log, ctx.ActorSystem().Root
	go func() {
		actx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// One append id for every attempt: a retry after an unknown
		// outcome is never written twice.
		res, err := log.Append(actx, a)
		root.Send(self, &appendDone{res: res, err: err})
	}()
}

// answerReady answers the queued commands without events that are next in
// line (everything before them is committed).
func (s *shell[S]) answerReady(ctx actor.Context) {
	for len(s.queue) > 0 && len(s.queue[0].evs) == 0 {
		p := s.queue[0]
		s.queue = s.queue[1:]
		s.finish(ctx, p)
	}
}

// done handles the result of the append in flight.
func (s *shell[S]) done(ctx actor.Context, d *appendDone) {
	batch := s.inflight
	s.inflight = nil
	switch {
	case d.err == nil:
		version := s.version
		for _, p := range batch {
			version += uint64(len(p.evs))
		}
		if d.res.Version != version {
			// The log and the shell disagree about the stream: stop so the
			// next activation reloads.
			s.log.Error("append landed at an unexpected version; stopping", "want", version, "got", d.res.Version)
			s.fail(ctx, CodeUnavailable, "stream version mismatch", batch)
			return
		}
		for _, p := range batch {
			if p.reject != nil {
				// Decided (and refused) between commands of this batch.
				s.reply(ctx, p.sender, p.reject, "rejected")
				continue
			}
			s.version += uint64(len(p.evs))
			s.state = p.after
			p.env.Version, p.env.Appended = s.version, len(p.evs)
			s.finishCommitted(ctx, p)
		}
		s.flush(ctx)
	case errors.Is(d.err, events.ErrFenced), errors.Is(d.err, events.ErrConflict):
		s.log.Info("fenced by a newer activation; stopping", "err", d.err)
		s.fail(ctx, CodeMoved, d.err.Error(), batch)
	case errors.Is(d.err, events.ErrTooLarge), errors.Is(d.err, events.ErrInvalid):
		// Nothing was written. Refuse the batch's first command; decide the
		// others again on the committed state.
		code := CodeInvalid
		if errors.Is(d.err, events.ErrTooLarge) {
			code = CodeTooLarge
		}
		s.queue = append(batch, s.queue...)
		s.refuseFirst(ctx, code, d.err.Error())
	default:
		s.log.Warn("append outcome unknown; stopping so the next activation reloads", "err", d.err)
		s.fail(ctx, CodeUnavailable, d.err.Error(), batch)
	}
}

// refuseFirst answers the first queued command with code (its events cannot
// be written), decides the commands after it again on the committed state,
// and flushes them.
func (s *shell[S]) refuseFirst(ctx actor.Context, code, msg string) {
	first := s.queue[0]
	rest := s.queue[1:]
	s.queue = nil
	s.spec_, s.specVersion = s.state, s.version
	s.reply(ctx, first.sender, &entitypb.Error{Code: code, Message: msg}, code)
	for _, p := range rest {
		s.queue = append(s.queue, s.decide(p.sender, p.cmd, p.env.Now))
	}
	s.flush(ctx)
}

// fail answers the batch and everything queued with code and stops the
// activation: it no longer owns (moved) or knows (unavailable) its state.
func (s *shell[S]) fail(ctx actor.Context, code, msg string, batch []pending[S]) {
	for _, p := range append(batch, s.queue...) {
		s.reply(ctx, p.sender, &entitypb.Error{Code: code, Message: msg}, code)
	}
	s.queue = nil
	s.stopping = true
	s.stop(ctx, code)
}

// finish answers a command that wrote nothing (a rejection, a query or a
// no-op); everything before it is committed.
func (s *shell[S]) finish(ctx actor.Context, p pending[S]) {
	if p.reject != nil {
		s.reply(ctx, p.sender, p.reject, "rejected")
		return
	}
	p.env.Version, p.env.Appended = s.version, 0
	p.before, p.after = s.state, s.state
	s.finishCommitted(ctx, p)
}

// finishCommitted sends a committed command's effects and its reply.
func (s *shell[S]) finishCommitted(ctx actor.Context, p pending[S]) {
	if s.spec.Effects != nil {
		s.send(ctx, s.spec.Effects(p.before, p.after, p.cmd, p.evs, p.env))
	}
	s.reply(ctx, p.sender, s.spec.Reply(p.after, p.cmd, p.env), "ok")
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

// reply sends a (possibly deferred) reply to the command's sender.
func (s *shell[S]) reply(ctx actor.Context, to *actor.PID, reply proto.Message, outcome string) {
	if s.o.Metrics != nil {
		s.o.Metrics.commands.WithLabelValues(s.spec.Kind, outcome).Inc()
	}
	if to != nil && reply != nil {
		ctx.Send(to, reply)
	}
}

// Batch limits of one append, well inside the log's default limits (1,000
// events, 4 MiB); a single command over them is appended alone.
const (
	maxBatchEvents = 256
	maxBatchBytes  = 1 << 20
)

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
