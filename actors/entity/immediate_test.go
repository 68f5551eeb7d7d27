package entity_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
	"github.com/switchboard-io/switchboard/events"
)

// heldLog is an entity.Log over an empty stream whose appends wait until
// release is closed.
type heldLog struct {
	release chan struct{}
	appends atomic.Int32
	version atomic.Uint64
}

func (l *heldLog) Claim(context.Context, string) (uint64, uint64, error) { return 1, 0, nil }

func (l *heldLog) Append(ctx context.Context, a events.Append) (events.Result, error) {
	l.appends.Add(1)
	select {
	case <-l.release:
	case <-ctx.Done():
		return events.Result{}, events.ErrUnavailable
	}
	return events.Result{Version: l.version.Add(uint64(len(a.Events)))}, nil
}

func (l *heldLog) ReadStream(context.Context, string, uint64, int, bool) ([]events.RecordedEvent, error) {
	return nil, nil
}

// An Immediate command is answered from the committed state while an
// earlier command's append is in flight; other queries wait behind it.
func TestImmediateCommandIsNotHeldBehindAppends(t *testing.T) {
	log := &heldLog{release: make(chan struct{})}
	spec := counter.Spec("n1")
	spec.Immediate = func(cmd proto.Message) bool {
		_, ok := cmd.(*counter.Get)
		return ok
	}
	o := entity.DefaultOptions()
	o.Log = log
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	props, err := entity.NewProps(spec, o)
	if err != nil {
		t.Fatal(err)
	}
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	pid := sys.Root.Spawn(props)
	sys.Root.Send(pid, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity("c", counter.Kind)})

	add := sys.Root.RequestFuture(pid, &counter.Add{Delta: 5}, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for log.appends.Load() == 0 {
		if time.Now().After(deadline) {
			res, err := add.Result()
			t.Fatalf("the first Add never reached the log (reply %v, err %v)", res, err)
		}
		time.Sleep(time.Millisecond)
	}
	queued := sys.Root.RequestFuture(pid, &counter.Add{Delta: 2}, 10*time.Second)
	res, err := sys.Root.RequestFuture(pid, &counter.Get{}, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("immediate Get while an append is in flight: %v", err)
	}
	if v, ok := res.(*counter.Value); !ok || v.GetValue() != 0 || v.GetVersion() != 0 {
		t.Fatalf("immediate Get answered %v, want the committed state (0 at version 0)", res)
	}
	if n := log.appends.Load(); n != 1 {
		t.Fatalf("%d appends started while the first was held, want 1", n)
	}
	close(log.release)
	for i, want := range []int64{5, 7} {
		res, err := []*actor.Future{add, queued}[i].Result()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := res.(*counter.Value); !ok || v.GetValue() != want {
			t.Fatalf("add %d after the append: %v, want %d", i, res, want)
		}
	}
}
