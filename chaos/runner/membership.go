package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// memberTimeout bounds each step of the member nemesis: the new node's
// promotion to voter, and the retired node's removal.
const memberTimeout = 60 * time.Second

// memberNodeArgs shorten, for runs with the member nemesis, the cluster's
// wait before a caught-up node becomes a voter and before a departed node is
// removed from Raft (defaults 10 s and 30 s), so that a run sees many
// membership changes.
var memberNodeArgs = []string{"--cluster-stabilization-time", "1s", "--cluster-dead-server-grace", "2s"}

// replaceNode is the member nemesis on node i: a new node joins, and once
// the leader has promoted it (one voter more than before), node i is
// retired — stopped gracefully for good. The heal waits until the leader's
// configuration holds as many voters as before and no non-voter: the
// retired node was removed. The workloads' clients know only the nodes the
// run started with, so i is replaced by the oldest node added later when
// retiring it would leave fewer than two of those.
func replaceNode(ctx context.Context, d Driver, i int, log *slog.Logger) (healFunc, error) {
	m, ok := d.(Members)
	if !ok {
		return healNothing, errors.New("this driver cannot add nodes")
	}
	names := func(i int) string { return d.Nodes()[i] }
	cctx, cancel := context.WithTimeout(ctx, memberTimeout)
	defer cancel()
	var err error
	var before int
	for {
		pctx, cancel := context.WithTimeout(cctx, 2*time.Second)
		before, _, err = m.Voters(pctx)
		cancel()
		if err == nil || cctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return healNothing, fmt.Errorf("member: the leader's voters: %w", err)
	}
	// The node's process lives as long as ctx (the run's): not cctx.
	j, err := m.AddNode(ctx)
	if err != nil {
		return healNothing, fmt.Errorf("member: %w", err)
	}
	log.Info("node added", "node", names(j))
	if err := waitVoters(cctx, m, before+1); err != nil {
		return healNothing, fmt.Errorf("member: %s was not promoted to voter: %w", names(j), err)
	}
	victim := retireCandidate(d, m, i, j)
	if err := m.Retire(victim); err != nil {
		return healNothing, fmt.Errorf("member: retire %s: %w", names(victim), err)
	}
	log.Info("node retired", "node", names(victim), "for", names(i))
	return healWith(func(ctx context.Context) error {
		hctx, cancel := context.WithTimeout(ctx, memberTimeout)
		defer cancel()
		if err := waitVoters(hctx, m, before); err != nil {
			return fmt.Errorf("member: %s was not removed from the raft configuration: %w", names(victim), err)
		}
		return nil
	}), nil
}

// retireCandidate returns the node to retire instead of i (i itself unless
// that would leave fewer than two of the initial nodes); added is the node
// that just joined, never retired.
func retireCandidate(d Driver, m Members, i, added int) int {
	if i >= m.Initial() {
		return i
	}
	left := 0
	for k := 0; k < m.Initial(); k++ {
		if k != i && !m.Retired(k) {
			left++
		}
	}
	if left >= 2 {
		return i
	}
	for k := m.Initial(); k < len(d.Nodes()); k++ {
		if k != added && !m.Retired(k) {
			return k
		}
	}
	return i
}

// waitVoters polls until the leader's configuration has want voters and no
// non-voter, or ctx ends.
func waitVoters(ctx context.Context, m Members, want int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		// Each poll on its own deadline: one hung request must not use up
		// the whole wait.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, nv, err := m.Voters(pctx)
		cancel()
		if err == nil && v == want && nv == 0 {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d voters and %d non-voters, want %d voters", v, nv, want)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %s)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}
