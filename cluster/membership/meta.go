package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded Meta: memberlist's limit on a node's
// metadata (memberlist.MetaMaxSize, 512 bytes) minus the 10 bytes this package
// reserves for its leave flag.
const MaxMetaSize = memberlist.MetaMaxSize - len(leavingField)

// leavingField is appended to the local node's encoded meta while it leaves.
const leavingField = `,"lv":true`

// ErrMetaTooLarge is returned (wrapped) by EncodeMeta, Start and UpdateMeta when
// the encoded Meta does not fit in memberlist's node metadata.
var ErrMetaTooLarge = errors.New("membership: encoded meta exceeds memberlist's 512-byte node metadata limit")

// Meta is what peers need to know about a node. It travels in memberlist's
// node metadata, encoded by EncodeMeta, so it must stay under MaxMetaSize
// bytes once encoded (the grain kinds are usually what grows).
type Meta struct {
	NodeID        string   // stable node name = Raft server id = memberlist node name
	ActorSystemID string   // protoactor actor-system id; changes on every (re)start/rejoin
	ActorHost     string   // protoactor remote host
	ActorPort     int      // protoactor remote port
	Kinds         []string // grain kinds this node hosts
	RaftAddr      string   // Raft transport address
	APIAddr       string   // gRPC node API (log forwarding, status)
	HTTPAddr      string   // health/metrics
	Version       string   // build version
	HasRaftState  bool     // the node has Raft state (was bootstrapped or added): used by bootstrap_expect
}

// Equal reports whether two Metas are identical.
func (m Meta) Equal(o Meta) bool {
	return m.NodeID == o.NodeID && m.ActorSystemID == o.ActorSystemID && m.ActorHost == o.ActorHost &&
		m.ActorPort == o.ActorPort && slices.Equal(m.Kinds, o.Kinds) && m.RaftAddr == o.RaftAddr &&
		m.APIAddr == o.APIAddr && m.HTTPAddr == o.HTTPAddr && m.Version == o.Version &&
		m.HasRaftState == o.HasRaftState
}

// clone returns a copy that shares no slice with m.
func (m Meta) clone() Meta {
	m.Kinds = slices.Clone(m.Kinds)
	return m
}

// wireMeta is the encoded form: JSON with short keys, empty fields omitted.
// Decoders ignore unknown keys, so fields can be added without breaking
// rolling upgrades; never rename or reuse a key.
type wireMeta struct {
	NodeID        string   `json:"id"`
	ActorSystemID string   `json:"as,omitempty"`
	ActorHost     string   `json:"ah,omitempty"`
	ActorPort     int      `json:"ap,omitempty"`
	Kinds         []string `json:"k,omitempty"`
	RaftAddr      string   `json:"r,omitempty"`
	APIAddr       string   `json:"a,omitempty"`
	HTTPAddr      string   `json:"h,omitempty"`
	Version       string   `json:"v,omitempty"`
	HasRaftState  bool     `json:"rs,omitempty"`
	// Leaving is set by Leave, gossiped just before memberlist's leave
	// message: memberlist v0.7.0 does not tell NotifyLeave whether a node
	// left or died (Node.State is never set; hashicorp/memberlist#266, PR #321).
	Leaving bool `json:"lv,omitempty"`
}

func toWire(m Meta) wireMeta {
	return wireMeta{NodeID: m.NodeID, ActorSystemID: m.ActorSystemID, ActorHost: m.ActorHost, ActorPort: m.ActorPort,
		Kinds: m.Kinds, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr, HTTPAddr: m.HTTPAddr, Version: m.Version,
		HasRaftState: m.HasRaftState}
}

func (w wireMeta) meta() Meta {
	return Meta{NodeID: w.NodeID, ActorSystemID: w.ActorSystemID, ActorHost: w.ActorHost, ActorPort: w.ActorPort,
		Kinds: w.Kinds, RaftAddr: w.RaftAddr, APIAddr: w.APIAddr, HTTPAddr: w.HTTPAddr, Version: w.Version,
		HasRaftState: w.HasRaftState}
}

// EncodeMeta encodes m for memberlist's node metadata. It fails with an
// error wrapping ErrMetaTooLarge, giving the size, when the result is over
// MaxMetaSize bytes.
func EncodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(toWire(m))
	if err != nil { // cannot happen with these field types
		return nil, fmt.Errorf("membership: encode meta of node %q: %w", m.NodeID, err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("%w: node %q meta is %d bytes, over %d (%d grain kinds); shorten kinds or addresses",
			ErrMetaTooLarge, m.NodeID, len(b), MaxMetaSize, len(m.Kinds))
	}
	return b, nil
}

// DecodeMeta decodes metadata written by EncodeMeta. It never panics, whatever
// the input.
func DecodeMeta(b []byte) (Meta, error) {
	m, _, err := decodeMeta(b)
	return m, err
}

// decodeMeta also returns the leave flag.
func decodeMeta(b []byte) (Meta, bool, error) {
	if len(b) == 0 {
		return Meta{}, false, errors.New("membership: decode meta: empty (the peer is not a switchboard node, or predates meta)")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, false, fmt.Errorf("membership: decode meta (%d bytes): %w", len(b), err)
	}
	return w.meta(), w.Leaving, nil
}

// withLeaving returns encoded meta (from EncodeMeta) with the leave flag set.
func withLeaving(enc []byte) []byte {
	out := bytes.Clone(enc[:len(enc)-1]) // drop the closing brace
	return append(out, leavingField+"}"...)
}
