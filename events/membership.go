package events

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/fsm"
)

// Errors of the Raft membership operations; test with errors.Is.
var (
	// ErrHasState: the node already has Raft state (it was bootstrapped or
	// added to a cluster), so it must not bootstrap.
	ErrHasState = errors.New("events: the node already has raft state")
	// ErrLastVoter: removing the server would leave the configuration
	// without a voter.
	ErrLastVoter = errors.New("events: cannot remove the last voter")
)

// errHandOver marks a failed leadership transfer before the leader removes
// itself: worth retrying.
var errHandOver = errors.New("events: leadership transfer failed")

// maxServerIDLen bounds a Raft server id accepted from the network.
const maxServerIDLen = 256

// HasState reports whether the node has Raft state: a log, a snapshot or a
// term, as raft.HasExistingState would find on disk. A node has state once it
// was bootstrapped or a leader contacted it (it was added to a cluster); such
// a node must never bootstrap.
func (n *Node) HasState() bool {
	return n.raft.LastIndex() > 0 || n.raft.CurrentTerm() > 0
}

// BootstrapCluster bootstraps a cluster with servers as its first
// configuration, for a node opened without Config.Bootstrap (deferred
// bootstrap, e.g. once bootstrap_expect members are seen). It fails with
// ErrHasState when the node already has Raft state: callers check HasState
// first. Every node of a new cluster may bootstrap the same configuration.
func (n *Node) BootstrapCluster(servers []raft.Server) error {
	if len(servers) == 0 {
		return fmt.Errorf("%w: bootstrap: servers: at least one server is required", ErrInvalid)
	}
	for i, s := range servers {
		if s.ID == "" || s.Address == "" {
			return fmt.Errorf("%w: bootstrap: servers[%d]: id and address must be set", ErrInvalid, i)
		}
	}
	if n.HasState() {
		return fmt.Errorf("events: bootstrap: %w", ErrHasState)
	}
	err := awaitFuture(n.raft.BootstrapCluster(raft.Configuration{Servers: servers}), n.closed)
	if errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("events: bootstrap: %w (%w)", ErrHasState, err)
	}
	if err != nil {
		return fmt.Errorf("events: bootstrap: %w", err)
	}
	n.log.Info("bootstrapped a new cluster", "servers", serverList(servers))
	return nil
}

// LeaderChanged returns a channel that is closed at the next change of the
// leader or of this node's Raft state (call it again for the change after).
func (n *Node) LeaderChanged() <-chan struct{} { return n.leaderWait() }

// AwaitFuture waits for a Raft future of this node until it completes, ctx
// ends or the node closes (ErrUnavailable then): a Raft future may never
// complete once Raft shut down, so callers never wait on one without a way
// out. An abandoned change may still take effect.
func (n *Node) AwaitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-n.closed:
		return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
}

// Configuration returns the latest Raft configuration this node knows
// (possibly not yet committed).
func (n *Node) Configuration() (raft.Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := awaitFuture(f, n.closed); err != nil {
		return raft.Configuration{}, fmt.Errorf("events: raft configuration: %w", err)
	}
	return f.Configuration(), nil
}

// Status returns this node's own view of Raft and of its event store.
func (n *Node) Status() *eventspb.StatusResponse {
	r := n.raft
	st := &eventspb.StatusResponse{
		NodeId:       n.cfg.NodeID,
		RaftState:    r.State().String(),
		Term:         r.CurrentTerm(),
		LastLogIndex: r.LastIndex(),
		CommitIndex:  r.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		HasState:     n.HasState(),
	}
	addr, id := r.LeaderWithID()
	st.LeaderId, st.LeaderAddr = string(id), string(addr)
	if r.State() != raft.Leader {
		if lc := r.LastContact(); !lc.IsZero() {
			st.LastContactUnixNano = lc.UnixNano()
		}
	}
	if cfg, err := n.Configuration(); err == nil {
		for _, s := range cfg.Servers {
			st.Servers = append(st.Servers, &eventspb.Server{Id: string(s.ID), Address: string(s.Address), Suffrage: suffrageToProto(s.Suffrage)})
			switch s.Suffrage {
			case raft.Voter:
				st.Voters++
			case raft.Nonvoter:
				st.Nonvoters++
			}
		}
	}
	return st
}

func suffrageToProto(s raft.ServerSuffrage) eventspb.Suffrage {
	switch s {
	case raft.Voter:
		return eventspb.Suffrage_SUFFRAGE_VOTER
	case raft.Nonvoter:
		return eventspb.Suffrage_SUFFRAGE_NONVOTER
	case raft.Staging:
		return eventspb.Suffrage_SUFFRAGE_STAGING
	}
	return eventspb.Suffrage_SUFFRAGE_UNSPECIFIED
}

// RemoteStatus asks the node whose Log API listens on apiAddr for its Status,
// over the connections (and DialOptions) used for forwarding.
func (n *Node) RemoteStatus(ctx context.Context, apiAddr string) (*eventspb.StatusResponse, error) {
	c, err := n.fwd.client(apiAddr)
	if err != nil {
		return nil, fmt.Errorf("events: status of %s: %w", apiAddr, err)
	}
	st, err := c.Status(ctx, &eventspb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("events: status of %s: %w", apiAddr, err)
	}
	return st, nil
}

// RemoveSelf removes this node from the Raft configuration for good
// (graceful permanent leave). When it leads, it first hands leadership over
// to another voter; then the leader removes it. It returns once a committed
// configuration no longer contains the node, or with ErrUnavailable when ctx
// ends first (the removal may still happen), or ErrLastVoter when the node is
// the only voter. Afterwards the node no longer takes part in the log: close
// it.
func (n *Node) RemoveSelf(ctx context.Context) error {
	n.log.Info("leaving the raft configuration")
	return n.RemoveServer(ctx, n.cfg.NodeID)
}

// RemoveServer removes server id from the Raft configuration through the
// leader (forwarded when this node does not lead), retrying while there is
// no reachable leader until ctx ends. It returns once a committed
// configuration no longer contains id (at once if id is not a member). A
// leader asked to remove itself hands leadership over first. Errors:
// ErrInvalid (malformed id), ErrLastVoter, ErrUnavailable (ctx ended or the
// node closed; the removal may still happen).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := validateServerID(id); err != nil {
		return err
	}
	backoff := 5 * time.Millisecond
	for {
		wait := n.leaderWait()
		var err error
		if n.IsLeader() {
			err = n.leaderRemoveServer(ctx, id)
		} else if addr, ok := n.leaderAPI(); ok {
			err = n.fwd.removeServer(ctx, addr, id)
		} else {
			err = errNoLeader
		}
		if err == nil {
			return nil
		}
		if !retryable(err) && !errors.Is(err, errHandOver) {
			return err
		}
		t := time.NewTimer(jitter(backoff))
		backoff = min(backoff*2, 250*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: remove server %s: %w (last error: %w)", ErrUnavailable, id, ctx.Err(), err)
		case <-n.closed:
			t.Stop()
			return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
		case <-wait:
			t.Stop()
		case <-t.C:
		}
	}
}

// leaderRemoveServer removes id as the leader. Asked to remove itself, it
// hands leadership over and answers errNotLeader, so that the caller retries
// with the new leader.
func (n *Node) leaderRemoveServer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return errNotLeader
	}
	cfg, err := n.Configuration()
	if err != nil {
		return err
	}
	var srv *raft.Server
	voters := 0
	for i, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == id {
			srv = &cfg.Servers[i]
		}
	}
	if srv == nil {
		// Not in the latest configuration, which may not be committed yet:
		// commit an entry after it (an empty command, as ensureBarrier does).
		data, err := fsm.EncodeEntry(fsm.Entry{Time: time.Now().UnixNano()})
		if err != nil {
			return fmt.Errorf("events: encode marker entry: %w", err)
		}
		return n.AwaitFuture(ctx, n.raft.Apply(data, n.cfg.ApplyTimeout))
	}
	if srv.Suffrage == raft.Voter && voters == 1 {
		return fmt.Errorf("events: remove server %s: %w", id, ErrLastVoter)
	}
	if id == n.cfg.NodeID {
		n.log.Info("handing leadership over before removing this node")
		if err := n.AwaitFuture(ctx, n.raft.LeadershipTransfer()); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("%w: %w", errHandOver, err)
		}
		return errNotLeader
	}
	f := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)
	if err := n.AwaitFuture(ctx, f); err != nil {
		return err
	}
	n.log.Info("removed server from the raft configuration", "server", id, "address", string(srv.Address), "index", f.Index())
	return nil
}

// validateServerID checks an id that arrived from outside.
func validateServerID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: id: must be set (the raft server id)", ErrInvalid)
	case len(id) > maxServerIDLen:
		return fmt.Errorf("%w: id: %d bytes, at most %d", ErrInvalid, len(id), maxServerIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: id: not valid UTF-8", ErrInvalid)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: id: %q contains a non-printable character", ErrInvalid, id)
		}
	}
	return nil
}

func serverList(servers []raft.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = fmt.Sprintf("%s@%s(%s)", s.ID, s.Address, s.Suffrage)
	}
	return out
}

// removeServer asks the leader at addr to remove id (second hop: the leader
// never forwards it again).
func (f *forwarder) removeServer(ctx context.Context, addr, id string) error {
	c, err := f.client(addr)
	if err != nil {
		return err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, f.n.cfg.NodeID)
	if _, err := c.RemoveServer(ctx, &eventspb.RemoveServerRequest{Id: id}); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			return fmt.Errorf("events: remove server %s: %w (%s)", id, ErrLastVoter, status.Convert(err).Message())
		}
		return transportErr(addr, err)
	}
	return nil
}

// Status implements eventspb.LogServer: this node's own view, never
// forwarded.
func (s *API) Status(context.Context, *eventspb.StatusRequest) (*eventspb.StatusResponse, error) {
	return s.n.Status(), nil
}

// RemoveServer implements eventspb.LogServer. It is meant for members of the
// cluster only: the API is served behind mutual TLS, which authenticates
// them; here the request itself is validated.
func (s *API) RemoveServer(ctx context.Context, req *eventspb.RemoveServerRequest) (*eventspb.RemoveServerResponse, error) {
	id := req.GetId()
	if err := validateServerID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var err error
	if forwarded(ctx) {
		err = s.n.leaderRemoveServer(ctx, id)
	} else {
		err = s.n.RemoveServer(ctx, id)
	}
	if err != nil {
		if errors.Is(err, ErrLastVoter) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		return nil, statusErr(err)
	}
	return &eventspb.RemoveServerResponse{}, nil
}
