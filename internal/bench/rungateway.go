package bench

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

// gatewayConfig holds the flags of `switchboard bench gateway`.
type gatewayConfig struct {
	binary    string
	events    int
	sessions  int
	live      int
	frames    int
	users     int
	queries   int
	appenders int
	keep      string
	timeout   time.Duration
}

func parseGatewayFlags(args []string) (gatewayConfig, error) {
	cfg := gatewayConfig{}
	fs := flag.NewFlagSet("bench gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.binary, "binary", "", "switchboard binary for the node (default: this executable)")
	fs.IntVar(&cfg.events, "events", 1_000_000, "events in the log (sessions' events plus filler)")
	fs.IntVar(&cfg.sessions, "sessions", 10_000, "sessions in the history")
	fs.IntVar(&cfg.live, "live", 1_000, "of which still live")
	fs.IntVar(&cfg.frames, "frames", 20, "durable frames per session")
	fs.IntVar(&cfg.users, "users", 50, "distinct supporters hosting the sessions")
	fs.IntVar(&cfg.queries, "queries", 300, "queries per view")
	fs.IntVar(&cfg.appenders, "appenders", 32, "concurrent appenders while loading")
	fs.StringVar(&cfg.keep, "keep", "", "keep the run's files in this directory (default: a temporary one, removed unless the run fails)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "bound on loading and folding")
	err := parseDriverFlags(fs, "gateway", args)
	if err == nil {
		var bad []string
		if cfg.sessions < 1 || cfg.live < 0 || cfg.live > cfg.sessions {
			bad = append(bad, "--sessions must be ≥ 1 and --live within 0..sessions")
		}
		if cfg.frames < 0 || cfg.frames > 900 || cfg.users < 1 || cfg.queries < 1 || cfg.appenders < 1 {
			bad = append(bad, "--frames 0..900, --users, --queries and --appenders ≥ 1")
		}
		if len(bad) > 0 {
			err = fmt.Errorf("bench gateway: %s", strings.Join(bad, "; "))
		}
	}
	return cfg, err
}

// RunGateway runs `switchboard bench gateway`: one node whose log holds
// --events events, --sessions of them sessions, then the latency of each
// admin view through the admin gRPC API (TLS, token), printed as
// "BENCH gateway view=<name> p50_ms=... p99_ms=...".
func RunGateway(ctx context.Context, args []string, stdout io.Writer) error {
	return runGateway(ctx, args, stdout, os.Stderr)
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseGatewayFlags(args)
	ctx, stopSignals, log, err := startDriver(ctx, err, stderr)
	if err != nil {
		return err
	}
	defer stopSignals()
	if cfg.binary, err = defaultBinary("bench gateway", cfg.binary); err != nil {
		return err
	}
	if err := checkBinary("bench gateway", cfg.binary); err != nil {
		return err
	}
	dir, cleanup, err := runDir(cfg.keep, "bench gateway", []string{"node"}, log)
	if err != nil {
		return err
	}
	defer func() { cleanup(err) }()
	node, err := prepareSingleNode(filepath.Join(dir, "node"), cfg.binary,
		[]string{"--admin-requests-per-second", "1000000", "--cluster-grain-idle-timeout", "1h"}, log)
	if err != nil {
		return err
	}
	defer node.Stop()
	if _, err := startAndTime(ctx, node, time.Minute); err != nil {
		return err
	}
	nd := node.Nodes[0]

	// Load: the sessions, then filler up to --events.
	lctx, lcancel := context.WithTimeout(ctx, cfg.timeout)
	defer lcancel()
	t0 := time.Now()
	codes, sessionEvents, err := loadSessions(lctx, node, cfg)
	if err != nil {
		return err
	}
	var fill []streamLoad
	for k, total := 0, sessionEvents; total < cfg.events; k++ {
		n := min(100_000, cfg.events-total)
		fill = append(fill, streamLoad{fmt.Sprintf("bench.filler/%d", k), n})
		total += n
	}
	if err := preload(lctx, node, fill, cfg.appenders); err != nil {
		return err
	}
	log.Info("log loaded", "events", max(cfg.events, sessionEvents), "sessions", cfg.sessions, "took", time.Since(t0).Round(time.Millisecond))

	conn, token, err := adminLogin(lctx, nd.DataDir, nd.AdminAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	cl := adminpb.NewClusterClient(conn)
	// Wait until every projection has folded the whole log.
	t1 := time.Now()
	for {
		st, err := cl.ListProjections(actx, &adminpb.ListProjectionsRequest{})
		if err != nil {
			return fmt.Errorf("bench gateway: projections: %w", err)
		}
		lagging := 0
		for _, p := range st.Projections {
			if p.Lag > 0 || p.Position == 0 {
				lagging++
			}
		}
		if lagging == 0 {
			break
		}
		select {
		case <-lctx.Done():
			return fmt.Errorf("bench gateway: projections did not catch up: %v (%v)", st.Projections, lctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	log.Info("projections caught up", "took", time.Since(t1).Round(time.Millisecond))

	sc := adminpb.NewSessionsClient(conn)
	au := adminpb.NewAuditClient(conn)
	ac := adminpb.NewAccountsClient(conn)
	rng := rand.New(rand.NewPCG(1, 2))
	user := func() string { return fmt.Sprintf("user%d", rng.IntN(cfg.users)) }
	code := func() string { return codes[rng.IntN(len(codes))] }
	base := gatewayBase.UnixMilli()
	views := []struct {
		name string
		call func() error
	}{
		{"cluster", func() error { _, err := cl.GetCluster(actx, &adminpb.GetClusterRequest{}); return err }},
		{"projections", func() error { _, err := cl.ListProjections(actx, &adminpb.ListProjectionsRequest{}); return err }},
		{"rates", func() error { _, err := cl.GetRates(actx, &adminpb.GetRatesRequest{}); return err }},
		{"live_sessions", func() error {
			_, err := sc.ListLiveSessions(actx, &adminpb.ListLiveSessionsRequest{Limit: 50})
			return err
		}},
		{"session", func() error { _, err := sc.GetSession(actx, &adminpb.GetSessionRequest{Code: code()}); return err }},
		{"history_user", func() error {
			_, err := sc.SearchSessionHistory(actx, &adminpb.SearchSessionHistoryRequest{User: user(), Limit: 50})
			return err
		}},
		{"history_time", func() error {
			from := base + int64(rng.IntN(cfg.sessions))*60_000
			_, err := sc.SearchSessionHistory(actx, &adminpb.SearchSessionHistoryRequest{FromUnixMs: from, ToUnixMs: from + 3_600_000, Limit: 50})
			return err
		}},
		{"history_all", func() error {
			_, err := sc.SearchSessionHistory(actx, &adminpb.SearchSessionHistoryRequest{Limit: 50})
			return err
		}},
		{"failover", func() error {
			_, err := sc.GetFailoverState(actx, &adminpb.GetFailoverStateRequest{Code: code()})
			return err
		}},
		{"audit_recent", func() error { _, err := au.SearchAudit(actx, &adminpb.SearchAuditRequest{Limit: 50}); return err }},
		{"audit_actor", func() error {
			_, err := au.SearchAudit(actx, &adminpb.SearchAuditRequest{Actor: "user:" + user(), Limit: 50})
			return err
		}},
		{"audit_type", func() error {
			_, err := au.SearchAudit(actx, &adminpb.SearchAuditRequest{Type: "switchboard.session.v1.Ended", Limit: 50})
			return err
		}},
		{"audit_stream", func() error {
			_, err := au.SearchAudit(actx, &adminpb.SearchAuditRequest{Stream: "session/" + code(), Limit: 50, Details: true})
			return err
		}},
		{"accounts", func() error { _, err := ac.ListAccounts(actx, &adminpb.ListAccountsRequest{}); return err }},
	}
	summary := []string{"BENCH gateway_summary", fmt.Sprintf("events=%d sessions=%d", max(cfg.events, sessionEvents), cfg.sessions)}
	worst := time.Duration(0)
	for _, v := range views {
		for range 10 { // warm up
			if err := v.call(); err != nil {
				return fmt.Errorf("bench gateway: view %s: %w", v.name, err)
			}
		}
		lat := make([]time.Duration, 0, cfg.queries)
		for range cfg.queries {
			t := time.Now()
			if err := v.call(); err != nil {
				return fmt.Errorf("bench gateway: view %s: %w", v.name, err)
			}
			lat = append(lat, time.Since(t))
		}
		slices.Sort(lat)
		p50, p99 := nearestRank(lat, 0.50), nearestRank(lat, 0.99)
		worst = max(worst, p99)
		fmt.Fprintf(stdout, "BENCH gateway view=%s p50_ms=%s p99_ms=%s queries=%d\n", v.name, ms(p50), ms(p99), len(lat))
	}
	summary = append(summary, "worst_p99_ms="+ms(worst))
	fmt.Fprintln(stdout, strings.Join(summary, " "))
	return nil
}

// gatewayBase is when the bench's first session opened; session i opened i
// minutes later.
var gatewayBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// loadSessions appends cfg.sessions sessions as the session grain writes
// them (opened, host and guest joined, frames, acks, a reconnect, ended
// unless live), each in one append, and returns their codes and the events
// written.
func loadSessions(ctx context.Context, c *LogCluster, cfg gatewayConfig) ([]string, int, error) {
	dial, err := c.DialOption()
	if err != nil {
		return nil, 0, err
	}
	cc, err := grpc.NewClient(c.Nodes[0].APIAddr, dial)
	if err != nil {
		return nil, 0, fmt.Errorf("bench gateway: dial %s: %w", c.Nodes[0].APIAddr, err)
	}
	defer cc.Close()
	lc := eventspb.NewLogClient(cc)
	codes := make([]string, cfg.sessions)
	work := make(chan int)
	var (
		mu       sync.Mutex
		firstErr error
		total    int
		wg       sync.WaitGroup
	)
	for range cfg.appenders {
		wg.Go(func() {
			for i := range work {
				evs := sessionEvents(i, cfg)
				if err := appendChunk(ctx, lc, "session/"+codes[i], evs); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
				}
				mu.Lock()
				total += len(evs)
				mu.Unlock()
			}
		})
	}
	for i := range codes {
		codes[i] = fmt.Sprintf("%09d", 100_000_000+i*7)
	}
	for i := range codes {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return codes, total, ctx.Err()
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func sessionEvents(i int, cfg gatewayConfig) []*eventspb.Event {
	code := fmt.Sprintf("%09d", 100_000_000+i*7)
	at := gatewayBase.Add(time.Duration(i) * time.Minute).UnixMilli()
	user := fmt.Sprintf("user%d", i%cfg.users)
	guestAddr := fmt.Sprintf("198.51.100.%d:%d", i%250, 40000+i%20000)
	conn := func(node string) *sessionpb.Conn { return &sessionpb.Conn{Address: "127.0.0.1:1", Id: "c", Node: node} }
	msgs := []proto.Message{
		&sessionpb.Opened{Code: code, HostUser: user, Limits: &sessionpb.Limits{MaxParticipants: 10}, AtUnixMs: at},
		&sessionpb.Joined{Participant: "p1", Role: "host", Name: "Host " + user, Addr: "10.0.0.1:5000", User: user, Conn: conn("n1"), AtUnixMs: at},
		&sessionpb.Joined{Participant: "p2", Role: "guest", Name: "Guest", Addr: guestAddr, Conn: conn("n1"), AtUnixMs: at + 1000},
	}
	payload := make([]byte, 128)
	for f := range cfg.frames {
		msgs = append(msgs, &sessionpb.FrameSent{From: []string{"p1", "p2"}[f%2], Cseq: uint64(f/2 + 1), Payload: payload, AtUnixMs: at + 2000})
	}
	msgs = append(msgs, &sessionpb.Acknowledged{Participant: "p2", Seq: uint64(3 + cfg.frames)},
		&sessionpb.Detached{Participant: "p2", Conn: conn("n1"), AtUnixMs: at + 3000},
		&sessionpb.Attached{Participant: "p2", Conn: conn("n1"), Addr: guestAddr, Resumed: true, LastSeq: uint64(3 + cfg.frames), AtUnixMs: at + 3500})
	if i >= cfg.live {
		msgs = append(msgs, &sessionpb.Ended{By: "p1", Reason: "host", AtUnixMs: at + int64(1+i%30)*60_000})
	}
	out := make([]*eventspb.Event, len(msgs))
	for k, m := range msgs {
		data, _ := proto.Marshal(m)
		out[k] = &eventspb.Event{Type: string(proto.MessageName(m)), Data: data}
	}
	return out
}

// adminLogin logs in as the node's first administrator (its one-time
// password from data_dir/admin-credential), changes the password as it
// must, and returns a connection that trusts the node's admin certificate
// and the token.
func adminLogin(ctx context.Context, dataDir, addr string) (*grpc.ClientConn, string, error) {
	var cred string
	for {
		b, err := os.ReadFile(filepath.Join(dataDir, "admin-credential"))
		if err == nil && strings.HasSuffix(string(b), "\n") {
			cred = strings.TrimSpace(string(b))
			break
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("bench gateway: no admin credential in %s: %w", dataDir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	pool, err := tlsutil.LoadCAPool(filepath.Join(dataDir, "admin-tls", "cert.pem"))
	if err != nil {
		return nil, "", fmt.Errorf("bench gateway: admin certificate: %w", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		return nil, "", err
	}
	name, pw, _ := strings.Cut(cred, ":")
	auth := adminpb.NewAuthClient(conn)
	res, err := auth.Login(ctx, &adminpb.LoginRequest{Name: name, Password: pw})
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("bench gateway: login: %w", err)
	}
	res, err = auth.ChangePassword(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+res.Token),
		&adminpb.ChangePasswordRequest{OldPassword: pw, NewPassword: "Bench-gateway-Passw0rd"})
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("bench gateway: change password: %w", err)
	}
	return conn, res.Token, nil
}
