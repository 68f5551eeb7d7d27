package events

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/events/eventspb"
	"github.com/switchboard-io/switchboard/events/fsm"
)

// FuzzAppendRequest feeds arbitrary bytes to the network decoding path of an
// append (protobuf → fsm.Append → validation → raft entry): it must never
// panic, and whatever passes validation must survive the entry codec intact.
func FuzzAppendRequest(f *testing.F) {
	seed, _ := proto.Marshal(&eventspb.AppendRequest{
		Stream: "s", ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_EXACT, ExpectedVersion: 3, Epoch: 2,
		AppendId: make([]byte, 16), Events: []*eventspb.Event{{Type: "t", Data: []byte("x"), Meta: []byte("m")}},
	})
	f.Add(seed)
	f.Add([]byte{0x10, 0x09})
	limits := fsm.DefaultLimits()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req eventspb.AppendRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return
		}
		a, err := AppendFromProto(&req)
		if err != nil {
			return
		}
		cmd := fsm.Command{Append: &a}
		if err := fsm.ValidateCommand(cmd, limits); err != nil {
			return
		}
		data, err := fsm.EncodeEntry(fsm.Entry{Time: 1, Commands: []fsm.Command{cmd}})
		if err != nil {
			t.Fatalf("valid append does not encode: %v", err)
		}
		e, err := fsm.DecodeEntry(data)
		if err != nil {
			t.Fatalf("valid append does not decode: %v", err)
		}
		got := e.Commands[0].Append
		if got.Stream != a.Stream || got.Expected != a.Expected || got.Epoch != a.Epoch || got.ID != a.ID || len(got.Events) != len(a.Events) {
			t.Fatalf("round trip changed the append: %+v != %+v", got, a)
		}
		for i := range a.Events {
			if got.Events[i].Type != a.Events[i].Type || string(got.Events[i].Data) != string(a.Events[i].Data) || string(got.Events[i].Meta) != string(a.Events[i].Meta) {
				t.Fatalf("event %d changed: %+v != %+v", i, got.Events[i], a.Events[i])
			}
		}
	})
}

// FuzzForwardRequest feeds arbitrary bytes to the node-to-node Forward
// decoding path: it must never panic, and every command that decodes and
// validates keeps its stream, form and id.
func FuzzForwardRequest(f *testing.F) {
	seed, _ := proto.Marshal(&eventspb.ForwardRequest{Commands: []*eventspb.Command{
		{Command: &eventspb.Command_Append{Append: &eventspb.AppendRequest{Stream: "s", ExpectedKind: eventspb.ExpectedKind_EXPECTED_KIND_ANY,
			Events: []*eventspb.Event{{Type: "t", Data: []byte("x")}}}}},
		{Command: &eventspb.Command_Claim{Claim: &eventspb.ClaimRequest{Stream: "c", ClaimId: make([]byte, 16)}}},
		{},
	}})
	f.Add(seed)
	limits := fsm.DefaultLimits()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req eventspb.ForwardRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return
		}
		for _, c := range req.GetCommands() {
			cmd, err := commandFromProto(c)
			if err != nil {
				continue
			}
			if fsm.ValidateCommand(cmd, limits) != nil {
				continue
			}
			back := commandToProto(cmd)
			again, err := commandFromProto(back)
			if err != nil {
				t.Fatalf("re-encoded command does not decode: %v", err)
			}
			switch {
			case cmd.Claim != nil:
				if again.Claim == nil || *again.Claim != *cmd.Claim {
					t.Fatalf("claim changed: %+v -> %+v", cmd.Claim, again.Claim)
				}
			case cmd.Append != nil:
				if again.Append == nil || again.Append.Stream != cmd.Append.Stream || again.Append.ID != cmd.Append.ID || again.Append.Expected != cmd.Append.Expected {
					t.Fatalf("append changed: %+v -> %+v", cmd.Append, again.Append)
				}
			}
		}
	})
}
