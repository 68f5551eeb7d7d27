package entity_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
)

// countingLookup is an IdentityLookup that always answers pid and counts
// the lookups.
type countingLookup struct {
	pid  *actor.PID
	gets atomic.Int32
}

func (l *countingLookup) Get(*pcluster.ClusterIdentity) *actor.PID {
	l.gets.Add(1)
	return l.pid
}
func (l *countingLookup) RemovePid(*pcluster.ClusterIdentity, *actor.PID) {}
func (l *countingLookup) Setup(*pcluster.Cluster, []string, bool)         {}
func (l *countingLookup) Shutdown()                                       {}

// An activation that is slow, not gone, stays cached through an idempotent
// call's timed-out attempts: the retry goes to the same PID without a new
// lookup. (Forgetting it on every timeout sent a loaded node's commands
// through fresh lookups and made the session edge fall back to one frame
// per call; members that leave are dropped from the cache by the cluster.)
func TestTimedOutAttemptKeepsTheCachedActivation(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	var seen atomic.Int32
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*counter.Get); !ok {
			return
		}
		if seen.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond) // longer than the first attempt
		}
		ctx.Respond(&counter.Value{Value: 7})
	}))
	lookup := &countingLookup{pid: pid}
	c := &pcluster.Cluster{ActorSystem: sys, PidCache: pcluster.NewPidCache(), IdentityLookup: lookup}

	res, err := entity.Call(t.Context(), c, counter.Kind, "slow", &counter.Get{}, entity.Idempotent(100*time.Millisecond))
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if v := res.(*counter.Value); v.Value != 7 {
		t.Fatalf("reply %v", v)
	}
	if seen.Load() < 2 {
		t.Fatalf("the activation saw %d requests: the first attempt did not time out", seen.Load())
	}
	if n := lookup.gets.Load(); n != 1 {
		t.Fatalf("%d lookups for one activation that was only slow, want 1", n)
	}
	if got, ok := c.PidCache.Get("slow", counter.Kind); !ok || !got.Equal(pid) {
		t.Fatalf("cached PID after the call: %v, %v", got, ok)
	}
}
