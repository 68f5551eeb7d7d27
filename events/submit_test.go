package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/localcluster"
)

func dialAPI(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func appendCmd(stream, id, data string) *eventspb.Command {
	return &eventspb.Command{Command: &eventspb.Command_Append{Append: &eventspb.AppendRequest{
		Stream: stream, ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY, AppendId: []byte(fmt.Sprintf("%016s", id)),
		Events: []*eventspb.Event{{Type: "t", Data: []byte(data)}}}}}
}

// A Submit stream on a follower: every command of every message gets one
// result under its own tag, a bad command does not spoil the others, and a
// half-closed stream is answered in full before it ends.
func TestSubmitStreamResultsByTag(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, fs := leaderAndFollowers(ctx, t, c)
	st, err := eventspb.NewLogClient(dialAPI(t, fs[0].APIAddr)).Submit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := &eventspb.Command{Command: &eventspb.Command_Append{Append: &eventspb.AppendRequest{
		Stream: "", ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY, Events: []*eventspb.Event{{Type: "t"}}}}}
	claim := &eventspb.Command{Command: &eventspb.Command_Claim{Claim: &eventspb.ClaimRequest{Stream: "sub-claimed", ClaimId: []byte("0123456789abcdef")}}}
	msgs := []*eventspb.SubmitRequest{
		{Commands: []*eventspb.TaggedCommand{{Tag: 10, Command: appendCmd("sub", "a", "a")}, {Tag: 11, Command: bad}, {Tag: 12, Command: appendCmd("sub", "b", "b")}}},
		{Commands: []*eventspb.TaggedCommand{{Tag: 13, Command: claim}, {Tag: 14, Command: &eventspb.Command{}}}},
		// Tag 10 again, once its first use may still be in flight, would end
		// the stream; a retry of append "a" under a fresh tag is a duplicate.
		{Commands: []*eventspb.TaggedCommand{{Tag: 15, Command: appendCmd("sub", "c", "c")}}},
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*eventspb.AppendResponse{}
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("recv after %d results: %v", len(got), err)
		}
		for _, r := range resp.GetResults() {
			if _, dup := got[r.GetTag()]; dup {
				t.Fatalf("tag %d answered twice", r.GetTag())
			}
			got[r.GetTag()] = r.GetResult()
		}
	}
	want := map[uint64]eventspb.Code{10: eventspb.Code_CODE_OK, 11: eventspb.Code_CODE_INVALID, 12: eventspb.Code_CODE_OK,
		13: eventspb.Code_CODE_OK, 14: eventspb.Code_CODE_INVALID, 15: eventspb.Code_CODE_OK}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(got), len(want), got)
	}
	versions := map[uint64]bool{}
	for tag, code := range want {
		if got[tag].GetCode() != code {
			t.Errorf("tag %d: code %v (%s), want %v", tag, got[tag].GetCode(), got[tag].GetMessage(), code)
		}
		if tag == 10 || tag == 12 || tag == 15 {
			versions[got[tag].GetVersion()] = true
		}
	}
	if !versions[1] || !versions[2] || !versions[3] {
		t.Errorf("versions of the three appends: %v, want 1, 2 and 3", versions)
	}
	if got[13].GetEpoch() != 1 {
		t.Errorf("claim: epoch %d, want 1", got[13].GetEpoch())
	}
	evs, err := fs[1].Node().ReadStream(ctx, "sub", 1, 10, true)
	if err != nil || len(evs) != 3 {
		t.Fatalf("stream sub: %d events, err %v, want 3", len(evs), err)
	}
}

// withoutQuorum starts a three-node cluster and stops both followers: what
// the remaining member is asked to write stays in flight (until its apply
// timeout).
func withoutQuorum(ctx context.Context, t *testing.T) *localcluster.Member {
	c := startCluster(t, 3)
	l, fs := leaderAndFollowers(ctx, t, c)
	for _, m := range fs {
		if err := c.Stop(m.ID); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// A tag used again while its command is in flight ends the stream with
// INVALID_ARGUMENT. Without a quorum the first command cannot finish, so it
// is surely in flight when the second arrives.
func TestSubmitTagInFlightEndsStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := withoutQuorum(ctx, t)
	st, err := eventspb.NewLogClient(dialAPI(t, l.APIAddr)).Submit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&eventspb.SubmitRequest{Commands: []*eventspb.TaggedCommand{
		{Tag: 7, Command: appendCmd("dup", "a", "a")}, {Tag: 7, Command: appendCmd("dup", "b", "b")},
	}}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := st.Recv()
		if err == nil {
			continue // the first command's result, cancelled with the stream
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("stream ended with %v, want INVALID_ARGUMENT", err)
		}
		break
	}
}

// A forwarding stream (opened by a node) is answered by the leader only.
func TestSubmitForwardedToFollowerRefused(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, fs := leaderAndFollowers(ctx, t, c)
	fctx := metadata.AppendToOutgoingContext(ctx, "x-switchboard-forwarded", "test")
	st, err := eventspb.NewLogClient(dialAPI(t, fs[0].APIAddr)).Submit(fctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("follower answered a forwarding stream with %v, want UNAVAILABLE", err)
	}
}

// SubmitClient: many goroutines share one stream; each gets its own result,
// nothing is lost or doubled, and a retry under the same id is a duplicate.
func TestSubmitClientConcurrentAppends(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, fs := leaderAndFollowers(ctx, t, c)
	sc, err := events.NewSubmitClient(ctx, dialAPI(t, fs[0].APIAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	const writers, each, streams = 32, 20, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	var last events.Append
	var lastMu sync.Mutex
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a := events.AppendArgs(fmt.Sprintf("conc-%d", w%streams), events.Any(), ev("t", fmt.Sprintf("%d-%d", w, i)))
				a.ID = events.NewAppendID()
				res, err := sc.Append(ctx, a)
				if err == nil && res.Duplicate {
					err = fmt.Errorf("append %d-%d: a duplicate", w, i)
				}
				if err != nil {
					errs <- err
					return
				}
				lastMu.Lock()
				last = a
				lastMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := sc.Append(ctx, last)
	if err != nil || !res.Duplicate {
		t.Fatalf("retry of an applied append: %+v, %v; want a duplicate", res, err)
	}
	for s := range streams {
		evs, err := fs[1].Node().ReadStream(ctx, fmt.Sprintf("conc-%d", s), 1, 1000, true)
		if err != nil || len(evs) != writers/streams*each {
			t.Fatalf("stream conc-%d: %d events (err %v), want %d", s, len(evs), err, writers/streams*each)
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if seen[string(e.Data)] {
				t.Fatalf("stream conc-%d: %q twice", s, e.Data)
			}
			seen[string(e.Data)] = true
		}
	}
}

// When its stream ends, a SubmitClient fails the commands in flight as
// unavailable (outcome unknown) and every later call at once.
func TestSubmitClientFailsInFlightWhenClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := withoutQuorum(ctx, t)
	sc, err := events.NewSubmitClient(ctx, dialAPI(t, l.APIAddr))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sc.Append(ctx, events.AppendArgs("closed", events.Any(), ev("t", "x")))
		done <- err
	}()
	// Whether the append is still queued or already sent, closing answers it.
	sc.Close()
	if err := <-done; !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("append in flight at Close: %v, want ErrUnavailable", err)
	}
	if sc.Err() == nil {
		t.Fatal("Err is nil after Close")
	}
	if _, err := sc.Append(ctx, events.AppendArgs("closed", events.Any(), ev("t", "y"))); !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("append after Close: %v, want ErrUnavailable", err)
	}
}

// legacyLog serves the Log API of a build without Submit (an older node
// during a rolling upgrade): unary calls go to the member's node. Once
// upgraded is set it serves Submit too, counting the streams.
type legacyLog struct {
	eventspb.UnimplementedLogServer
	api      func() *events.API
	upgraded *atomic.Bool
	streams  *atomic.Int64
}

func (l legacyLog) Submit(st eventspb.Log_SubmitServer) error {
	if !l.upgraded.Load() {
		return status.Error(codes.Unimplemented, "method Submit not implemented")
	}
	l.streams.Add(1)
	return l.api().Submit(st)
}

func (l legacyLog) Append(ctx context.Context, r *eventspb.AppendRequest) (*eventspb.AppendResponse, error) {
	return l.api().Append(ctx, r)
}

func (l legacyLog) Forward(ctx context.Context, r *eventspb.ForwardRequest) (*eventspb.ForwardResponse, error) {
	return l.api().Forward(ctx, r)
}

func (l legacyLog) ReadIndex(ctx context.Context, r *eventspb.ReadIndexRequest) (*eventspb.ReadIndexResponse, error) {
	return l.api().ReadIndex(ctx, r)
}

// A follower forwarding to a leader that answers Submit with UNIMPLEMENTED
// falls back to unary Forward calls: appends still succeed, once each. Once
// the leader serves Submit (upgraded in place), the follower goes back to a
// stream after the retry period.
func TestForwardFallsBackToUnaryForward(t *testing.T) {
	defer events.SetUnaryRetry(300 * time.Millisecond)()
	var upgraded atomic.Bool
	var streams atomic.Int64
	var (
		mu      sync.Mutex
		c       *localcluster.Cluster
		legacy  = map[string]string{} // member id → legacy API address
		servers []*grpc.Server
		regs    = map[string]*prometheus.Registry{}
	)
	t.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	cl := startTuned(t, 3, func(cfg *events.Config) {
		id := cfg.NodeID
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
			return
		}
		gs := grpc.NewServer()
		eventspb.RegisterLogServer(gs, legacyLog{upgraded: &upgraded, streams: &streams, api: func() *events.API {
			mu.Lock()
			cl := c
			mu.Unlock()
			return cl.Member(id).Node().API()
		}})
		go gs.Serve(l)
		reg := prometheus.NewRegistry()
		mu.Lock()
		legacy[id] = l.Addr().String()
		servers = append(servers, gs)
		regs[id] = reg
		mu.Unlock()
		cfg.Registerer = reg
		cfg.ResolveAPI = func(sid raft.ServerID) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			a, ok := legacy[string(sid)]
			return a, ok
		}
	})
	mu.Lock()
	c = cl
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, fs := leaderAndFollowers(ctx, t, cl)
	for i := range 5 {
		a := events.AppendArgs("legacy", events.Exact(uint64(i)), ev("t", fmt.Sprint(i)))
		a.ID = events.NewAppendID()
		res, err := fs[0].Node().Append(ctx, a)
		if err != nil || res.Version != uint64(i+1) {
			t.Fatalf("append %d through a legacy leader: %+v, %v", i, res, err)
		}
	}
	mu.Lock()
	reg := regs[fs[0].ID]
	mu.Unlock()
	if got := counter(t, reg, "switchboard_log_forwarded_total"); got < 5 {
		t.Fatalf("forwarded_total %v, want at least 5", got)
	}
	if n := streams.Load(); n != 0 {
		t.Fatalf("%d Submit streams served before the upgrade", n)
	}
	upgraded.Store(true)
	v := uint64(5)
	for streams.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the follower never went back to a Submit stream after the leader's upgrade")
		}
		a := events.AppendArgs("legacy", events.Exact(v), ev("t", fmt.Sprint(v)))
		a.ID = events.NewAppendID()
		res, err := fs[0].Node().Append(ctx, a)
		if err != nil || res.Version != v+1 {
			t.Fatalf("append %d around the upgrade: %+v, %v", v, res, err)
		}
		v++
		time.Sleep(20 * time.Millisecond)
	}
	evs, err := fs[1].Node().ReadStream(ctx, "legacy", 1, 1000, true)
	if err != nil || uint64(len(evs)) != v {
		t.Fatalf("stream legacy: %d events (err %v), want %d", len(evs), err, v)
	}
}
