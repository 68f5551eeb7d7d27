package sessionwire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []Frame{
		{Kind: KindDurable, CSeq: 1<<63 + 5, Payload: []byte("hello")},
		{Kind: KindDurable, CSeq: 1, Payload: []byte{}},
		{Kind: KindStream, Payload: []byte{0, 1, 2}},
		{Kind: KindDeliverDurable, Seq: 42, PrevSeq: 40, From: "p12", Payload: []byte("x")},
		{Kind: KindDeliverStream, From: "p1", Payload: bytes.Repeat([]byte{7}, 1000)},
	} {
		b, err := AppendFrame(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if g.Kind != f.Kind || g.CSeq != f.CSeq || g.Seq != f.Seq || g.PrevSeq != f.PrevSeq || g.From != f.From || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip %+v → %+v", f, g)
		}
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want error
		says string
	}{
		{nil, ErrBadFrame, "empty"},
		{[]byte{KindDurable, 0, 0, 0}, ErrBadFrame, "8-byte cseq"},
		{[]byte{KindDeliverDurable, 1}, ErrBadFrame, "17 header bytes"},
		{append(append([]byte{KindDeliverDurable}, make([]byte, 16)...), 5, 'p'), ErrBadFrame, "sender id of 5 bytes"},
		{[]byte{KindDeliverStream}, ErrBadFrame, "length byte"},
		{[]byte{0x7f, 1, 2}, ErrUnknownKind, "0x7f"},
	} {
		_, err := DecodeFrame(c.in)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("DecodeFrame(%x) = %v, want %v saying %q", c.in, err, c.want, c.says)
		}
	}
	if _, err := AppendFrame(nil, Frame{Kind: KindDeliverStream, From: strings.Repeat("p", 256)}); err == nil {
		t.Error("over-long sender id encoded")
	}
	if _, err := AppendFrame(nil, Frame{Kind: 0x33}); err == nil {
		t.Error("unknown kind encoded")
	}
}

func TestControl(t *testing.T) {
	c, err := DecodeControl([]byte(`{"type":"join","v":1,"session":"123456789","secret":"s","name":"Bob","future_field":[1,2]}`))
	if err != nil || c.Type != TypeJoin || c.Session != "123456789" || c.V != 1 || c.Name != "Bob" {
		t.Fatalf("%+v %v", c, err)
	}
	back, err := DecodeControl(EncodeControl(Control{Type: TypeSent, CSeq: 3, Seq: 9}))
	if err != nil || back.CSeq != 3 || back.Seq != 9 {
		t.Fatalf("%+v %v", back, err)
	}
	for in, says := range map[string]string{
		`[]`:                      "not a JSON object",
		`{"v":1}`:                 `"type" is missing`,
		`{"type":"hello"}`:        `unknown type "hello"`,
		"\xff":                    "not UTF-8",
		`{"type":"ack","seq":-1}`: "not a JSON object",
	} {
		if _, err := DecodeControl([]byte(in)); !errors.Is(err, ErrBadControl) || !strings.Contains(err.Error(), says) {
			t.Errorf("DecodeControl(%q) = %v, want bad_request saying %q", in, err, says)
		}
	}
	if CloseCode("session_full") != 4409 || CloseCode("nonsense") != 4500 {
		t.Fatal("close codes")
	}
}

// FuzzDecodeFrame: decoding arbitrary bytes never panics, and whatever
// decodes re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range [][]byte{{KindDurable, 0, 0, 0, 0, 0, 0, 0, 1, 'a'}, {KindStream}, {KindDeliverStream, 2, 'p', '1', 9},
		append(append([]byte{KindDeliverDurable}, make([]byte, 16)...), 0)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrUnknownKind) {
				t.Fatalf("error %v matches no sentinel", err)
			}
			return
		}
		out, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

// FuzzDecodeControl: arbitrary text never panics and errors are bad_request.
func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte(`{"type":"ack","seq":4}`))
	f.Add([]byte(`{"type":"open","v":1,"limits":{"max_participants":3}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeControl(b)
		if err != nil {
			if !errors.Is(err, ErrBadControl) {
				t.Fatalf("error %v is not bad_request", err)
			}
			return
		}
		if !knownTypes[c.Type] {
			t.Fatalf("accepted type %q", c.Type)
		}
	})
}
