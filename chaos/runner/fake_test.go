package runner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// fakeLog is an in-memory event log shared by three fake nodes, with the
// event store's rules (exact expected version, append ids applied once). With
// loseEvery > 0 it has a deliberate bug: every loseEvery-th successful append
// is acknowledged but not kept — what acknowledging before commit does when
// the leader then dies.
type fakeLog struct {
	mu        sync.Mutex
	streams   map[string][]string
	ids       map[string]*eventspb.AppendResponse
	oks       int
	loseEvery int
}

// fakeNode is one node's API client; a killed or paused node refuses.
type fakeNode struct {
	eventspb.LogClient // unimplemented methods panic
	log                *fakeLog
	up                 func() bool
}

func (n fakeNode) Append(_ context.Context, req *eventspb.AppendRequest, _ ...grpc.CallOption) (*eventspb.AppendResponse, error) {
	if !n.up() {
		return nil, status.Error(codes.Unavailable, "node down")
	}
	l := n.log
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.ids[string(req.GetAppendId())]; ok {
		return &eventspb.AppendResponse{Code: r.Code, Version: r.Version, Duplicate: true}, nil
	}
	evs := l.streams[req.GetStream()]
	if uint64(len(evs)) != req.GetExpectedVersion() {
		return &eventspb.AppendResponse{Code: eventspb.Code_CODE_CONFLICT, Version: uint64(len(evs))}, nil
	}
	l.oks++
	r := &eventspb.AppendResponse{Code: eventspb.Code_CODE_OK, Version: uint64(len(evs)) + 1}
	l.ids[string(req.GetAppendId())] = r
	if l.loseEvery > 0 && l.oks%l.loseEvery == 0 {
		return r, nil // the bug: acknowledged, never stored
	}
	l.streams[req.GetStream()] = append(evs, string(req.GetEvents()[0].GetData()))
	return r, nil
}

func (n fakeNode) ReadStream(_ context.Context, req *eventspb.ReadStreamRequest, _ ...grpc.CallOption) (*eventspb.ReadStreamResponse, error) {
	if !n.up() {
		return nil, status.Error(codes.Unavailable, "node down")
	}
	n.log.mu.Lock()
	defer n.log.mu.Unlock()
	out := &eventspb.ReadStreamResponse{}
	for i, p := range n.log.streams[req.GetStream()] {
		if v := uint64(i + 1); v >= req.GetFromVersion() {
			out.Events = append(out.Events, &eventspb.RecordedEvent{Stream: req.GetStream(), Version: v, Data: []byte(p)})
		}
	}
	return out, nil
}

// fakeDriver runs no processes: three fake nodes over one fakeLog.
type fakeDriver struct {
	mu   sync.Mutex
	down []bool
	log  *fakeLog
}

func newFakeDriver(loseEvery int) *fakeDriver {
	return &fakeDriver{down: make([]bool, 3), log: &fakeLog{streams: map[string][]string{}, ids: map[string]*eventspb.AppendResponse{}, loseEvery: loseEvery}}
}

func (d *fakeDriver) Nodes() []string { return []string{"n1", "n2", "n3"} }
func (d *fakeDriver) LogClients() []eventspb.LogClient {
	var out []eventspb.LogClient
	for i := range 3 {
		out = append(out, fakeNode{log: d.log, up: func() bool { return d.Up(i) }})
	}
	return out
}
func (d *fakeDriver) SessionClient() (sessionclient.Config, string) {
	return sessionclient.Config{}, ""
}
func (d *fakeDriver) set(i int, down bool) error {
	d.mu.Lock()
	d.down[i] = down
	d.mu.Unlock()
	return nil
}
func (d *fakeDriver) Kill(i int) error                       { return d.set(i, true) }
func (d *fakeDriver) StopNode(i int) error                   { return d.set(i, true) }
func (d *fakeDriver) Restart(_ context.Context, i int) error { return d.set(i, false) }
func (d *fakeDriver) Pause(i int) error                      { return d.set(i, true) }
func (d *fakeDriver) Resume(i int) error                     { return d.set(i, false) }
func (d *fakeDriver) Up(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.down[i]
}
func (d *fakeDriver) Leader(context.Context) (int, error)            { return 0, nil }
func (d *fakeDriver) WaitReady(context.Context, time.Duration) error { return nil }
func (d *fakeDriver) Stop() error                                    { return nil }

// The whole pipeline — workload, faults, final reads, checkers, verdict —
// fails a cluster that loses acknowledged appends, and passes the same fake
// cluster without the bug.
func TestRunCatchesAcknowledgedButLostAppends(t *testing.T) {
	run := func(loseEvery int) (appends, lin []check.Violation, err error) {
		d := newFakeDriver(loseEvery)
		o := Options{Scenario: "kill", Duration: 10 * time.Second, Seed: 1, Report: t.TempDir(), Binary: "fake", NoSessions: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			start:  func(context.Context, string) (Driver, error) { return d, nil }}
		rep, err := Run(context.Background(), o)
		if rep == nil {
			t.Fatalf("no report: %v", err)
		}
		for _, c := range rep.Checks {
			switch c.Name {
			case check.AppendsName:
				appends = c.Violations
			case check.LinearName:
				lin = c.Violations
			}
		}
		return appends, lin, err
	}

	if a, l, err := run(0); err != nil || len(a) != 0 || len(l) != 0 {
		t.Fatalf("correct fake cluster: err %v, violations %v %v", err, a, l)
	}
	appends, lin, err := run(50)
	if !errors.Is(err, ErrViolations) {
		t.Fatalf("buggy cluster passed: %v", err)
	}
	if len(appends) == 0 || !strings.Contains(appends[0].What, "acknowledged append") || !strings.Contains(appends[0].What, "is missing") {
		t.Errorf("acknowledged-appends violations: %v", appends)
	}
	if len(lin) == 0 || !strings.Contains(lin[0].What, "not linearizable") {
		t.Errorf("linearizability violations: %v", lin)
	}
}
