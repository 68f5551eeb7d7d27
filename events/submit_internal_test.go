package events

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/fsm"
)

// recordingStream is a Log_SubmitClient that keeps what is sent and ends
// when told to.
type recordingStream struct {
	grpc.ClientStream
	mu   sync.Mutex
	sent []*eventspb.SubmitRequest
	end  chan struct{}
}

func (s *recordingStream) Send(r *eventspb.SubmitRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, r)
	return nil
}

func (s *recordingStream) Recv() (*eventspb.SubmitResponse, error) {
	<-s.end
	return nil, io.EOF
}

// Large commands queued together go out in messages of at most
// submitMaxBytes (unless one command alone is larger): a node refuses a
// message over its receive limit, and that would end the stream for every
// command in flight.
func TestSubmitMessagesStayWithinTheSizeBound(t *testing.T) {
	st := &recordingStream{end: make(chan struct{})}
	c := &SubmitClient{
		stream: st, cancel: func() {}, queue: make(chan taggedProposal, SubmitMaxInFlight),
		unavailable: func(msg string) error { return ErrUnavailable },
		failed:      func(err error) error { return err },
		pending:     map[uint64]*proposal{}, done: make(chan struct{}),
	}
	const n, eventSize = 9, 1<<20 - 1024
	// Queued before the sender starts, so that it finds them all at once.
	for i := range n {
		a := fsm.Append{Stream: "big", Expected: fsm.Any(), ID: NewAppendID(),
			Events: []fsm.Event{{Type: "t", Data: bytes.Repeat([]byte{byte(i)}, eventSize)}}}
		p := &proposal{cmd: fsm.Command{Append: &a}, size: commandSize(fsm.Command{Append: &a}), out: make(chan proposalResult, 1)}
		if err := c.enqueue(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	go c.recvLoop()
	go c.sendLoop()
	sent := 0
	for deadline := time.Now().Add(10 * time.Second); sent < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d commands sent after 10 s", sent, n)
		}
		st.mu.Lock()
		sent = 0
		for _, m := range st.sent {
			sent += len(m.GetCommands())
		}
		st.mu.Unlock()
	}
	close(st.end)
	st.mu.Lock()
	defer st.mu.Unlock()
	tags := map[uint64]bool{}
	for i, m := range st.sent {
		if size := proto.Size(m); size > submitMaxBytes+64<<10 {
			t.Errorf("message %d: %d bytes in %d commands, over the bound (%d)", i, size, len(m.GetCommands()), submitMaxBytes)
		}
		for _, tc := range m.GetCommands() {
			if tags[tc.GetTag()] {
				t.Errorf("tag %d sent twice", tc.GetTag())
			}
			tags[tc.GetTag()] = true
		}
	}
	if len(st.sent) < 3 {
		t.Errorf("%d commands of 1 MiB went out in %d messages, want at least 3", n, len(st.sent))
	}
}
