package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/localcluster"
	"github.com/switchboard-io/switchboard/events/raftstore"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testBackend is a Backend over a one-node event log whose entities run
// in-process: each Call folds the entity's stream, decides, and appends
// with the expected version (the grain shell's rules, without actors).
type testBackend struct {
	log   *events.Node
	views *projections.Engine
	mu    sync.Mutex // one command at a time, like a grain
	keys  *sbauth.Keyring
	// panicCluster makes Cluster panic (tests of the recovery interceptor).
	panicCluster atomic.Bool
}

func (b *testBackend) NodeID() string             { return b.log.ID() }
func (b *testBackend) Views() *projections.Engine { return b.views }
func (b *testBackend) ReadEvent(pos uint64) (events.RecordedEvent, bool, error) {
	evs, err := b.log.ReadLog(pos, 1)
	if err != nil || len(evs) == 0 {
		return events.RecordedEvent{}, false, err
	}
	return evs[0], true, nil
}
func (b *testBackend) Cluster(context.Context) (*adminpb.ClusterView, error) {
	if b.panicCluster.Load() {
		panic("test panic in Cluster")
	}
	st := b.log.Status()
	return &adminpb.ClusterView{Node: b.log.ID(), Leader: st.GetLeaderId(), LastPosition: b.log.LastPosition(),
		Members: []*adminpb.Member{{Id: b.log.ID(), State: "alive", Suffrage: "voter", Leader: true, CommitIndex: st.GetCommitIndex()}}}, nil
}
func (b *testBackend) Keys(ctx context.Context, refresh bool) (*sbauth.Keyring, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil || refresh {
		k, err := loadKeys(ctx, b.log)
		if err != nil {
			return nil, err
		}
		b.keys = k
	}
	return b.keys, nil
}

func (b *testBackend) Call(ctx context.Context, kind, id string, cmd proto.Message) (proto.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch kind {
	case account.Kind:
		return logCall(ctx, b.log, account.Spec(), id, cmd)
	case session.Kind:
		return logCall(ctx, b.log, session.Spec(), id, cmd)
	}
	return nil, fmt.Errorf("no kind %q", kind)
}

func logCall[S any](ctx context.Context, log *events.Node, spec entity.Spec[S], id string, cmd proto.Message) (proto.Message, error) {
	stream := spec.Kind + "/" + id
	evs, err := log.ReadStream(ctx, stream, 1, 100000, true)
	if err != nil {
		return nil, err
	}
	st := spec.Initial(id)
	for _, ev := range evs {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ev.Type))
		if err != nil {
			return nil, err
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(ev.Data, m); err != nil {
			return nil, err
		}
		st = spec.Evolve(st, m)
	}
	env := entity.Env{ID: id, Version: uint64(len(evs)), Now: time.Now()}
	out, err := spec.Decide(st, cmd, env)
	if err != nil {
		e := &entity.Error{Kind: spec.Kind, ID: id, Code: entity.CodeRejected, Message: err.Error()}
		var rj *entity.Rejection
		if errors.As(err, &rj) {
			e.Reason = rj.Reason
		}
		return nil, e
	}
	if len(out) > 0 {
		recs := make([]events.Event, len(out))
		for i, m := range out {
			data, err := proto.Marshal(m)
			if err != nil {
				return nil, err
			}
			recs[i] = events.Event{Type: string(proto.MessageName(m)), Data: data}
			st = spec.Evolve(st, m)
		}
		if _, err := log.Append(ctx, events.AppendArgs(stream, events.Exact(env.Version), recs...)); err != nil {
			return nil, err
		}
	}
	env.Version += uint64(len(out))
	env.Appended = len(out)
	return spec.Reply(st, cmd, env), nil
}

// gw is a running gateway for tests: the gRPC server on a TCP port.
type gw struct {
	t     *testing.T
	s     *Server
	b     *testBackend
	conn  *grpc.ClientConn
	addr  string
	admin string // the first administrator's password after the forced change
}

func startGateway(t *testing.T, mutate func(*Config)) *gw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, node, err := localcluster.StartSingle(ctx, t.TempDir(), localcluster.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	db, err := raftstore.OpenDB("views", raftstore.DBOptions{Logger: quiet, FS: vfs.NewMem(), DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	views, err := projections.Open(projections.Config{DB: db, Logger: quiet}, projections.NodeSource(node),
		projections.Sessions{}, projections.Audit{}, projections.Accounts{})
	if err != nil {
		t.Fatal(err)
	}
	views.Start()
	t.Cleanup(func() { views.Close(); db.Close() })
	cfg := DefaultConfig()
	cfg.PasswordParams = sbauth.TestParams
	cfg.LoginBurst, cfg.Burst = 1000, 10000
	if mutate != nil {
		mutate(&cfg)
	}
	b := &testBackend{log: node, views: views}
	s, err := New(cfg, b, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.GRPC().Serve(l)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &gw{t: t, s: s, b: b, conn: conn, addr: l.Addr().String()}
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
