package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/events/eventspb"
)

// fakeNodeEnv makes the test binary act as `switchboard serve` (a stand-in
// with the same flags, API and HTTP endpoints; n1 plays the leader), so that
// the cluster harness and RunLog can be tested before the real serve exists.
const fakeNodeEnv = "BENCH_FAKE_NODE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeNodeEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := fakeServe(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fakeLog struct {
	eventspb.UnimplementedLogServer
	id string
}

func (f *fakeLog) Append(ctx context.Context, req *eventspb.AppendRequest) (*eventspb.AppendResponse, error) {
	switch {
	case len(req.GetAppendId()) != 16:
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: "append id is not 16 bytes"}, nil
	case req.GetExpectedKind() != eventspb.ExpectedKind_EXPECTED_KIND_ANY:
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: "expected kind is not ANY"}, nil
	case len(req.GetEvents()) != 1 || req.GetEvents()[0].GetType() == "" || req.GetStream() == "":
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_INVALID, Message: "bad events or stream"}, nil
	case strings.HasSuffix(req.GetStream(), "-s0") && len(req.GetEvents()[0].GetData()) == 13:
		// --event-size 13 makes stream s0 fail: tests error counting.
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_CONFLICT, Message: "fake conflict"}, nil
	}
	time.Sleep(200 * time.Microsecond)
	return &eventspb.AppendResponse{Code: eventspb.Code_CODE_OK, Version: 1}, nil
}

// Submit answers each append of the stream as Append does (one message per
// request message: the fake needs no concurrency).
func (f *fakeLog) Submit(st eventspb.Log_SubmitServer) error {
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &eventspb.SubmitResponse{}
		for _, tc := range req.GetCommands() {
			a := tc.GetCommand().GetAppend()
			if a == nil {
				return status.Error(codes.InvalidArgument, "fake node: only appends")
			}
			r, err := f.Append(st.Context(), a)
			if err != nil {
				return err
			}
			resp.Results = append(resp.Results, &eventspb.TaggedResult{Tag: tc.GetTag(), Result: r})
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeLog) ReadIndex(ctx context.Context, _ *eventspb.ReadIndexRequest) (*eventspb.ReadIndexResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(forwardedMD)) > 0 && f.id != "n1" {
		return nil, status.Error(codes.Unavailable, "not the leader")
	}
	return &eventspb.ReadIndexResponse{Index: 7}, nil
}

func fakeServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	id := fs.String("node-id", "", "")
	dataDir := fs.String("data-dir", "", "")
	raftBind := fs.String("raft-bind", "", "")
	apiBind := fs.String("api-bind", "", "")
	httpBind := fs.String("http-bind", "", "")
	gossipBind := fs.String("gossip-bind", "", "")
	actorBind := fs.String("actor-bind", "", "")
	_ = fs.String("session-bind", "", "")
	_ = fs.String("admin-bind", "", "")
	join := fs.String("join", "", "")
	expect := fs.Int("bootstrap-expect", 0, "")
	caFile := fs.String("tls-ca-file", "", "")
	certFile := fs.String("tls-cert-file", "", "")
	keyFile := fs.String("tls-key-file", "", "")
	noMetrics := fs.Bool("fake-no-metrics", false, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *dataDir == "" || *raftBind == "" || *apiBind == "" || *httpBind == "" || *gossipBind == "" ||
		*actorBind == "" || len(strings.Split(*join, ",")) != 2 || *expect != 3 {
		return fmt.Errorf("missing flags in %q", args)
	}
	bundle, err := tlsutil.Load(tlsutil.Files{CAFile: *caFile, CertFile: *certFile, KeyFile: *keyFile}, *id, time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return err
	}
	raftL, err := net.Listen("tcp", *raftBind) // holds the port, like raft would
	if err != nil {
		return err
	}
	defer raftL.Close()
	apiL, err := net.Listen("tcp", *apiBind)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(bundle.ServerConfig())))
	eventspb.RegisterLogServer(gs, &fakeLog{id: *id})
	go gs.Serve(apiL)

	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) < 300*time.Millisecond {
			http.Error(w, "no leader yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if !*noMetrics {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			lead := 0
			if *id == "n1" {
				lead = 1
			}
			fmt.Fprintf(w, "# HELP switchboard_raft_state Raft state.\n# TYPE switchboard_raft_state gauge\n")
			fmt.Fprintf(w, "switchboard_raft_state{state=\"Follower\"} %d\n", 1-lead)
			fmt.Fprintf(w, "switchboard_raft_state{state=\"Leader\"} %d\n", lead)
		})
	}
	hs := &http.Server{Addr: *httpBind, Handler: mux}
	go hs.ListenAndServe()
	fmt.Fprintf(os.Stderr, "fake node %s serving api=%s http=%s\n", *id, *apiBind, *httpBind)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	gs.Stop()
	hs.Close()
	fmt.Fprintf(os.Stderr, "fake node %s stopped\n", *id)
	return nil
}
