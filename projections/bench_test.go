package projections

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
)

// sliceSource is a committed log held in memory (benchmarks).
type sliceSource struct{ evs []events.RecordedEvent }

func (s *sliceSource) Next(ctx context.Context, from uint64, max int) ([]events.RecordedEvent, error) {
	if from == 0 {
		from = 1
	}
	if from > uint64(len(s.evs)) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	end := min(uint64(len(s.evs)), from-1+uint64(max))
	return s.evs[from-1 : end], nil
}
func (s *sliceSource) LastPosition() uint64       { return uint64(len(s.evs)) }
func (s *sliceSource) Sync(context.Context) error { return nil }

// sessionLog is a log of n events shaped like the durable phase of `bench
// session`: sessions that open, join and then relay 128-byte frames.
func sessionLog(b *testing.B, n int) []events.RecordedEvent {
	b.Helper()
	var out []events.RecordedEvent
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	add := func(code string, version uint64, m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, events.RecordedEvent{Position: uint64(len(out) + 1), Stream: "session/" + code, Version: version,
			Epoch: 1, Time: at.Add(time.Duration(len(out)) * 50 * time.Microsecond).UnixNano(), Type: string(proto.MessageName(m)), Data: data})
	}
	const sessions = 64
	versions := make([]uint64, sessions)
	conn := &sessionpb.Conn{Address: "127.0.0.1:1", Id: "c", Node: "n1"}
	for s := range sessions {
		code := fmt.Sprintf("%09d", 100000000+s)
		add(code, 1, &sessionpb.Opened{Code: code, HostUser: "bench", Limits: &sessionpb.Limits{MaxParticipants: 10}, AtUnixMs: at.UnixMilli()})
		add(code, 2, &sessionpb.Joined{Participant: "p1", Role: "host", Name: "Host", Addr: "10.0.0.1:5000", User: "bench", Conn: conn})
		add(code, 3, &sessionpb.Joined{Participant: "p2", Role: "guest", Name: "Guest", Addr: "10.0.0.2:5000", Conn: conn})
		versions[s] = 3
	}
	payload := bytes.Repeat([]byte{'x'}, 128)
	for i := 0; len(out) < n; i++ {
		s := i % sessions
		versions[s]++
		add(fmt.Sprintf("%09d", 100000000+s), versions[s], &sessionpb.FrameSent{From: []string{"p1", "p2"}[i%2], Cseq: uint64(i/2 + 1), Payload: payload})
	}
	return out
}

// BenchmarkFoldSessionLog folds a session-shaped log into the sessions and
// audit views, as every node does; ns/op is per event.
func BenchmarkFoldSessionLog(b *testing.B) {
	const n = 200_000
	log := sessionLog(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N/n + 1 {
		b.StopTimer()
		db := memDB(b, vfs.NewMem())
		e, err := Open(Config{DB: db, Logger: quiet}, &sliceSource{evs: log}, Sessions{}, Audit{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		e.Start()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, name := range []string{SessionsName, AuditName} {
			if err := e.WaitPosition(ctx, name, n); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		b.StopTimer()
		_ = e.Close()
		_ = db.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64((b.N/n+1)*n), "ns/event")
}
