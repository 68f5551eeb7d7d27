package projections

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/localcluster"
	"github.com/switchboard-io/switchboard/events/raftstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testLog starts a one-node event log and returns its node once it leads.
func testLog(t *testing.T) (*localcluster.Cluster, *events.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, n, err := localcluster.StartSingle(ctx, t.TempDir(), localcluster.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, n
}

// memDB opens a views database in memory (crash-cloneable).
func memDB(t testing.TB, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := raftstore.OpenDB("views", raftstore.DBOptions{Logger: quiet, FS: fs, DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openEngine(t *testing.T, db *pebble.DB, n *events.Node) *Engine {
	t.Helper()
	e, err := Open(Config{DB: db, Logger: quiet, BatchEvents: 97}, NodeSource(n), Sessions{}, Audit{})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	return e
}

// waitCaughtUp polls until every projection of e has folded the log's head.
func waitCaughtUp(t *testing.T, e *Engine, n *events.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range e.Names() {
		if err := e.WaitPosition(ctx, name, n.LastPosition()); err != nil {
			t.Fatalf("%s did not catch up: %v (status %+v)", name, err, e.Status())
		}
	}
}

// dump returns every row of a projection's active generation.
func dump(t *testing.T, e *Engine, name string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	err := e.View(name, func(r *Reader) error {
		return r.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
			rows[string(k)] = string(v)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// sameRows fails the test when two dumps differ, naming a few differences.
func sameRows(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %q", k))
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("differs %q", k))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %q", k))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("%s: %d rows differ (of %d/%d), e.g. %v", what, len(diffs), len(got), len(want), diffs[:min(5, len(diffs))])
	}
}

// sessionWriter appends session events the way the session grain does.
type sessionWriter struct {
	t    *testing.T
	n    *events.Node
	base time.Time
}

func (w sessionWriter) append(code string, msgs ...proto.Message) {
	w.t.Helper()
	evs := make([]events.Event, len(msgs))
	for i, m := range msgs {
		data, err := proto.Marshal(m)
		if err != nil {
			w.t.Fatal(err)
		}
		evs[i] = events.Event{Type: string(proto.MessageName(m)), Data: data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.n.Append(ctx, events.AppendArgs("session/"+code, events.Any(), evs...)); err != nil {
		w.t.Fatalf("append to %s: %v", code, err)
	}
}

// session writes a whole session: opened at base+i minutes by user, a guest
// from addr, frames, a reconnect of the guest, and (if ended) its end.
func (w sessionWriter) session(i int, user, addr string, frames int, ended bool) string {
	code := fmt.Sprintf("%09d", 100000000+i)
	at := w.base.Add(time.Duration(i) * time.Minute).UnixMilli()
	conn := func(node string) *sessionpb.Conn { return &sessionpb.Conn{Address: "127.0.0.1:1", Id: "c", Node: node} }
	w.append(code, &sessionpb.Opened{Code: code, HostUser: user, Limits: &sessionpb.Limits{MaxParticipants: 10}, AtUnixMs: at},
		&sessionpb.Joined{Participant: "p1", Role: "host", Name: "Host " + user, Addr: "10.0.0.1:5000", User: user, Conn: conn("n1"), AtUnixMs: at})
	w.append(code, &sessionpb.Joined{Participant: "p2", Role: "guest", Name: "Guest", Addr: addr, Conn: conn("n2"), AtUnixMs: at + 1000})
	for f := 0; f < frames; f++ {
		from := []string{"p1", "p2"}[f%2]
		w.append(code, &sessionpb.FrameSent{From: from, Cseq: uint64(f/2 + 1), Payload: bytes.Repeat([]byte{'x'}, 10), AtUnixMs: at + 2000})
	}
	w.append(code, &sessionpb.Acknowledged{Participant: "p2", Seq: 3},
		&sessionpb.Detached{Participant: "p2", Conn: conn("n2"), AtUnixMs: at + 3000},
		&sessionpb.Attached{Participant: "p2", Conn: conn("n3"), Addr: addr, Resumed: true, LastSeq: 4, AtUnixMs: at + 3500})
	if ended {
		w.append(code, &sessionpb.Ended{By: "p1", Reason: "host", AtUnixMs: at + 60_000})
	}
	return code
}
