package runner

import (
	"context"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// Driver runs the cluster under test. Node indexes are 0..Nodes()-1.
type Driver interface {
	// Nodes returns the node ids.
	Nodes() []string
	// LogClients returns a gRPC client of every node's API, by index.
	LogClients() []eventspb.LogClient
	// SessionClient returns how session clients reach every node, and the
	// host token.
	SessionClient() (sessionclient.Config, string)
	// Kill kills node i outright (kill -9); Restart starts it again with
	// its data.
	Kill(i int) error
	Restart(ctx context.Context, i int) error
	// StopNode stops node i gracefully (SIGTERM, then SIGKILL after a
	// grace period); Restart starts it again.
	StopNode(i int) error
	// Pause freezes node i (SIGSTOP); Resume thaws it (SIGCONT).
	Pause(i int) error
	Resume(i int) error
	// Up reports whether node i is running, not paused and not cut off.
	Up(i int) bool
	// Leader returns the index of the Raft leader (within ctx).
	Leader(ctx context.Context) (int, error)
	// WaitReady waits until every running node answers /readyz 200.
	WaitReady(ctx context.Context, timeout time.Duration) error
	// Stop stops every node.
	Stop() error
}

// Partitioner is a driver that can cut a node off the network and bring it
// back (the isolate nemesis).
type Partitioner interface {
	Isolate(i int) error
	Rejoin(i int) error
}

// Shaper is a driver that can degrade one node's network (the delay, loss
// and oneway nemeses) and restore it.
type Shaper interface {
	Shape(i int, k nemesis.Kind) error
	Unshape(i int) error
}

// Admin is a driver whose nodes' admin APIs the harness can reach, for the
// projection checker: their HTTPS addresses and the first administrator's
// one-time credential (which the harness replaces with a password of its own).
type Admin interface {
	AdminEndpoints() []string
	AdminCredential(ctx context.Context) (name, password string, err error)
}

// Members is a driver that can change the cluster's membership (the member
// nemesis): add a node that joins the running cluster, and retire a node
// for good. A retired node is stopped gracefully and never started again;
// the runner neither targets nor checks it afterwards. Voters reports the
// Raft configuration as the leader knows it. AddNode's process lives as
// long as its ctx.
type Members interface {
	AddNode(ctx context.Context) (int, error)
	Retire(i int) error
	Retired(i int) bool
	Voters(ctx context.Context) (voters, nonvoters int, err error)
	// Initial is the number of nodes started with the cluster: the ones
	// the workloads' clients know.
	Initial() int
}

// retired reports whether node i of d was retired by the member nemesis.
func retired(d Driver, i int) bool {
	m, ok := d.(Members)
	return ok && m.Retired(i)
}
