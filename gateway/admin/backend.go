package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/cluster"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	"github.com/switchboard-io/switchboard/gateway/admin/keyspb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

// KeysStream is the stream of the token signing keys.
const KeysStream = "admin/signing-keys"

// NodeBackend is the Backend of a cluster node.
type NodeBackend struct {
	node  *cluster.Node
	views *projections.Engine

	mu        sync.Mutex
	keys      *sbauth.Keyring
	refreshed time.Time
}

// NewNodeBackend returns the backend of node with its projection engine.
func NewNodeBackend(node *cluster.Node, views *projections.Engine) *NodeBackend {
	return &NodeBackend{node: node, views: views}
}

func (b *NodeBackend) NodeID() string             { return b.node.Log.ID() }
func (b *NodeBackend) Views() *projections.Engine { return b.views }
func (b *NodeBackend) ReadEvent(pos uint64) (events.RecordedEvent, bool, error) {
	evs, err := b.node.Log.ReadLog(pos, 1)
	if err != nil || len(evs) == 0 || evs[0].Position != pos {
		return events.RecordedEvent{}, false, err
	}
	return evs[0], true, nil
}

// Call sends cmd to a grain (not idempotent: a timeout is reported, not
// retried, since the command may have taken effect).
func (b *NodeBackend) Call(ctx context.Context, kind, id string, cmd proto.Message) (proto.Message, error) {
	return entity.CallOn(ctx, b.node, kind, id, cmd)
}

// Cluster builds the cluster view: gossip members, the Raft configuration
// and each reachable member's own status (asked in parallel, 1 s each).
func (b *NodeBackend) Cluster(ctx context.Context) (*adminpb.ClusterView, error) {
	log := b.node.Log
	local := log.Status()
	v := &adminpb.ClusterView{Node: log.ID(), Leader: local.GetLeaderId(), LastPosition: log.LastPosition()}
	suffrage := map[string]string{}
	for _, s := range local.GetServers() {
		switch s.GetSuffrage().String() {
		case "SUFFRAGE_VOTER":
			suffrage[s.GetId()] = "voter"
		default:
			suffrage[s.GetId()] = "nonvoter"
		}
	}
	members := b.node.Members.Members()
	v.Members = make([]*adminpb.Member, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		pm := &adminpb.Member{Id: m.NodeID, State: m.State.String(), Version: m.Version, GossipAddr: m.Addr, ApiAddr: m.APIAddr,
			Suffrage: "none", Leader: m.NodeID == local.GetLeaderId(), SinceUnixMs: m.Since.UnixMilli()}
		if s, ok := suffrage[m.NodeID]; ok {
			pm.Suffrage = s
		}
		v.Members[i] = pm
		if m.NodeID == log.ID() {
			pm.CommitIndex, pm.AppliedIndex, pm.LastPosition = local.GetCommitIndex(), local.GetAppliedIndex(), log.LastPosition()
			continue
		}
		if m.State.String() != "alive" || m.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func(pm *adminpb.Member, addr string) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := log.RemoteStatus(cctx, addr)
			if err != nil {
				pm.Error = err.Error()
				return
			}
			pm.CommitIndex, pm.AppliedIndex = st.GetCommitIndex(), st.GetAppliedIndex()
		}(pm, m.APIAddr)
	}
	wg.Wait()
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Id < v.Members[j].Id })
	return v, nil
}

// Keys returns the signing key ring from the log, creating the first key
// when the stream is empty. A refresh re-reads the log at most once a
// second.
func (b *NodeBackend) Keys(ctx context.Context, refresh bool) (*sbauth.Keyring, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys != nil && (!refresh || time.Since(b.refreshed) < time.Second) {
		return b.keys, nil
	}
	k, err := loadKeys(ctx, b.node.Log)
	if err != nil {
		return nil, err
	}
	b.keys, b.refreshed = k, time.Now()
	return k, nil
}

// loadKeys reads the key stream (consistently), appending the first key if
// there is none; when another node appended it first, it reads again.
func loadKeys(ctx context.Context, log *events.Node) (*sbauth.Keyring, error) {
	for attempt := 0; attempt < 3; attempt++ {
		evs, err := log.ReadStream(ctx, KeysStream, 1, 1000, true)
		if err != nil {
			return nil, fmt.Errorf("admin: read signing keys: %w", err)
		}
		if len(evs) > 0 {
			keys := map[string][]byte{}
			current := ""
			for _, ev := range evs {
				var k keyspb.SigningKeyCreated
				if err := proto.Unmarshal(ev.Data, &k); err != nil {
					return nil, fmt.Errorf("admin: signing key at %s/%d: %w", KeysStream, ev.Version, err)
				}
				keys[k.GetId()], current = k.GetKey(), k.GetId()
			}
			return sbauth.NewKeyring(current, keys)
		}
		id, key := sbauth.NewKey()
		data, err := proto.Marshal(&keyspb.SigningKeyCreated{Id: id, Key: key, By: projections.SystemActor, Node: log.ID(), AtUnixMs: time.Now().UnixMilli()})
		if err != nil {
			return nil, err
		}
		_, err = log.Append(ctx, events.AppendArgs(KeysStream, events.NoStream(),
			events.Event{Type: string(proto.MessageName(&keyspb.SigningKeyCreated{})), Data: data}))
		if err != nil && !errors.Is(err, events.ErrConflict) {
			return nil, fmt.Errorf("admin: create the first signing key: %w", err)
		}
	}
	return nil, errors.New("admin: signing keys: the stream stayed empty after appending")
}

func init() {
	projections.RegisterActor(string(proto.MessageName(&keyspb.SigningKeyCreated{})), func(events.RecordedEvent) (string, error) {
		return projections.SystemActor, nil
	})
}
