package entity_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
)

func TestEventCodecRoundTrip(t *testing.T) {
	ev, err := entity.EncodeEvent(&counter.Added{Delta: 7})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "switchboard.counter.v1.Added" {
		t.Fatalf("type %q", ev.Type)
	}
	m, err := entity.DecodeEvent(ev.Type, ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, &counter.Added{Delta: 7}) {
		t.Fatalf("decoded %v", m)
	}
	if _, err := entity.DecodeEvent("no.such.Type", nil); err == nil || !strings.Contains(err.Error(), `unknown event type "no.such.Type"`) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := entity.DecodeEvent(ev.Type, []byte{0xff, 0xff}); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("garbage data: %v", err)
	}
}

func TestSpecAndOptionsValidate(t *testing.T) {
	err := entity.Spec[int]{}.Validate()
	for _, want := range []string{"Kind is empty", "Initial is nil", "Decide is nil", "Evolve is nil", "Reply is nil"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("spec error %v does not say %q", err, want)
		}
	}
	if err := counter.Spec("n1").Validate(); err != nil {
		t.Fatal(err)
	}
	o := entity.DefaultOptions()
	o.ReadPage = 0
	err = o.Validate()
	for _, want := range []string{"Log is nil", "read_page"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("options error %v does not say %q", err, want)
		}
	}
	if _, err := entity.NewKind(counter.Spec("n1"), o); err == nil {
		t.Fatal("NewKind accepted invalid options")
	}
}

func TestCounterCore(t *testing.T) {
	s := counter.State{}
	evs, err := counter.Decide(s, &counter.Add{Delta: 3}, entity.Env{})
	if err != nil || len(evs) != 1 {
		t.Fatalf("add: %v %v", evs, err)
	}
	s = counter.Evolve(s, evs[0])
	if s.Value != 3 {
		t.Fatalf("value %d", s.Value)
	}
	if _, err := counter.Decide(s, &counter.Add{}, entity.Env{}); err == nil {
		t.Fatal("delta 0 accepted")
	}
	if evs, err := counter.Decide(s, &counter.Get{}, entity.Env{}); err != nil || len(evs) != 0 {
		t.Fatalf("get: %v %v", evs, err)
	}
	if _, err := counter.Decide(s, &counter.Value{}, entity.Env{}); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestErrorMatchesSentinels(t *testing.T) {
	for code, sentinel := range map[string]error{
		entity.CodeRejected: entity.ErrRejected, entity.CodeUnavailable: entity.ErrUnavailable,
		entity.CodeInvalid: entity.ErrInvalid, entity.CodeTooLarge: entity.ErrTooLarge,
	} {
		err := error(&entity.Error{Kind: "k", ID: "i", Code: code, Message: "m"})
		if !errors.Is(err, sentinel) {
			t.Fatalf("%s does not match its sentinel", code)
		}
		if code != entity.CodeRejected && errors.Is(err, entity.ErrRejected) {
			t.Fatalf("%s matches ErrRejected", code)
		}
	}
}

// While a node's actor system restarts (a rejoin), callers hold no cluster:
// Call fails at once as unavailable instead of dereferencing it (an admin
// bootstrap crashed the node that way while it waited to rejoin).
func TestCallWithoutClusterIsUnavailable(t *testing.T) {
	_, err := entity.Call(t.Context(), nil, "account", "admin", &counter.Add{Delta: 1})
	if !errors.Is(err, entity.ErrUnavailable) || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Call without a cluster: %v, want ErrUnavailable", err)
	}
}
